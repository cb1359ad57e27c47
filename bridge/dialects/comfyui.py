"""ComfyUI's prompt weighting (core CLIPTextEncode), to and from A1111.

ComfyUI, as :func:`comfy_weights` reads it (``comfy/sd1_clip.py``): ``(x)`` multiplies by 1.1, so ``((x))`` is 1.21;
``(x:w)`` sets the weight to ``w`` whatever the brackets around it give, so ``((x:1.5))`` is 1.5 and ``((x:1.5):2)``
is 1.5 too. The weight is the text after the last ``:`` when Python's ``float`` accepts it and the ``:`` is not
first. ``[ ]`` are plain text; ``\\(`` ``\\)`` are the only escapes (a backslash before anything else is a
backslash). Brackets are matched by depth: after a stray ``)`` brackets stay literal until the depth is back to zero;
an unclosed ``(`` is literal text. Core ComfyUI has no prompt editing, alternation, BREAK, AND or extra-network tags;
those are nodes (ConditioningSetTimestepRange, ConditioningConcat, ConditioningCombine, LoraLoader).

Textual inversions (``SDTokenizer.tokenize_with_weights`` and ``_try_get_embedding``): each weighted segment is split
at spaces (newlines count as spaces) and a word that starts with ``embedding:`` names an embedding file in the
embeddings folder (a subfolder and the extension ``.safetensors``/``.pt``/``.bin`` may be given); when no file has
that name, commas around it are stripped and what follows is read as text, so ``embedding:easynegative,`` works. A1111
names an embedding by its file stem alone, written as a plain word. Reading, ``embedding:sub/easynegative.pt`` becomes
``easynegative`` and :attr:`Converted.embeddings` remembers the spelling; writing, a name given in ``embeddings`` gets
its ``embedding:`` word back, with a space before it where ComfyUI would not see a word start.

``BREAK`` and ``AND`` (:func:`from_a1111_parts`): core ComfyUI builds them from nodes (``nodes.py``):
``ConditioningConcat.concat(conditioning_to, conditioning_from)`` appends the first cond of ``conditioning_from`` to
each of ``conditioning_to`` along the token axis, as A1111 appends a BREAK's new 75-token chunk;
``ConditioningCombine.combine(conditioning_1, conditioning_2)`` returns both lists, so the sampler denoises with each
and sums the results, as A1111 does for ``AND`` (composable diffusion, equal weights).

Weight strength (``rescale``): ComfyUI (``ClipTokenWeightEncoder.encode_token_weights`` in ``comfy/sd1_clip.py``)
encodes an empty prompt beside the chunk when any weight is not 1 and moves each weighted token away from the empty
prompt's token at that position, ``z = (z - z_empty) * w + z_empty``; nothing else changes. A1111
(``process_tokens`` in ``modules/sd_hijack_clip.py``) multiplies each token's ``z`` by its weight, then scales the
whole 77-position chunk so its mean is the mean before weighting. :func:`mean_restored` estimates that second step:
taking every position to have the same mean, the factor is ``77 / (77 + sum(w - 1))`` over the chunk's tokens
(A1111's own 75-token chunks, BREAK included), and each weighted piece's weight is multiplied by it, so ``(x:1.3)``
comes out a little weaker when much of its chunk is weighted up. Its limits: token means differ; the unweighted
text, which A1111 scales by the same factor, is left as written; ComfyUI's weight acts on the distance from the empty
prompt and A1111's on the whole embedding, which no weight number makes equal.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping

from bridge.chunks import CHUNK_TOKENS, COMMA, chunk_spans
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
    split_space,
    too_long,
)
from bridge.syntax import Break, NetworkTag, PromptSyntaxError, format_weight
from bridge.tokens import tokenize

COMFY_ROUND = 1.1  # ComfyUI: each ( ) multiplies by 1.1 unless it carries its own :weight
EMBEDDING_PREFIX = "embedding:"  # ComfyUI's SDTokenizer.embedding_identifier
_EMBEDDING_WORD = re.compile(r"(?<![^ \n])embedding:([^ \n]*)")  # a word start: segment start, space or newline
_EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")  # what ComfyUI's load_embed tries after the bare name
A1111_POSITIONS = CHUNK_TOKENS + 2  # the positions A1111's mean runs over: start token, 75 tokens, end and padding


def from_a1111(text: str, embeddings: Mapping[str, str] | None = None, *, rescale: bool = False) -> Converted:
    """Write an A1111 prompt as ComfyUI, each piece with the weight A1111 gives it.

    ``embeddings`` (A1111 name -> ComfyUI spelling, as :func:`to_a1111` returns them) are written back as
    ``embedding:`` words wherever the name is still in the prompt. ``rescale`` multiplies the weights by A1111's
    mean-restoring factor (:func:`mean_restored`).

    >>> from_a1111("a castle, easynegative", {"easynegative": "easynegative"}).text
    'a castle, embedding:easynegative'
    """
    warnings = Warnings()
    names = _name_pattern(embeddings or {})
    if too_long(text):
        return Converted(text, [too_long(text)], dict(embeddings or {}))
    try:
        clauses = _clauses(text, warnings, rescale)
    except PromptSyntaxError as exc:
        return Converted(text, [rejected(exc, "A1111")], dict(embeddings or {}))
    return Converted(_write_comfy(clauses, warnings, names, embeddings or {}), list(warnings), dict(embeddings or {}))


def from_a1111_parts(
    text: str, embeddings: Mapping[str, str] | None = None, *, rescale: bool = False
) -> tuple[list[list[str]], list[str]]:
    """An A1111 prompt's ``AND`` clauses, each as its ``BREAK`` parts written as ComfyUI, and the warnings.

    Encode each part with its own CLIPTextEncode, join the parts of a clause with ConditioningConcat and the clauses
    with ConditioningCombine. A part with no text (``BREAK BREAK``) is left out; clause weights are dropped.

    >>> from_a1111_parts("a (castle:1.2) BREAK fog AND a dog")[0]
    [['a (castle:1.2)', 'fog'], ['a dog']]
    """
    warnings = Warnings()
    names = _name_pattern(embeddings or {})
    if too_long(text):
        return [[text]], [too_long(text)]
    try:
        read = _clauses(text, warnings, rescale)
    except PromptSyntaxError as exc:
        return [[text]], [rejected(exc, "A1111")]
    clauses: list[list[str]] = []
    for clause in read:
        if clause.weight_text:
            warnings.add(f"AND weight {clause.weight_text}: ConditioningCombine has no weight (ConditioningAverage "
                         "blends two conditionings); dropped")
        parts: list[list[Item]] = [[]]
        for item in clause.items:
            if isinstance(item, Break):
                parts.append([])
            else:
                parts[-1].append(item)
        written = [_comfy_text(part, warnings, names, embeddings or {}).strip() for part in parts]
        clauses.append([part for part in written if part] or [""])
    return clauses, list(warnings)


def _clauses(text: str, warnings: Warnings, rescale: bool) -> list[Clause]:
    clauses = a1111_clauses(text, "comfyui", warnings)
    if rescale:
        clauses = [Clause(mean_restored(c.items), c.weight, c.weight_text) for c in clauses]
    return clauses


def mean_restored(items: list[Item]) -> list[Item]:
    """One clause's pieces with each weight (not 1) times A1111's mean-restoring factor for its chunk.

    The chunks are A1111's (:func:`bridge.chunks.chunk_spans`, each piece tokenized on its own as A1111 does); a
    piece cut by a chunk end takes the factor of the chunk it starts in. See the module docstring for the limits.

    >>> [round(p.weight, 3) for p in mean_restored([Piece("a ", 1.0), Piece("castle", 1.5)])]
    [1.0, 1.49]
    """
    tokens: list[list[str]] = [[]]
    owners: list[list[int]] = [[]]  # the index of the piece each token comes from
    for index, item in enumerate(items):
        if isinstance(item, Break):
            tokens.append([])
            owners.append([])
        elif isinstance(item, Piece):
            found = tokenize(item.text)
            tokens[-1] += found
            owners[-1] += [index] * len(found)
    weights = {i: item.weight for i, item in enumerate(items) if isinstance(item, Piece)}
    factors: dict[int, float] = {}
    for span in chunk_spans(tokens, COMMA):
        owned = owners[span.run][span.start : span.end]
        total = A1111_POSITIONS + sum(weights[i] - 1 for i in owned)
        if total <= 0:  # weighted below zero on the whole: A1111's factor flips the sign; left as written
            continue
        for i in owned:
            if weights[i] != 1:
                factors.setdefault(i, A1111_POSITIONS / total)
    return [Piece(item.text, weights[i] * factors[i]) if i in factors and isinstance(item, Piece) else item
            for i, item in enumerate(items)]


def to_a1111(text: str) -> Converted:
    """Read a ComfyUI prompt and write it as A1111, each piece with the weight ComfyUI gives it.

    >>> converted = to_a1111("a castle, (embedding:sub/easynegative.pt:1.2)")
    >>> converted.text, converted.embeddings
    ('a castle, (easynegative:1.2)', {'easynegative': 'sub/easynegative.pt'})
    """
    if too_long(text):
        return Converted(text, [too_long(text)])
    warnings = Warnings()
    embeddings: dict[str, str] = {}
    pieces: list[Item] = [
        Piece(_read_embeddings(piece, embeddings, warnings), weight) for piece, weight in comfy_weights(text)
    ]
    return Converted(a1111_text(pieces, "comfyui", warnings), list(warnings), embeddings)


def _read_embeddings(segment: str, embeddings: dict[str, str], warnings: Warnings) -> str:
    """``embedding:NAME`` words of one weighted segment as A1111's bare names (recorded in ``embeddings``)."""
    if EMBEDDING_PREFIX not in segment:
        return segment

    def swap(match: re.Match) -> str:
        word = match.group(1)
        spelled = word.rstrip(",")  # ComfyUI strips commas when no file has the name with them
        commas = word[len(spelled) :]
        stem = spelled.replace("\\", "/").rsplit("/", 1)[-1]
        for suffix in _EMBEDDING_SUFFIXES:
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if not stem:
            warnings.add(f"{match.group()}: names no embedding file; ComfyUI ignores it, removed")
            return commas
        if stem != spelled:
            warnings.add(f"{match.group()}: A1111 names an embedding by its file name alone; read as {stem}")
        embeddings[stem] = spelled
        return stem + commas

    return _EMBEDDING_WORD.sub(swap, segment)


