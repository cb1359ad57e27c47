"""compel's weighting syntax, to and from A1111.

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
fragments with single spaces; CLIP does not see the difference). The reading itself is
:mod:`bridge.dialects.compel_reader`.
"""

from __future__ import annotations

import bisect
import math
import re

from bridge.dialects.a1111 import a1111_clauses, a1111_text
from bridge.dialects.common import (
    NAMES,
    Clause,
    Converted,
    Item,
    Piece,
    Warnings,
    rejected,
    runs,
    scaled,
    split_space,
    too_long,
)
from bridge.dialects.compel_reader import read_compel
from bridge.syntax import Break, NetworkTag, PromptSyntaxError, excerpt, format_weight


def from_a1111(text: str) -> Converted:
    """Write an A1111 prompt as compel, each piece with the weight A1111 gives it. A prompt A1111 rejects, or one
    over MAX_PROMPT_LENGTH, is kept as written, with a warning."""
    if too_long(text):
        return Converted(text, [too_long(text)])
    warnings = Warnings()
    try:
        clauses = a1111_clauses(text, "compel", warnings)
    except PromptSyntaxError as exc:
        return Converted(text, [rejected(exc, "A1111")])
    return Converted(_write_compel(clauses, warnings), list(warnings))


def to_a1111(text: str) -> Converted:
    """Read a compel prompt and write it as A1111, each piece with the weight compel gives it. A prompt compel
    rejects, or one over MAX_PROMPT_LENGTH, is kept as written, with a warning."""
    if too_long(text):
        return Converted(text, [too_long(text)])
    warnings = Warnings()
    try:
        read = read_compel(text, warnings)
    except PromptSyntaxError as exc:
        return Converted(text, [rejected(exc, "compel")])
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
            a1111_text(items, "compel", warnings).strip() + ("" if w == 1 else f" :{format_weight(w)}")
            for items, w in zip(read.parts, weights)
        ]
        return Converted(" AND ".join(clauses), list(warnings))
    parts = [scaled(items, w) for items, w in zip(read.parts, read.weights)]
    if len(parts) == 1:
        return Converted(a1111_text(parts[0], "compel", warnings), list(warnings))
    return Converted(" BREAK ".join(a1111_text(p, "compel", warnings).strip() for p in parts), list(warnings))


def compel_weights(text: str) -> list[tuple[str, float]]:
    """The (text, weight) fragments compel encodes for ``text``, equal neighbours merged (see the module docstring).

    ``.and()`` parts are concatenated with their part weight applied (compel concatenates them too); a ``.blend()``
    mixes whole prompts, so it has no per-token weights and raises ValueError. A prompt compel rejects raises
    :class:`bridge.syntax.PromptSyntaxError` (a ValueError too).

    >>> compel_weights("a man picking apricots++ (from a tree)0.8, t-shirt")
    [('a man picking ', 1.0), ('apricots', 1.2100000000000002), (' ', 1.0), ('from a tree', 0.8), (', t-shirt', 1.0)]
    """
    read = read_compel(text, Warnings())
    if read.kind == "blend":
        raise ValueError(f"{excerpt(text)} is a compel .blend(): it mixes whole prompts and has no per-token weights")
    out: list[tuple[str, float]] = []
    for items, part_weight in zip(read.parts, read.weights):
        for item in scaled(items, part_weight):
            if isinstance(item, Piece) and item.text:
                if out and out[-1][1] == item.weight:
                    out[-1] = (out[-1][0] + item.text, item.weight)
                else:
                    out.append((item.text, item.weight))
    return out or [("", 1.0)]


_COMPEL_SYNTAX = '()",.+-='
_COMPEL_SPACE = " \t\n\r\x0b\x0c"
_COMPEL_KEYWORD = re.compile(r"[A-Za-z0-9_-]+\Z")


def _write_compel(clauses: list[Clause], warnings: Warnings) -> str:
    parts: list[tuple[list[Item], float]] = []
    for clause in clauses:
        part: list[Item] = []
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


def _compel_text(items: list[Item], warnings: Warnings) -> str:
    """One compel prompt: weight-1 text plain, every other piece as ``(text)weight``, spaced so compel parses it."""
    segments: list[tuple[bool, str]] = []  # (is literal text, text); literal runs are escaped once merged

    def literal(text: str) -> None:
        if segments and segments[-1][0]:
            segments[-1] = (True, segments[-1][1] + text)
        elif text:
            segments.append((True, text))

    for item in runs(items, NAMES["compel"], warnings):
        if isinstance(item, NetworkTag):
            lora = _compel_lora(item, warnings)
            if lora:
                segments.append((False, lora))
        elif isinstance(item, Piece) and (item.weight == 1 or not item.text.strip()):
            literal(item.text)
        elif isinstance(item, Piece):
            weight = item.weight
            if weight < 0:
                warnings.add(f"negative weight {format_weight(weight)}: compel's syntax cannot write one; written as 0")
                weight = 0.0
            lead, core, trail = split_space(item.text)
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


def _compel_escape(text: str, *, in_group: bool, warnings: Warnings) -> str:
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
        words = _words_at(text, escaped_at)
        warnings.add(
            f"{words}: compel would read a + or - after a word as a weight (and = inside a group as "
            "syntax), so they are escaped with a backslash, which compel keeps in the text it encodes"
        )
    return "".join(reversed(out))


_COMPEL_WORD = re.compile(f"[^{re.escape(_COMPEL_SPACE)}]+")
_WORDS_NAMED = 10  # words a warning lists; more are counted


def _words_at(text: str, positions: list[int]) -> str:
    """The words (runs between compel's whitespace) holding ``positions``, quoted, sorted, each once; past
    _WORDS_NAMED, a count of the others (a long prompt can hold thousands)."""
    spans = [m.span() for m in _COMPEL_WORD.finditer(text)]
    starts = [start for start, _ in spans]
    words = sorted({repr(text[slice(*spans[bisect.bisect_right(starts, i) - 1])]) for i in positions})
    more = len(words) - _WORDS_NAMED
    return ", ".join(words[:_WORDS_NAMED]) + (f" and {more} more" if more > 0 else "")


def _compel_lora(tag: NetworkTag, warnings: Warnings) -> str:
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
