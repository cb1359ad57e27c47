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
                                                                             warning
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

compel, as :func:`compel_weights` reads it (compel 2.x ``prompt_parser``): ``+`` multiplies by 1.1 and ``-`` by 0.9
per sign (its ``attention_plus_base``/``attention_minus_base``; 0.9 is not 1/1.1), nesting multiplies. A number weight
follows only ``(group)`` or ``"quote"``, with no space, and is unsigned (``(x)-0.5`` is ``x-`` then the text ``0.5``);
a bare word takes only ``+``/``-`` runs. A ``+``/``-`` followed by a word character belongs to the word
(``t-shirt``); after a word it is a weight (``c++`` is ``c`` at 1.21). Parentheses group without weighting, so compel
reads A1111's ``(x:1.3)`` as the text ``x:1.3``. Outside groups, a space-separated chunk that is not syntax is literal
text; inside a group everything must parse, or the whole group is literal text (``(a - b)1.2``). ``"``, ``(``, ``)``,
``,``, ``.``, ``+``, ``-``, ``=`` are escaped with a backslash; this module reads each escape as its character, while
compel keeps the backslash of ``\\+ \\- \\= \\, \\.`` in the text it encodes and unescapes ``\\( \\) \\"`` twice (so a
literal backslash before them is lost in compel). Inside quotes, pyparsing turns ``\\t \\n \\f \\r`` into whitespace. ``.and()`` encodes
its parts separately and concatenates them (compel's README), as A1111's BREAK does; its weights scale each part like
a token weight. Groups nested deeper than 40 are read as literal text. Whitespace is kept as written (compel rejoins
fragments with single spaces; CLIP does not see the difference).

ComfyUI, as :func:`comfy_weights` reads it (``comfy/sd1_clip.py``): ``(x)`` multiplies by 1.1, so ``((x))`` is 1.21;
``(x:w)`` sets the weight to ``w`` whatever the brackets around it give, so ``((x:1.5))`` is 1.5 and ``((x:1.5):2)``
is 1.5 too. The weight is the text after the last ``:`` when Python's ``float`` accepts it and the ``:`` is not
first. ``[ ]`` are plain text; ``\\(`` ``\\)`` are the only escapes (a backslash before anything else is a
backslash). Brackets are matched by depth: after a stray ``)`` brackets stay literal until the depth is back to zero;
an unclosed ``(`` is literal text. Core ComfyUI has no prompt editing, alternation, BREAK, AND or extra-network tags;
those are nodes (ConditioningSetTimestepRange, ConditioningConcat, ConditioningCombine, LoraLoader).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.syntax import (
    Alternation,
    Break,
    Editing,
    Emphasis,
    NetworkTag,
    Node,
    Text,
    attention,
    escape,
    excerpt,
    format_weight,
    parse,
    render,
)

__all__ = ["DIALECTS", "Converted", "comfy_weights", "compel_weights", "from_a1111", "to_a1111"]

DIALECTS = ("a1111", "compel", "comfyui")
_NAMES = {"compel": "compel", "comfyui": "ComfyUI"}

COMPEL_PLUS = 1.1  # compel: each + multiplies by 1.1 (attention_plus_base)
COMPEL_MINUS = 0.9  # compel: each - multiplies by 0.9 (attention_minus_base)
COMFY_ROUND = 1.1  # ComfyUI: each ( ) multiplies by 1.1 unless it carries its own :weight

_WEIGHTS_DIFFER = (
    "weights: {dialect} moves a weighted token's embedding away from the empty prompt's{extra}, A1111 multiplies it "
    "and restores the mean; the numbers carry over, the strength can differ"
)
_COMPEL_DOWNWEIGHT = " (and blends weights below 1 toward the prompt with that text masked out)"


@dataclass
class Converted:
    """A converted prompt and what did not carry over exactly."""

    text: str
    warnings: list[str] = field(default_factory=list)


def from_a1111(text: str, dialect: str) -> Converted:
    """Write an A1111 prompt in ``dialect``, each piece with the weight A1111 gives it.

    >>> from_a1111("(red:1.3) t-shirt, [fog], c++", "compel").text
    '(red)1.3 t-shirt, (fog)0.91, c+\\\\+'
    """
    _check_dialect(dialect)
    if dialect == "a1111":
        return Converted(text)
    warnings = _Warnings()
    clauses = [
        _Clause(_a1111_items(clause.children, 1.0, dialect, warnings), clause.weight, clause.weight_text.strip())
        for clause in parse(text).clauses
    ]
    write = _write_compel if dialect == "compel" else _write_comfy
    return Converted(write(clauses, warnings), list(warnings))


def to_a1111(text: str, dialect: str) -> Converted:
    """Read a ``dialect`` prompt and write it as A1111, each piece with the weight that dialect gives it.

    >>> to_a1111("((x:1.5)), [x]", "comfyui").text
    '(x:1.5), \\\\[x\\\\]'
    """
    _check_dialect(dialect)
    if dialect == "a1111":
        return Converted(text)
    warnings = _Warnings()
    if dialect == "comfyui":
        pieces = [_Piece(piece, weight) for piece, weight in comfy_weights(text)]
        return Converted(_a1111_text(pieces, dialect, warnings), list(warnings))
    read = _read_compel(text, warnings)
    if read.kind == "blend":
        weights = read.weights
        total = sum(weights)
        if read.normalize and total:
            weights = [w / total for w in weights]
        warnings.add(
            ".blend(): compel mixes the prompts' embeddings; A1111 has no embedding blend, so it is written as AND "
            "with the normalized weights (composable diffusion mixes noise predictions instead); expect a different "
            "result"
        )
        clauses = [
            _a1111_text(items, dialect, warnings).strip() + ("" if w == 1 else f" :{format_weight(w)}")
            for items, w in zip(read.parts, weights)
        ]
        return Converted(" AND ".join(clauses), list(warnings))
    parts = [_scaled(items, w) for items, w in zip(read.parts, read.weights)]
    if len(parts) == 1:
        return Converted(_a1111_text(parts[0], dialect, warnings), list(warnings))
    return Converted(" BREAK ".join(_a1111_text(p, dialect, warnings).strip() for p in parts), list(warnings))


def comfy_weights(text: str) -> list[tuple[str, float]]:
    """The (text, weight) segments ComfyUI's CLIPTextEncode tokenizes for ``text`` (see the module docstring).

    >>> comfy_weights("a ((b:1.5)) ((c)) [d] \\\\(e\\\\)")
    [('a ', 1.0), ('b', 1.5), (' ', 1.0), ('c', 1.2100000000000002), (' [d] (e)', 1.0)]
    """
    out: list[tuple[str, float]] = []
    stack = [(iter(_comfy_segments(_comfy_protect(text))), 1.0)]
    while stack:
        segments, weight = stack[-1]
        segment = next(segments, None)
        if segment is None:
            stack.pop()
        elif len(segment) >= 2 and segment[0] == "(" and segment[-1] == ")":
            inner, inner_weight = segment[1:-1], weight * COMFY_ROUND
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight = float(inner[colon + 1 :])
                    inner = inner[:colon]
                except ValueError:
                    pass
            stack.append((iter(_comfy_segments(inner)), inner_weight))
        else:
            out.append((_comfy_unprotect(segment), weight))
    return out


def compel_weights(text: str) -> list[tuple[str, float]]:
    """The (text, weight) fragments compel encodes for ``text``, equal neighbours merged (see the module docstring).

    ``.and()`` parts are concatenated with their part weight applied (compel concatenates them too); a ``.blend()``
    mixes whole prompts, so it has no per-token weights and raises ValueError.

    >>> compel_weights("a man picking apricots++ (from a tree)0.8, t-shirt")
    [('a man picking ', 1.0), ('apricots', 1.2100000000000002), (' ', 1.0), ('from a tree', 0.8), (', t-shirt', 1.0)]
    """
    read = _read_compel(text, _Warnings())
    if read.kind == "blend":
        raise ValueError(f"{excerpt(text)} is a compel .blend(): it mixes whole prompts and has no per-token weights")
    out: list[tuple[str, float]] = []
    for items, part_weight in zip(read.parts, read.weights):
        for item in _scaled(items, part_weight):
            if isinstance(item, _Piece) and item.text:
                if out and out[-1][1] == item.weight:
                    out[-1] = (out[-1][0] + item.text, item.weight)
                else:
                    out.append((item.text, item.weight))
    return out or [("", 1.0)]


# --------------------------------------------------------------------------------------------------------------------
# Shared pieces


@dataclass
class _Piece:
    """Literal text (no escapes) and its weight."""

    text: str
    weight: float


@dataclass
class _Note:
    """A warning that belongs to a parse: kept only if the construct it describes is part of the final reading."""

    message: str


_Item = _Piece | NetworkTag | Break | _Note


@dataclass
class _Clause:
    items: list[_Item]
    weight: float
    weight_text: str


class _Warnings(list[str]):
    def add(self, message: str) -> None:
        if message not in self:
            self.append(message)


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown prompt dialect {dialect!r}; valid dialects are {', '.join(DIALECTS)}")


def _scaled(items: list[_Item], scale: float) -> list[_Item]:
    if scale == 1:
        return items
    return [_Piece(i.text, i.weight * scale) if isinstance(i, _Piece) else i for i in items]


def _runs(items: list[_Item], name: str, warnings: _Warnings) -> list[_Item]:
    """Round weights as they will be written, merge equal neighbours, note weights whose mechanism differs."""
    out: list[_Item] = []
    for item in items:
        if not isinstance(item, _Piece):
            out.append(item)
            continue
        if not item.text:
            continue
        weight = item.weight
        if not math.isfinite(weight):
            warnings.add(f"weight {weight} on {excerpt(item.text)} is not a finite number; written without weight")
            weight = 1.0
        weight = round(weight, 2)
        if weight != 1 and item.text.strip():
            extra = _COMPEL_DOWNWEIGHT if name == "compel" else ""
            warnings.add(_WEIGHTS_DIFFER.format(dialect=name, extra=extra))
        if out and isinstance(out[-1], _Piece) and out[-1].weight == weight:
            out[-1] = _Piece(out[-1].text + item.text, weight)
        else:
            out.append(_Piece(item.text, weight))
    return out


def _split_space(text: str) -> tuple[str, str, str]:
    core = text.strip()
    start = text.index(core[0])
    return text[:start], core, text[start + len(core) :]


# --------------------------------------------------------------------------------------------------------------------
# Reading A1111

_PLACEHOLDERS = range(0xE000, 0xF900)  # private-use characters stand in for constructs while attention() runs


def _a1111_items(nodes: list[Node], scale: float, dialect: str, warnings: _Warnings) -> list[_Item]:
    """The pieces of ``nodes`` with the weights A1111 gives them, times ``scale``.

    Prompt editing, alternation and extra-network tags are swapped for placeholder characters, so attention() sees
    the brackets around them and gives each placeholder the multiplier A1111 applies to what it resolves to.
    """
    source = render(nodes)
    free = (chr(c) for c in _PLACEHOLDERS if chr(c) not in source)
    constructs: dict[str, Node] = {}
    stack = [nodes]
    while stack:
        container = stack.pop()
        for i, node in enumerate(container):
            if isinstance(node, Emphasis):
                stack.append(node.children)
            elif isinstance(node, (Editing, Alternation, NetworkTag)):
                placeholder = next(free)
                constructs[placeholder] = node
                container[i] = Text(placeholder)
    split = re.compile("([" + "".join(constructs) + "])") if constructs else None
    items: list[_Item] = []
    for piece, weight in attention(render(nodes)):
        weight *= scale
        for part in split.split(piece) if split else [piece]:
            if part in constructs:
                items += _construct_items(constructs[part], weight, dialect, warnings)
            elif part == "BREAK" and weight == -1:
                items.append(Break())
            elif part:
                items.append(_Piece(part, weight))
    return items


def _construct_items(node: Node, scale: float, dialect: str, warnings: _Warnings) -> list[_Item]:
    """Prompt editing and alternation as literal text (their contents weighted as usual); tags as they are."""
    if isinstance(node, NetworkTag):
        return [node]
    target = "compel" if dialect == "compel" else "core ComfyUI"
    raw = render([node])
    if isinstance(node, Editing):
        how = (
            "its .swap() is cross-attention control, which compel itself ignores"
            if dialect == "compel"
            else "two CLIPTextEncode nodes under ConditioningSetTimestepRange do this"
        )
        warnings.add(
            f"prompt editing {raw}: {target} has no prompt editing ({how}); kept as literal text, so the model reads "
            "both prompts at every step"
        )
        items: list[_Item] = [_Piece("[", scale)]
        if node.before is not None:
            items += [*_a1111_items(node.before, scale, dialect, warnings), _Piece(":", scale)]
        return [*items, *_a1111_items(node.after, scale, dialect, warnings), _Piece(f":{node.when}]", scale)]
    assert isinstance(node, Alternation)
    warnings.add(f"alternation {raw}: {target} has no alternation; kept as literal text, so the model reads every option")
    items = [_Piece("[", scale)]
    for i, option in enumerate(node.options):
        items += [_Piece("|", scale)] if i else []
        items += _a1111_items(option, scale, dialect, warnings)
    return [*items, _Piece("]", scale)]


# --------------------------------------------------------------------------------------------------------------------
# Writing A1111

_OPERATOR_WORD = re.compile(r"\b(?:AND|BREAK)\b")
_ENDS_LIKE_CLAUSE_WEIGHT = re.compile(r":\s*[-+]?(?:\d+\.?|\d*\.\d+)\s*\Z")
_TAG_TEXT = re.compile(r"<\w+:[^>]+>")


def _a1111_text(items: list[_Item], dialect: str, warnings: _Warnings) -> str:
    """Pieces as A1111 text: literal text escaped, every weight explicit, ``(text:weight)``."""
    out: list[str] = []
    for item in _runs(items, _NAMES[dialect], warnings):
        if not isinstance(item, _Piece):
            out.append(item.text)
            continue
        for tag in _TAG_TEXT.findall(item.text):
            warnings.add(f"{tag}: {_NAMES[dialect]} reads it as plain text; A1111 loads it as an extra network")
        text = _OPERATOR_WORD.sub(lambda m: m.group().lower(), escape(item.text))
        if item.weight == 1 or not text.strip():
            out.append(text)
        else:
            lead, core, trail = _split_space(text)
            out.append(f"{lead}({core}:{format_weight(item.weight)}){trail}")
    last = len(out) - 1
    while last >= 0 and not out[last].strip():
        last -= 1
    if last >= 0 and _ENDS_LIKE_CLAUSE_WEIGHT.search(out[last]) and not out[last].rstrip().endswith((")", ">")):
        lead, core, trail = _split_space(out[last])  # "16:9" at the very end would read as an AND weight
        out[last] = f"{lead}({core}:1){trail}"
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------------
# ComfyUI

_COMFY_ESCAPES = (("\\)", "\0\1"), ("\\(", "\0\2"))  # ComfyUI's own stand-ins for escaped brackets


def _comfy_protect(text: str) -> str:
    for escaped, stand_in in _COMFY_ESCAPES:
        text = text.replace(escaped, stand_in)
    return text


def _comfy_unprotect(text: str) -> str:
    for escaped, stand_in in _COMFY_ESCAPES:
        text = text.replace(stand_in, escaped[1])
    return text


def _comfy_segments(text: str) -> list[str]:
    """Split at depth-0 brackets: plain runs and whole ``( … )`` groups, as ComfyUI's parse_parentheses does."""
    segments: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            if depth == 0 and current:
                segments.append("".join(current))
                current = []
            current.append(char)
            depth += 1
        elif char == ")":
            depth -= 1
            current.append(char)
            if depth == 0:
                segments.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        segments.append("".join(current))
    return segments


def _write_comfy(clauses: list[_Clause], warnings: _Warnings) -> str:
    if len(clauses) > 1:
        warnings.add(
            "AND: core ComfyUI has no AND (composable diffusion: encode each part and join them with "
            "ConditioningCombine, or ConditioningAverage for weights); kept as the plain word AND"
            + (", clause weights dropped" if any(c.weight_text for c in clauses) else "")
        )
    elif clauses[0].weight_text:
        warnings.add(f"AND weight {clauses[0].weight_text}: ComfyUI has no per-prompt guidance weight; dropped")
    return " AND ".join(_comfy_text(clause.items, warnings).strip() for clause in clauses)


def _comfy_text(items: list[_Item], warnings: _Warnings) -> str:
    out = ""
    pending_break = False
    for item in _runs(items, _NAMES["comfyui"], warnings):
        if isinstance(item, NetworkTag):
            strength = f" (strength {item.args[0]})" if item.args else ""
            warnings.add(
                f"{item.text}: ComfyUI reads extra-network tags as plain text; removed, load it with a "
                f"{'LoraLoader' if item.kind in ('lora', 'lyco') else 'loader'} node{strength}"
            )
            continue
        if isinstance(item, Break):
            warnings.add(
                "BREAK: core ComfyUI has no BREAK (encode each chunk with its own CLIPTextEncode and join them with "
                "ConditioningConcat); removed, the parts are joined with ', '"
            )
            pending_break = True
            continue
        text = item.text.replace("(", "\\(").replace(")", "\\)")
        if item.weight != 1 and text.strip():
            lead, core, trail = _split_space(text)
            text = f"{lead}({core}:{format_weight(item.weight)}){trail}"
            if out.endswith("\\") and not lead:
                text = " " + text  # a literal backslash must not escape the bracket
        if pending_break and text.strip():
            left, text = out.rstrip(), text.lstrip()
            if left.endswith(",") and text.startswith(","):
                text = text[1:].lstrip()
            out = left + ("" if not left else " " if left.endswith(",") or text.startswith(",") else ", ")
            pending_break = False
        out += text
    return out.rstrip() if pending_break else out


# --------------------------------------------------------------------------------------------------------------------
# compel: writing

_COMPEL_SYNTAX = '()",.+-='
_COMPEL_SPACE = " \t\n\r\x0b\x0c"
_COMPEL_KEYWORD = re.compile(r"[A-Za-z0-9_-]+\Z")


def _write_compel(clauses: list[_Clause], warnings: _Warnings) -> str:
    parts: list[tuple[list[_Item], float]] = []
    for clause in clauses:
        part: list[_Item] = []
        for item in clause.items:
            if isinstance(item, Break):
                parts.append((part, clause.weight))
                part = []
            else:
                part.append(item)
        parts.append((part, clause.weight))
    if len(clauses) > 1:
        warnings.add(
            "AND: A1111's AND is composable diffusion (one noise prediction per part, weighted sum); compel's .and() "
            "encodes the parts separately and concatenates them (like BREAK) and its weights scale each part's "
            "embedding; written as .and(), expect a different result"
        )
    elif clauses[0].weight_text:
        warnings.add(f"AND weight {clauses[0].weight_text}: compel has no per-prompt guidance weight; dropped")
        parts = [(items, 1.0) for items, _ in parts]
    if len(parts) == 1:
        return _compel_text(parts[0][0], warnings)
    quoted = []
    for items, _ in parts:
        text = _compel_text(items, warnings).strip()
        quoted.append('"' + text + (" " if text.endswith("\\") else "") + '"')
    weights = [w for _, w in parts]
    args = "" if all(w == 1 for w in weights) else ", ".join(format_weight(w) for w in weights)
    return f"({', '.join(quoted)}).and({args})"


def _compel_text(items: list[_Item], warnings: _Warnings) -> str:
    """One compel prompt: weight-1 text plain, every other piece as ``(text)weight``, spaced so compel parses it."""
    segments: list[tuple[bool, str]] = []  # (is literal text, text); literal runs are escaped once merged

    def literal(text: str) -> None:
        if segments and segments[-1][0]:
            segments[-1] = (True, segments[-1][1] + text)
        elif text:
            segments.append((True, text))

    for item in _runs(items, _NAMES["compel"], warnings):
        if isinstance(item, NetworkTag):
            lora = _compel_lora(item, warnings)
            if lora:
                segments.append((False, lora))
        elif isinstance(item, _Piece) and (item.weight == 1 or not item.text.strip()):
            literal(item.text)
        elif isinstance(item, _Piece):
            weight = item.weight
            if weight < 0:
                warnings.add(f"negative weight {format_weight(weight)}: compel's syntax cannot write one; written as 0")
                weight = 0.0
            lead, core, trail = _split_space(item.text)
            group = _compel_escape(core, in_group=True, warnings=warnings)
            group += " " if group.endswith("\\") else ""  # "(a\)" would escape the bracket
            literal(lead)
            segments.append((False, f"({group}){format_weight(weight)}"))
            literal(trail)
    out = ""
    for is_literal, text in segments:
        if is_literal:
            text = _compel_escape(text, in_group=False, warnings=warnings)
            if out and not text[0].isspace() and text[0] != ",":
                out += " "  # "(a)1.2x" would read x as part of the weight
        elif out and not out[-1].isspace():
            out += " "  # "word(a)1.2" is one literal word to compel
        out += text
    return out


def _compel_escape(text: str, *, in_group: bool, warnings: _Warnings) -> str:
    """Escape compel's syntax in literal text.

    ``( ) "`` always; inside a ``(group)`` also ``=``; any syntax character after a literal backslash. A ``+``/``-``
    is kept only where compel reads it as part of a word: followed by a character that is neither space nor syntax
    (outside groups, also when it starts a word).
    """
    out: list[str] = []  # built right to left: whether a +/- is safe depends on the character written after it
    escaped_at: list[int] = []
    for i in range(len(text) - 1, -1, -1):
        char = text[i]
        after = out[-1][0] if out else ""
        joins_word = after != "" and after not in _COMPEL_SPACE and after not in _COMPEL_SYNTAX
        starts_word = not in_group and (i == 0 or text[i - 1] in _COMPEL_SPACE)
        after_backslash = i > 0 and text[i - 1] == "\\"  # "\\+" would read back as an escaped +
        if char in '()"':
            out.append("\\" + char)
        elif (
            (char == "=" and in_group)
            or (char in "+-" and not joins_word and not starts_word)
            or (char in _COMPEL_SYNTAX and after_backslash)
        ):
            out.append("\\" + char)
            escaped_at.append(i)
        else:
            out.append(char)
    if escaped_at:
        words = sorted({_word_at(text, i) for i in escaped_at})
        warnings.add(
            f"{', '.join(words)}: compel would read a + or - after a word as a weight (and = inside a group as "
            "syntax), so they are escaped with a backslash, which compel keeps in the text it encodes"
        )
    return "".join(reversed(out))


def _word_at(text: str, i: int) -> str:
    start = max((text.rfind(c, 0, i) for c in _COMPEL_SPACE), default=-1) + 1
    ends = [e for e in (text.find(c, i) for c in _COMPEL_SPACE) if e >= 0]
    return repr(text[start : min(ends, default=len(text))])


def _compel_lora(tag: NetworkTag, warnings: _Warnings) -> str:
    weight = tag.args[0] if tag.args else "1"
    if tag.kind == "lora" and _COMPEL_KEYWORD.match(tag.name) and _is_number(weight):
        warnings.add(
            f"{tag.text}: written as compel's withLora({tag.name}, {weight}); compel only parses it, so load the "
            "LoRA in your pipeline (diffusers: load_lora_weights)"
            + ("; its extra arguments are dropped" if len(tag.args) > 1 else "")
        )
        return f"withLora({tag.name}, {weight})"
    warnings.add(f"{tag.text}: compel has no equivalent for this extra-network tag; removed")
    return ""


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------------------------
# compel: reading

_C = r'()",.+\-='  # compel's syntax characters, inside a regex class
_W = r" \t\n\r\x0b\x0c"
_SPACES = re.compile(f"[{_W}]+")
_WORD = re.compile(rf"(?:\\[{_C}]|[+-](?![{_W}{_C}]|\Z)|[^{_W}{_C}])+")  # compel's non_syntax_word
_FREE_WORD = re.compile(f"[^{_W}]+")
_WEIGHT = re.compile(r"\++|-+|[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+")  # after (group) or "quote"; signs win over numbers
_SIGNS = re.compile(r"\++|-+")  # after a bare word
_NUMBER = r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)|-?[0-9]+"
_LORA = re.compile(rf"(?:useLora|withLora)[{_W}]*\([{_W}]*([A-Za-z0-9_-]+)[{_W}]*(?:,[{_W}]*({_NUMBER})[{_W}]*)?\)")
_QUOTED = re.compile(r'"(?:\\"|[^"\n\r])*"')  # pyparsing's QuotedString: \" inside, backtracking included
_QUOTED_WHITESPACE = re.compile(r"\\([tnfr])")  # pyparsing turns these into whitespace inside quotes
_WHITESPACE_ESCAPES = {"t": "\t", "n": "\n", "f": "\f", "r": "\r"}
_ATTEND = re.compile(rf"[{_W}]*\.attend[{_W}]*\([{_W}]*({_WEIGHT.pattern})[{_W}]*\)")
_SWAP = re.compile(rf"[{_W}]*\.swap[{_W}]*\(")
_OPTIONS = re.compile(rf"[{_W}]*\.(and|add|blend)[{_W}]*\(([^()]*)\)")
_UNESCAPE = re.compile(rf"\\([{_C}])")
_MAX_DEPTH = 40  # deeper groups read as literal text (each level costs ~9 Python frames)


