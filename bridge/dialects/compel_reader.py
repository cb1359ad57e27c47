"""compel's prompt grammar (compel 2.x ``prompt_parser``), read into weighted pieces; :mod:`bridge.dialects.compel`
says what it reads and how that differs from compel itself.

:func:`read_compel` gives a whole prompt: one part, or the parts of ``("a", "b").and(…)`` / ``.blend(…)`` with their
weights. Each part is a list of :class:`~bridge.dialects.common.Piece` items with their final weights, and the LoRA
tags compel parses; the notes the reading met become warnings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from bridge.dialects.common import Item, Note, Piece, Warnings, scaled
from bridge.syntax import NetworkTag, PromptSyntaxError, excerpt

COMPEL_PLUS = 1.1  # compel: each + multiplies by 1.1 (attention_plus_base)
COMPEL_MINUS = 0.9  # compel: each - multiplies by 0.9 (attention_minus_base)

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
class CompelPrompt:
    kind: str  # "prompt", "and" or "blend"
    parts: list[list[Item]]
    weights: list[float]
    normalize: bool = True


def read_compel(text: str, warnings: Warnings) -> CompelPrompt:
    """A compel prompt read into weighted pieces; :class:`bridge.syntax.PromptSyntaxError` for one compel rejects
    (``.blend(nan, inf)``, ``.and(1e309)``: its numbers are plain decimals, one per part)."""
    text = re.sub(r",(\S)", r", \1", text)  # compel's own first step
    reader = _CompelReader(text, warnings)
    read = reader.operator_prompt("and") or reader.operator_prompt("blend")
    read = read or CompelPrompt("prompt", [reader.prompt(0, len(text))], [1.0])
    for part in read.parts:
        for note in [item for item in part if isinstance(item, Note)]:
            warnings.add(note.message)
        part[:] = [item for item in part if not isinstance(item, Note)]
    return read


class _CompelReader:
    """A recursive-descent reading of compel's grammar; every method returns (items, end) or None.

    Item weights are relative to the enclosing group; the caller multiplies. Results are memoized because compel's
    alternatives re-read the same group (``(x)`` is tried as an attention target, then as a plain group).
    """

    def __init__(self, text: str, warnings: Warnings) -> None:
        self.text = text
        self.warnings = warnings
        self.memo: dict[tuple[str, int, int], tuple[list[Item], int] | None] = {}
        self.depth = 0

    # whole-prompt forms ---------------------------------------------------------------------------------------------

    def operator_prompt(self, kind: str) -> CompelPrompt | None:
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
            given = match.group(2) if len(match.group(2)) <= 60 else match.group(2)[:59] + "…"
            raise PromptSyntaxError(
                f".{match.group(1)}({given}) after {len(parts)} parts: compel takes one plain number per part (such as "
                "0.7) or none"
            )
        rest = text[match.end() :]
        if rest.strip() and kind == "blend":
            raise PromptSyntaxError(f"text after .blend(…): {excerpt(rest)}")
        if rest.strip():
            self.warnings.add(f"text after .and(…) ({excerpt(rest.strip())}) is ignored by compel; dropped")
        return CompelPrompt(kind, parts, [float(o) for o in options] or [1.0] * len(parts), normalize)

    def prompt(self, pos: int, end: int) -> list[Item]:
        """compel's top-level grammar: anything that is not syntax is a literal word, so this never fails."""
        items: list[Item] = []
        while pos < end:
            space = _SPACES.match(self.text, pos, end)
            found = (
                ([Piece(space.group(), 1.0)], space.end())
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

    def fragment(self, pos: int, end: int, *, punctuation: bool = True) -> tuple[list[Item], int]:
        """compel's inner grammar (inside groups and quotes): stops where no element matches."""
        items: list[Item] = []
        while pos < end:
            space = _SPACES.match(self.text, pos, end)
            if space:
                items.append(Piece(space.group(), 1.0))
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
                found = ([Piece(self.text[pos], 1.0)], pos + 1)
            if not found:
                break
            items += found[0]
            pos = found[1]
        return items, pos

    def group(self, pos: int, end: int) -> tuple[list[Item], int] | None:
        """``( … )``: groups without weighting."""
        if not self.text.startswith("(", pos) or pos >= end:
            return None
        return self.memoized("group", pos, end, lambda: self.closed(pos + 1, end, ")"))

    def quoted(self, pos: int, end: int, *, whole: bool = False) -> tuple[list[Item], int] | None:
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

    def inside(self, start: int, close: int) -> tuple[list[Item], int] | None:
        found = self.nested(start, close)
        return (found[0], close + 1) if found and found[1] == close else None

    def closed(self, start: int, end: int, closer: str) -> tuple[list[Item], int] | None:
        found = self.nested(start, end)
        return (found[0], found[1] + 1) if found and found[1] < end and self.text[found[1]] == closer else None

    def nested(self, start: int, end: int) -> tuple[list[Item], int] | None:
        if self.depth >= _MAX_DEPTH:
            return None
        self.depth += 1
        try:
            return self.fragment(start, end)
        finally:
            self.depth -= 1

    def word(self, pos: int, end: int) -> tuple[list[Item], int] | None:
        match = _WORD.match(self.text, pos, end)
        return ([Piece(_UNESCAPE.sub(r"\1", match.group()), 1.0)], match.end()) if match else None

    def free_word(self, pos: int, end: int) -> tuple[list[Item], int]:
        match = _FREE_WORD.match(self.text, pos, end)
        assert match is not None
        return [Piece(_UNESCAPE.sub(r"\1", match.group()), 1.0)], match.end()

    def target(self, pos: int, end: int) -> tuple[list[Item], int] | None:
        """What an operator applies to: a quote, a group or a bare word."""
        return self.quoted(pos, end) or self.group(pos, end) or self.word(pos, end)

    def attention(self, pos: int, end: int) -> tuple[list[Item], int] | None:
        """``x.attend(w)``, ``(x)w`` / ``"x"w`` (w: signs or a number), ``word+``."""
        target = self.target(pos, end)
        if not target:
            return None
        items, after = target
        explicit = _ATTEND.match(self.text, after, end)
        if explicit:
            return scaled(items, _compel_weight(explicit.group(1))), explicit.end()
        bracketed = self.text[pos] in '("' and (self.quoted(pos, end) or self.group(pos, end))
        if bracketed:
            weight = _WEIGHT.match(self.text, bracketed[1], end)
            return (scaled(bracketed[0], _compel_weight(weight.group())), weight.end()) if weight else None
        word = self.word(pos, end)
        signs = _SIGNS.match(self.text, word[1], end) if word else None
        return (scaled(word[0], _compel_weight(signs.group())), signs.end()) if word and signs else None

    def swap(self, pos: int, end: int) -> tuple[list[Item], int] | None:
        """``x.swap(y, options)``: compel encodes ``x`` (it ignores cross-attention control)."""
        target = self.target(pos, end)
        opener = _SWAP.match(self.text, target[1], end) if target else None
        if not target or not opener:
            return None
        _, stop = self.fragment(opener.end(), end, punctuation=False)
        close = self.text.find(")", stop, end)
        if close < 0 or not (self.text.startswith(")", stop) or self.text.startswith(",", stop)):
            return None
        note = Note(
            f"{self.text[pos : close + 1]}: .swap() is cross-attention control, which compel itself ignores; the "
            "original text is kept (A1111's prompt editing [from:to:when] is the nearest construct)"
        )
        return [*target[0], note], close + 1

    def lora(self, pos: int, end: int) -> tuple[list[Item], int] | None:
        match = _LORA.match(self.text, pos, end)
        if not match:
            return None
        tag = NetworkTag.make("lora", match.group(1), match.group(2) or "1")
        return [tag, Note(f"{match.group()}: written as {tag.text}, which A1111 loads itself")], match.end()

    def memoized(
        self, kind: str, pos: int, end: int, read: Callable[[], tuple[list[Item], int] | None]
    ) -> tuple[list[Item], int] | None:
        key = (kind, pos, end)
        if key not in self.memo:
            self.memo[key] = read()
        return self.memo[key]

    def skip(self, pos: int) -> int:
        space = _SPACES.match(self.text, pos)
        return space.end() if space else pos


def _compel_weight(operator: str) -> float:
    """A weight as compel reads it: a run of signs, or a number. Past the float range it is infinite (compel itself
    raises OverflowError on 10,000 ``+``); the writers say so and write the text without a weight."""
    if operator[0] in "+-":
        try:
            return (COMPEL_PLUS if operator[0] == "+" else COMPEL_MINUS) ** len(operator)
        except OverflowError:
            return math.inf
    return float(operator)
