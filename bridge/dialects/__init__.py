"""Other front ends' prompt dialects (compel, ComfyUI), read and written through the one A1111 parser.

    >>> from_a1111("a ((castle:1.5)), [fog]", "comfyui").text
    'a (castle:1.65), (fog:0.91)'
    >>> to_a1111("a castle++ in (thick fog)0.8", "compel").text
    'a (castle:1.21) in (thick fog:0.8)'

A conversion always goes between A1111 and one dialect. ``from_a1111`` reads the prompt with
:func:`bridge.syntax.parse` and :func:`bridge.syntax.attention`, so every piece of text gets the exact weight A1111
gives it (nesting, unclosed brackets and all), and writes each piece once with that weight, rounded to 2 decimals, in
the target's notation: nesting is flattened, ``((a:1.5))`` becomes ComfyUI's ``(a:1.65)``. ``to_a1111`` reads the
dialect into the same (text, weight) pieces and writes A1111's ``(text:weight)``. What does not carry over exactly
comes back as a warning that names the construct.

=============================  ============================================  ==========================================
A1111                          compel                                        ComfyUI
=============================  ============================================  ==========================================
``(x)`` ``[x]`` ``(x:1.3)``,   ``(x)1.1`` ``(x)0.91`` ``(x)1.3``: the final  ``(x:1.1)`` ``(x:0.91)`` ``(x:1.3)``: the
nesting, unclosed brackets     A1111 weight; warning (mechanism)             final A1111 weight; warning (mechanism)
negative weight ``(x:-1)``     written as 0; warning                         kept
``\\(`` ``\\)`` ``\\[`` ``\\]``  ``\\(`` ``\\)``; ``[`` ``]`` plain; ``"`` →    ``\\(`` ``\\)``; ``[`` ``]`` plain
                               ``\\"``
``c++``, ``a - b`` in a group  ``c+\\+``, ``(a \\- b)``: escaped; warning     plain
``BREAK``                      ``("a", "b").and()``: the same mechanism      removed, parts joined with ", "; warning
``a AND b :0.5``               ``("a", "b").and(1, 0.5)``; warning           the word AND kept, weights dropped;
                                                                             warning (the node "Prompt Bridge
                                                                             (parts)" returns BREAK and AND parts
                                                                             apart: comfyui.from_a1111_parts)
lone clause weight ``a :1.2``  dropped; warning                              dropped; warning
``[a:b:0.5]``, ``[a|b]``       kept as literal text; warning                 kept as literal text; warning
``<lora:name:0.8>``            ``withLora(name, 0.8)``; warning (the app     removed; warning (use a LoraLoader node)
                               must load it)
other tags ``<hypernet:…>``    removed; warning                              removed; warning
=============================  ============================================  ==========================================

Reading back (``to_a1111``): compel ``word+``, ``(words)-``, ``"words"1.3``, ``(w).attend(0.8)`` → ``(text:weight)``
with nesting multiplied; ``("a", "b").and(1, 0.5)`` → ``a BREAK (b:0.5)``; ``("a", "b").blend(0.7, 0.3)`` →
``a :0.7 AND b :0.3`` with compel's normalized weights (warning: A1111 has no embedding blend); ``x.swap(y)`` → ``x``,
the text compel encodes (warning); ``withLora(n, w)`` → ``<lora:n:w>`` (warning). ComfyUI ``((x:1.5))`` →
``(x:1.5)``; literal ``[x]`` → ``\\[x\\]``. From both, the words ``AND`` and ``BREAK`` are written ``and``/``break``
(plain words there, operators in A1111; CLIP lowercases, so the tokens are the same), a text that ends like ``16:9``
gets ``(16:9:1)`` so A1111 does not read an AND weight, and ``<lora:…>``, plain text in both dialects, stays a tag
that A1111 loads (warning).

Weights: A1111 multiplies a token's embedding by its weight and restores the mean; compel and ComfyUI move it away
from the empty prompt's embedding, ``empty + (z - empty) * w``, and compel also blends weights below 1 toward the
prompt with that text masked out. The numbers carry over, the strength can differ, so every weighted conversion warns.

Hostile or rejected input never raises: a prompt its own front end rejects (A1111's ``(a:1.2.3)``, compel's
``.blend(nan, inf)`` or ``.and(1e309)``) or one longer than :data:`bridge.syntax.MAX_PROMPT_LENGTH` characters is
kept as written, with a warning, as the rules bridge keeps a prompt A1111 rejects. A weight past ±100
(:data:`bridge.dialects.common.MAX_WEIGHT`: 3,000 nested brackets make 1.5e124) is written as ±100, one past the
float range (10,000 ``+`` in compel) without weight, each with a warning. Every conversion takes time linear in the
prompt's length, nesting included.

compel's syntax is described in :mod:`bridge.dialects.compel` (read by :mod:`bridge.dialects.compel_reader`),
ComfyUI's in :mod:`bridge.dialects.comfyui`; :mod:`bridge.dialects.a1111` reads and writes the A1111 side and
:mod:`bridge.dialects.common` holds the weighted pieces they share.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from bridge.dialects import comfyui, compel
from bridge.dialects.comfyui import COMFY_ROUND, comfy_weights, from_a1111_parts
from bridge.dialects.common import Converted
from bridge.dialects.compel import compel_weights
from bridge.dialects.compel_reader import COMPEL_MINUS, COMPEL_PLUS

__all__ = [
    "COMFY_ROUND",
    "COMPEL_MINUS",
    "COMPEL_PLUS",
    "DIALECTS",
    "Converted",
    "comfy_weights",
    "compel_weights",
    "from_a1111",
    "from_a1111_parts",
    "to_a1111",
]

DIALECTS = ("a1111", "compel", "comfyui")
_MODULES: dict[str, ModuleType] = {"compel": compel, "comfyui": comfyui}


def from_a1111(text: str, dialect: str, embeddings: Mapping[str, str] | None = None, *,
               rescale: bool = False) -> Converted:
    """Write an A1111 prompt in ``dialect``, each piece with the weight A1111 gives it.

    ``embeddings`` are the ones ``to_a1111`` read from ComfyUI's ``embedding:NAME`` words
    (:attr:`Converted.embeddings`); writing ComfyUI, a name still in the prompt gets its prefix back. Other dialects
    write embedding names as plain words, as A1111 does. ``rescale`` (ComfyUI only) multiplies each weight by A1111's
    mean-restoring factor for its chunk (:func:`bridge.dialects.comfyui.mean_restored`).

    >>> from_a1111("(red:1.3) t-shirt, [fog], c++", "compel").text
    '(red)1.3 t-shirt, (fog)0.91, c+\\\\+'
    """
    module = _module(dialect)
    if module is comfyui:
        return comfyui.from_a1111(text, embeddings, rescale=rescale)
    if rescale:
        raise ValueError(f"rescaling weights is for ComfyUI's weighting, not {dialect}")
    return module.from_a1111(text) if module else Converted(text)


def to_a1111(text: str, dialect: str) -> Converted:
    """Read a ``dialect`` prompt and write it as A1111, each piece with the weight that dialect gives it.

    >>> to_a1111("((x:1.5)), [x]", "comfyui").text
    '(x:1.5), \\\\[x\\\\]'
    """
    module = _module(dialect)
    return module.to_a1111(text) if module else Converted(text)


def _module(dialect: str) -> ModuleType | None:
    """The module that converts ``dialect`` (ValueError for an unknown one); None for A1111, which needs none."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown prompt dialect {dialect!r}; valid dialects are {', '.join(DIALECTS)}")
    return _MODULES.get(dialect)