def _name_pattern(embeddings: Mapping[str, str]) -> re.Pattern | None:
    if not embeddings:
        return None
    alternatives = "|".join(re.escape(name) for name in sorted(embeddings, key=len, reverse=True))
    return re.compile(r"(?<![\w.:/\\-])(" + alternatives + r")(?![\w-])")


def _write_embeddings(text: str, names: re.Pattern, embeddings: Mapping[str, str]) -> str:
    """Bare embedding names in one written piece as ComfyUI ``embedding:`` words, each starting a word."""

    def swap(match: re.Match) -> str:
        start, end = match.span()
        before = " " if start and text[start - 1] not in " \n" else ""
        after = " " if end < len(text) and text[end] not in " \n," else ""
        return f"{before}{EMBEDDING_PREFIX}{embeddings[match.group(1)]}{after}"

    return names.sub(swap, text)


def comfy_weights(text: str) -> list[tuple[str, float]]:
    """The (text, weight) segments ComfyUI's CLIPTextEncode tokenizes for ``text`` (see the module docstring).

    >>> comfy_weights("a ((b:1.5)) ((c)) [d] \\\\(e\\\\)")
    [('a ', 1.0), ('b', 1.5), (' ', 1.0), ('c', 1.2100000000000002), (' [d] (e)', 1.0)]

    ComfyUI splits the text at its outer brackets and reads each group's inside again, which is quadratic in the
    nesting; this reads the brackets once (:class:`_Brackets`) and gives the same segments in linear time.
    """
    brackets = _Brackets(_comfy_protect(text))
    out: list[tuple[str, float]] = []
    stack = [(iter(brackets.outer_segments()), 1.0)]
    while stack:
        segments, weight = stack[-1]
        segment = next(segments, None)
        if segment is None:
            stack.pop()
        elif brackets.is_group(*segment):
            start, end = segment[0] + 1, segment[1] - 1  # the inside, as ComfyUI's x[1:-1]
            inner_weight = weight * COMFY_ROUND
            explicit = brackets.weight(start, end)
            if explicit is not None:
                inner_weight, end = explicit
            stack.append((iter(brackets.inner_segments(start, end)), inner_weight))
        else:
            out.append((_comfy_unprotect(brackets.text[segment[0]:segment[1]]), weight))
    return out


