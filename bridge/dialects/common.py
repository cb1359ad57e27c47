"""What both dialects share: the weighted pieces a prompt is read into, the warnings, and the Converted result.

A conversion reads a prompt into :class:`Piece` items (literal text, no escapes, and the weight that front end gives
it), together with the network tags, BREAKs and :class:`Note` warnings the reading met, and writes them in the other
notation. :func:`runs` rounds the weights as they will be written and merges equal neighbours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bridge.syntax import MAX_PROMPT_LENGTH, Break, NetworkTag, excerpt

NAMES = {"compel": "compel", "comfyui": "ComfyUI"}
# The largest weight a conversion writes: 3,000 nested brackets make 1.1 ** 3000, some 1.5e124, which no front end
# can use; a weight past it is written as this, with a warning (one past the float range: without weight).
MAX_WEIGHT = 100.0

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
    # ComfyUI ``embedding:NAME`` words read as A1111's bare embedding names: A1111 name -> the name as ComfyUI wrote
    # it (a subfolder or file extension kept), for :func:`bridge.dialects.from_a1111` to write the prefix back
    embeddings: dict[str, str] = field(default_factory=dict)


@dataclass
class Piece:
    """Literal text (no escapes) and its weight."""

    text: str
    weight: float


@dataclass
class Note:
    """A warning that belongs to a parse: kept only if the construct it describes is part of the final reading."""

    message: str


Item = Piece | NetworkTag | Break | Note


@dataclass
class Clause:
    items: list[Item]
    weight: float
    weight_text: str


class Warnings(list[str]):
    """The warnings of one conversion, each once, in order (a set beside the list: a long prompt has thousands)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def add(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            self.append(message)


def too_long(text: str) -> str | None:
    """The warning for a prompt longer than :data:`bridge.syntax.MAX_PROMPT_LENGTH`, which a conversion passes
    through unchanged (as the rules bridge does), or None."""
    if len(text) <= MAX_PROMPT_LENGTH:
        return None
    return (f"the prompt is {len(text):,} characters, over the {MAX_PROMPT_LENGTH:,} a conversion reads; kept as "
            "written")


def rejected(exc: ValueError, front_end: str) -> str:
    """The warning for a prompt its own front end rejects (``(a:1.2.3)`` in A1111, ``.blend(nan, inf)`` in compel):
    the conversion keeps it as written, as the rules bridge keeps a prompt A1111 rejects."""
    return f"{exc}; {front_end} rejects this prompt, so it is kept as written"


def scaled(items: list[Item], scale: float) -> list[Item]:
    if scale == 1:
        return items
    return [Piece(i.text, i.weight * scale) if isinstance(i, Piece) else i for i in items]


def runs(items: list[Item], name: str, warnings: Warnings) -> list[Item]:
    """Round weights as they will be written, merge equal neighbours, note weights whose mechanism differs."""
    out: list[Item] = []
    for item in items:
        if not isinstance(item, Piece):
            out.append(item)
            continue
        if not item.text:
            continue
        weight = item.weight
        if not math.isfinite(weight):
            warnings.add(f"weight {weight} on {excerpt(item.text)} is not a finite number; written without weight")
            weight = 1.0
        elif abs(weight) > MAX_WEIGHT:
            warnings.add(f"weight {weight:.3g} on {excerpt(item.text)} (deep nesting?) is written as "
                         f"{math.copysign(MAX_WEIGHT, weight):g}")
            weight = math.copysign(MAX_WEIGHT, weight)
        weight = round(weight, 2)
        if weight != 1 and item.text.strip():
            extra = _COMPEL_DOWNWEIGHT if name == "compel" else ""
            warnings.add(_WEIGHTS_DIFFER.format(dialect=name, extra=extra))
        if out and isinstance(out[-1], Piece) and out[-1].weight == weight:
            out[-1] = Piece(out[-1].text + item.text, weight)
        else:
            out.append(Piece(item.text, weight))
    return out


def split_space(text: str) -> tuple[str, str, str]:
    core = text.strip()
    start = text.index(core[0])
    return text[:start], core, text[start + len(core) :]