@dataclass
class _CompelPrompt:
    kind: str  # "prompt", "and" or "blend"
    parts: list[list[_Item]]
    weights: list[float]
    normalize: bool = True


def _read_compel(text: str, warnings: _Warnings) -> _CompelPrompt:
    text = re.sub(r",(\S)", r", \1", text)  # compel's own first step
    reader = _CompelReader(text, warnings)
    read = reader.operator_prompt("and") or reader.operator_prompt("blend")
    read = read or _CompelPrompt("prompt", [reader.prompt(0, len(text))], [1.0])
    for part in read.parts:
        for note in [item for item in part if isinstance(item, _Note)]:
            warnings.add(note.message)
        part[:] = [item for item in part if not isinstance(item, _Note)]
    return read


class _CompelReader:
    """A recursive-descent reading of compel's grammar; every method returns (items, end) or None.

    Item weights are relative to the enclosing group; the caller multiplies. Results are memoized because compel's
    alternatives re-read the same group (``(x)`` is tried as an attention target, then as a plain group).
    """

    def __init__(self, text: str, warnings: _Warnings) -> None:
        self.text = text
        self.warnings = warnings
        self.memo: dict[tuple[str, int, int], tuple[list[_Item], int] | None] = {}
        self.depth = 0

    # whole-prompt forms ---------------------------------------------------------------------------------------------

    def operator_prompt(self, kind: str) -> _CompelPrompt | None:
        """``("a", "b").and(…)`` / ``.blend(…)``: a parenthesized list of targets, then the operator."""
        text, pos = self.text, self.skip(0)
        if not text.startswith("(", pos):
            return None
        parts, pos = [], pos + 1
        while True:
            found = self.target(self.skip(pos), len(text)) or self.quoted(self.skip(pos), len(text), whole=True)
            if not found:
                return None
            parts.append(found[0])
            pos = self.skip(found[1])
            if text.startswith(",", pos):
                pos += 1
            elif text.startswith(")", pos):
                break
            else:
                return None
        match = _OPTIONS.match(text, pos + 1)
        if not match or (match.group(1) == "blend") != (kind == "blend"):
            return None
        options = [o.strip() for o in match.group(2).split(",")] if match.group(2).strip() else []
        normalize = not (kind == "blend" and options and options[-1] == "no_normalize")
        options = options if normalize else options[:-1]
        if not all(re.fullmatch(_NUMBER, o) for o in options) or len(options) not in (0, len(parts)):
            raise ValueError(
                f"compel rejects .{match.group(1)}({match.group(2)}) after {len(parts)} parts: give one number per part "
                "or none"
            )
        rest = text[match.end() :]
        if rest.strip() and kind == "blend":
            raise ValueError(f"compel rejects text after .blend(…): {excerpt(rest)}")
        if rest.strip():
            self.warnings.add(f"text after .and(…) ({excerpt(rest.strip())}) is ignored by compel; dropped")
        return _CompelPrompt(kind, parts, [float(o) for o in options] or [1.0] * len(parts), normalize)

    def prompt(self, pos: int, end: int) -> list[_Item]:
        """compel's top-level grammar: anything that is not syntax is a literal word, so this never fails."""
        items: list[_Item] = []
        while pos < end:
            space = _SPACES.match(self.text, pos, end)
            found = (
                ([_Piece(space.group(), 1.0)], space.end())
                if space
                else self.swap(pos, end)
                or self.lora(pos, end)
                or self.attention(pos, end)
                or self.quoted(pos, end)
                or self.group(pos, end)
                or self.free_word(pos, end)
            )
            items += found[0]
            pos = found[1]
        return items

    # elements -------------------------------------------------------------------------------------------------------

    def fragment(self, pos: int, end: int, *, punctuation: bool = True) -> tuple[list[_Item], int]:
        """compel's inner grammar (inside groups and quotes): stops where no element matches."""
        items: list[_Item] = []
        while pos < end:
            space = _SPACES.match(self.text, pos, end)
            if space:
                items.append(_Piece(space.group(), 1.0))
                pos = space.end()
                continue
            found = (
                self.lora(pos, end)
                or self.attention(pos, end)
                or self.swap(pos, end)
                or self.group(pos, end)
                or self.quoted(pos, end)
                or self.word(pos, end)
            )
            if not found and punctuation and self.text[pos] in ",.":
                found = ([_Piece(self.text[pos], 1.0)], pos + 1)
            if not found:
                break
            items += found[0]
            pos = found[1]
        return items, pos

    def group(self, pos: int, end: int) -> tuple[list[_Item], int] | None:
        """``( … )``: groups without weighting."""
        if not self.text.startswith("(", pos) or pos >= end:
            return None
        return self.memoized("group", pos, end, lambda: self.closed(pos + 1, end, ")"))

    def quoted(self, pos: int, end: int, *, whole: bool = False) -> tuple[list[_Item], int] | None:
        """``"…"`` (``\\"`` inside); ``whole`` reads the inside as a whole prompt (the parts of .and/.blend)."""
        match = _QUOTED.match(self.text, pos, end)
        if not match:
            return None
        close = match.end() - 1
        content = _QUOTED_WHITESPACE.sub(lambda m: _WHITESPACE_ESCAPES[m.group(1)], match.group()[1:-1])
        if content != match.group()[1:-1]:  # read the converted inside on its own
            reader = _CompelReader(content, self.warnings)
            reader.depth = self.depth + 1
            inside = reader.prompt(0, len(content)) if whole else reader.inside(0, len(content))
            return (inside if whole else inside[0], close + 1) if inside is not None else None
        if whole:
            return self.prompt(pos + 1, close), close + 1
        return self.memoized("quoted", pos, end, lambda: self.inside(pos + 1, close))

    def inside(self, start: int, close: int) -> tuple[list[_Item], int] | None:
        found = self.nested(start, close)
        return (found[0], close + 1) if found and found[1] == close else None

    def closed(self, start: int, end: int, closer: str) -> tuple[list[_Item], int] | None:
        found = self.nested(start, end)
        return (found[0], found[1] + 1) if found and found[1] < end and self.text[found[1]] == closer else None

    def nested(self, start: int, end: int) -> tuple[list[_Item], int] | None:
        if self.depth >= _MAX_DEPTH:
            return None
        self.depth += 1
        try:
            return self.fragment(start, end)
        finally:
            self.depth -= 1

    def word(self, pos: int, end: int) -> tuple[list[_Item], int] | None:
        match = _WORD.match(self.text, pos, end)
        return ([_Piece(_UNESCAPE.sub(r"\1", match.group()), 1.0)], match.end()) if match else None

    def free_word(self, pos: int, end: int) -> tuple[list[_Item], int]:
        match = _FREE_WORD.match(self.text, pos, end)
        assert match is not None
        return [_Piece(_UNESCAPE.sub(r"\1", match.group()), 1.0)], match.end()

    def target(self, pos: int, end: int) -> tuple[list[_Item], int] | None:
        """What an operator applies to: a quote, a group or a bare word."""
        return self.quoted(pos, end) or self.group(pos, end) or self.word(pos, end)

    def attention(self, pos: int, end: int) -> tuple[list[_Item], int] | None:
        """``x.attend(w)``, ``(x)w`` / ``"x"w`` (w: signs or a number), ``word+``."""
        target = self.target(pos, end)
        if not target:
            return None
        items, after = target
        explicit = _ATTEND.match(self.text, after, end)
        if explicit:
            return _scaled(items, _compel_weight(explicit.group(1))), explicit.end()
        bracketed = self.text[pos] in '("' and (self.quoted(pos, end) or self.group(pos, end))
        if bracketed:
            weight = _WEIGHT.match(self.text, bracketed[1], end)
            return (_scaled(bracketed[0], _compel_weight(weight.group())), weight.end()) if weight else None
        word = self.word(pos, end)
        signs = _SIGNS.match(self.text, word[1], end) if word else None
        return (_scaled(word[0], _compel_weight(signs.group())), signs.end()) if word and signs else None

    def swap(self, pos: int, end: int) -> tuple[list[_Item], int] | None:
        """``x.swap(y, options)``: compel encodes ``x`` (it ignores cross-attention control)."""
        target = self.target(pos, end)
        opener = _SWAP.match(self.text, target[1], end) if target else None
        if not target or not opener:
            return None
        _, stop = self.fragment(opener.end(), end, punctuation=False)
        close = self.text.find(")", stop, end)
        if close < 0 or not (self.text.startswith(")", stop) or self.text.startswith(",", stop)):
            return None
        note = _Note(
            f"{self.text[pos : close + 1]}: .swap() is cross-attention control, which compel itself ignores; the "
            "original text is kept (A1111's prompt editing [from:to:when] is the nearest construct)"
        )
        return [*target[0], note], close + 1

    def lora(self, pos: int, end: int) -> tuple[list[_Item], int] | None:
        match = _LORA.match(self.text, pos, end)
        if not match:
            return None
        tag = NetworkTag.make("lora", match.group(1), match.group(2) or "1")
        return [tag, _Note(f"{match.group()}: written as {tag.text}, which A1111 loads itself")], match.end()

    def memoized(
        self, kind: str, pos: int, end: int, read: Callable[[], tuple[list[_Item], int] | None]
    ) -> tuple[list[_Item], int] | None:
        key = (kind, pos, end)
        if key not in self.memo:
            self.memo[key] = read()
        return self.memo[key]

    def skip(self, pos: int) -> int:
        space = _SPACES.match(self.text, pos)
        return space.end() if space else pos


def _compel_weight(operator: str) -> float:
    if operator[0] == "+":
        return COMPEL_PLUS ** len(operator)
    if operator[0] == "-":
        return COMPEL_MINUS ** len(operator)
    return float(operator)