class _Brackets:
    """One reading of a (protected) ComfyUI prompt's brackets, for segments at any depth in linear time.

    ComfyUI's ``parse_parentheses`` scans a text keeping a depth: a ``(`` at depth 0 starts a group, the ``)`` that
    brings the depth back to 0 ends it; a stray ``)`` takes the depth below 0, where brackets are plain text. Only
    the whole prompt can hold a stray ``)``: inside a group the depth never goes below 0, so there a group is a
    ``(`` and the ``)`` that matches it (one stack over the whole text), or, unclosed, runs to the end of the inside.
    """

    def __init__(self, text: str):
        self.text = text
        self.brackets = [(m.start(), m.group()) for m in re.finditer(r"[()]", text)]
        self.match: dict[int, int] = {}
        opens: list[int] = []
        for position, char in self.brackets:
            if char == "(":
                opens.append(position)
            elif opens:
                self.match[opens.pop()] = position
        self.positions = [position for position, _ in self.brackets]
        self.colons = [m.start() for m in re.finditer(":", text)]

    def outer_segments(self) -> list[tuple[int, int]]:
        """The whole prompt's segments, as ComfyUI's scan makes them (stray closers included)."""
        segments: list[tuple[int, int]] = []
        depth = start = 0
        for position, char in self.brackets:
            if char == "(":
                if depth == 0:
                    if position > start:
                        segments.append((start, position))
                    start = position
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    segments.append((start, position + 1))
                    start = position + 1
        if start < len(self.text):
            segments.append((start, len(self.text)))
        return segments

    def inner_segments(self, start: int, end: int) -> list[tuple[int, int]]:
        """The segments of a group's inside ``text[start:end]``, where the depth never goes below 0."""
        segments: list[tuple[int, int]] = []
        while start < end:
            opener = self.text.find("(", start, end)
            if opener < 0:
                segments.append((start, end))
                break
            if opener > start:
                segments.append((start, opener))
            closer = self.match.get(opener, end)
            if closer >= end:  # unclosed inside this group: the rest is one segment
                segments.append((opener, end))
                break
            segments.append((opener, closer + 1))
            start = closer + 1
        return segments

    def is_group(self, start: int, end: int) -> bool:
        """ComfyUI's test: a segment of two or more characters that starts with ``(`` and ends with ``)``."""
        return end - start >= 2 and self.text[start] == "(" and self.text[end - 1] == ")"

    def weight(self, start: int, end: int) -> tuple[float, int] | None:
        """The ``:weight`` that ends a group's inside ``text[start:end]`` (the last ``:``, not its first character,
        followed by what Python's float reads), and where the text before it ends; or None."""
        last = bisect.bisect_left(self.colons, end) - 1
        colon = self.colons[last] if last >= 0 else -1
        if colon <= start:
            return None
        after = bisect.bisect_left(self.positions, colon)
        if after < len(self.positions) and self.positions[after] < end:
            return None  # a bracket after the colon: float() would refuse it (and reading it would be quadratic)
        try:
            return float(self.text[colon + 1:end]), colon
        except ValueError:
            return None


_COMFY_ESCAPES = (("\\)", "\0\1"), ("\\(", "\0\2"))  # ComfyUI's own stand-ins for escaped brackets


def _comfy_protect(text: str) -> str:
    for escaped, stand_in in _COMFY_ESCAPES:
        text = text.replace(escaped, stand_in)
    return text


def _comfy_unprotect(text: str) -> str:
    for escaped, stand_in in _COMFY_ESCAPES:
        text = text.replace(stand_in, escaped[1])
    return text


def _write_comfy(
    clauses: list[Clause], warnings: Warnings, names: re.Pattern | None, embeddings: Mapping[str, str]
) -> str:
    if len(clauses) > 1:
        warnings.add(
            "AND: core ComfyUI has no AND (composable diffusion: encode each part and join them with "
            "ConditioningCombine, or ConditioningAverage for weights); kept as the plain word AND"
            + (", clause weights dropped" if any(c.weight_text for c in clauses) else "")
        )
    elif clauses[0].weight_text:
        warnings.add(f"AND weight {clauses[0].weight_text}: ComfyUI has no per-prompt guidance weight; dropped")
    return " AND ".join(_comfy_text(clause.items, warnings, names, embeddings).strip() for clause in clauses)


def _comfy_text(items: list[Item], warnings: Warnings, names: re.Pattern | None, embeddings: Mapping[str, str]) -> str:
    out: list[str] = []  # the text written so far, in non-empty parts (joined once: a long prompt has thousands)
    pending_break = False
    for item in runs(items, NAMES["comfyui"], warnings):
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
        if names is not None:
            text = _write_embeddings(text, names, embeddings)
        if item.weight != 1 and text.strip():
            lead, core, trail = split_space(text)
            text = f"{lead}({core}:{format_weight(item.weight)}){trail}"
            if out and out[-1].endswith("\\") and not lead:
                text = " " + text  # a literal backslash must not escape the bracket
        if pending_break and text.strip():
            _rstrip(out)
            text = text.lstrip()
            if out and out[-1].endswith(",") and text.startswith(","):
                text = text[1:].lstrip()
            if out:
                out.append(" " if out[-1].endswith(",") or text.startswith(",") else ", ")
            pending_break = False
        if text:
            out.append(text)
    if pending_break:
        _rstrip(out)
    return "".join(out)


def _rstrip(parts: list[str]) -> None:
    """Strip the whitespace at the end of the text ``parts`` make (in place; each part is looked at once)."""
    while parts and not parts[-1].rstrip():
        parts.pop()
    if parts:
        parts[-1] = parts[-1].rstrip()
