"""The literal strings a regular expression cannot match without: a cheap substring test to run before the regex.

Most prompts cannot match a given weak-concept pattern, and when every match must contain one of a few literals
("says", "reads") a substring test rules those prompts out far faster than the regex. The literals are read from the
pattern text by a small recursive-descent reader rather than from the interpreter's private regex parser, whose
output changes between Python releases. The reader is conservative: what it does not understand (backreferences,
conditionals, case-insensitive or verbose text) makes it claim nothing, which costs the prefilter, never a match.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["required_literals"]

MAX_STRINGS = 64  # strings a piece is spelled out as; past that, only what it requires is kept
MAX_LENGTH = 256  # characters in one spelled-out string, so that "(?:x{200}){200}" stays cheap
MAX_DEPTH = 100  # nested groups; Python's own parser recurses as deep, so deeper patterns are not read

_PLAIN = re.compile(r"[^\\\[\]().^$*+?{}|]+")  # a run of characters that stand for themselves
_QUANTIFIER = re.compile(r"([*+?])|\{(\d*)(,?)(\d*)\}")
_FLAGS = re.compile(r"([aiLmsux]*)(?:-[imsx]*)?([:)])")
_CONTROL = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class _Unknown(Exception):
    """The pattern uses a construct the reader does not understand, so nothing is claimed about it."""


class _Piece(NamedTuple):
    """What is known of a piece of a pattern: ``exact``, every string it can match (when few and short: ``colou?r``
    is "color" or "colour"), and ``needs``, strings one of which every match contains (None: nothing known)."""

    exact: frozenset[str] | None
    needs: frozenset[str] | None


def _spelled(exact: frozenset[str]) -> _Piece:
    """A piece whose matches are all known needs one of them, unless it can match the empty string."""
    return _Piece(exact, exact if "" not in exact else None)


_EMPTY = _spelled(frozenset({""}))  # an anchor or a lookaround: it consumes nothing, so its neighbours stay adjacent
_OPAQUE = _Piece(None, None)  # "." or "\w": one character of many; or a group under a flag that hides its literals


def required_literals(pattern: str) -> frozenset[str] | None:
    """Strings one of which every match of ``pattern`` (searched case-sensitively) contains, or None when none is known.

    Of the sets a pattern requires, the most selective is kept: the one whose shortest string is longest (then the
    smallest). A literal holding a shorter one of the set is dropped, since wherever it occurs the shorter one does too
    ("signboard" holds "sign"). Patterns with a global IGNORECASE or VERBOSE flag are answered None: their literals do
    not stand for themselves. The pattern is not compiled here (the engine compiles a pattern on first use): text that
    ``re`` rejects is answered None where the reader sees why (an unclosed group, a repeat of a repeat, a bad escape),
    and anything at all otherwise, which is harmless since such a pattern is never searched with.
    """
    try:
        reader = _Reader(pattern)
        needs = reader.alternation(0).needs
        if reader.pos != len(pattern):
            return None  # a stray ")": re refuses it, and the reader claims nothing about text it did not read
    except (_Unknown, re.error, RecursionError, OverflowError, ValueError, Warning):
        return None
    if not needs:
        return None
    return frozenset(x for x in needs if not any(other != x and other in x for other in needs))


def _product(left: frozenset[str], right: frozenset[str]) -> frozenset[str] | None:
    """Every string of ``left`` followed by every string of ``right``, or None when that spells out too much."""
    if len(left) * len(right) > MAX_STRINGS:
        return None
    joined = frozenset(a + b for a in left for b in right)
    return joined if max(map(len, joined)) <= MAX_LENGTH else None


def _sequence(pieces: list[_Piece]) -> _Piece:
    """Pieces one after another. Spelled-out neighbours join into a run, which every match holds as one substring;
    a piece that is not spelled out ends the run and offers what it needs. The most selective offer is kept."""
    if len(pieces) == 1:
        return pieces[0]  # (every piece that is spelled out was made by _spelled)
    offers: list[frozenset[str] | None] = []
    run, whole = frozenset({""}), True
    for piece in pieces:
        joined = _product(run, piece.exact) if piece.exact is not None else None
        if joined is None:  # the run ends here (a run too long to spell out starts again with this piece)
            offers += [_spelled(run).needs, piece.needs]
            joined, whole = piece.exact or frozenset({""}), False
        run = joined
    if whole:
        return _spelled(run)
    # The most selective offer: the longest shortest string, then the fewest strings.
    return _Piece(None, max(filter(None, [*offers, _spelled(run).needs]), key=lambda c: (min(map(len, c)), -len(c)),
                            default=None))


def _alternation(branches: list[_Piece]) -> _Piece:
    """Branches of ``|``: spelled out when all of them are, and requiring something only when every branch does."""
    exact = [b.exact for b in branches if b.exact is not None]
    if len(exact) == len(branches) and len(union := frozenset().union(*exact)) <= MAX_STRINGS:
        return _spelled(union)
    needs = [b.needs for b in branches if b.needs]
    return _Piece(None, frozenset().union(*needs) if len(needs) == len(branches) else None)


def _repeat(piece: _Piece, low: int, high: int | None) -> _Piece:
    """``piece`` matched ``low`` to ``high`` times (None: no limit). A bounded repeat of a spelled-out piece stays
    spelled out while that is small ("x{0,2}": "", "x", "xx"); else a repeat of at least once needs what the piece
    needs, and an optional one needs nothing."""
    if piece.exact == _EMPTY.exact:
        return piece  # what consumes nothing consumes nothing however often it is repeated
    if piece.exact is not None and high is not None:
        power: frozenset[str] | None = frozenset({""})
        spelled: set[str] = set()
        # Each round adds a longer string, so the limits end the loop within MAX_STRINGS + MAX_LENGTH rounds.
        for count in range(high + 1):
            if power is None or len(spelled) > MAX_STRINGS:
                break
            if count >= low:
                spelled |= power
            power = _product(power, piece.exact)
        else:
            if len(spelled) <= MAX_STRINGS:
                return _spelled(frozenset(spelled))
    return _Piece(None, piece.needs if low >= 1 else None)


class _Reader:
    """Reads a pattern that ``re`` accepts, one construct at a time, into the :class:`_Piece` it stands for."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def take(self, *prefixes: str) -> str | None:
        """The first of ``prefixes`` the text goes on with, now read; or None."""
        for prefix in prefixes:
            if self.text.startswith(prefix, self.pos):
                self.pos += len(prefix)
                return prefix
        return None

    def read(self) -> str:
        if self.pos >= len(self.text):
            raise _Unknown("the pattern ends early")
        self.pos += 1
        return self.text[self.pos - 1]

    def alternation(self, depth: int) -> _Piece:
        if depth > MAX_DEPTH:
            raise _Unknown("nested too deep")
        branches = [self.sequence(depth)]
        while self.take("|"):
            branches.append(self.sequence(depth))
        return _alternation(branches)

    def sequence(self, depth: int) -> _Piece:
        """Pieces up to the next ``|`` or ``)``, each with its quantifiers."""
        pieces = []
        while self.pos < len(self.text) and self.text[self.pos] not in "|)":
            piece = self.atom(depth)
            if (quantifier := self.quantifier()) is not None:
                self.take("?", "+")  # the lazy and possessive forms match the same strings
                if self.quantifier() is not None:
                    raise _Unknown("a repeat of a repeat")  # ("a**", which re refuses)
                sign, low, comma, high = quantifier.groups()
                if sign:
                    piece = _repeat(piece, int(sign == "+"), 1 if sign == "?" else None)
                else:
                    piece = _repeat(piece, int(low or 0), int(high) if high else None if comma else int(low))
            pieces.append(piece)
        return _sequence(pieces)

    def quantifier(self) -> re.Match | None:
        """A quantifier at the reading position, now read; or None."""
        quantifier = _QUANTIFIER.match(self.text, self.pos)
        if quantifier is None or quantifier.group() == "{}":
            return None
        self.pos = quantifier.end()
        return quantifier

    def atom(self, depth: int) -> _Piece:
        """A run of plain characters (but the last one, when a quantifier follows), a group, a set or an escape."""
        if plain := _PLAIN.match(self.text, self.pos):
            run = plain.group()
            if len(run) > 1 and self.text[plain.end() : plain.end() + 1] in ("*", "+", "?", "{"):
                run = run[:-1]  # a quantifier after a run repeats its last character only
            self.pos += len(run)
            return _spelled(frozenset({run}))
        char = self.read()
        if char == "(":
            return self.group(depth + 1)
        if char == "[":
            return self.char_class()
        if char in "^$.":
            return _EMPTY if char != "." else _OPAQUE
        if char in "*+?":
            raise _Unknown("nothing to repeat")
        if char != "\\":
            return _spelled(frozenset({char}))  # a "{" or "}" that is not a quantifier, or a "]"
        if self.take("b", "B", "A", "Z"):
            return _EMPTY
        escaped = self.escape()
        return _OPAQUE if escaped is None else _spelled(frozenset({escaped}))

    def escape(self) -> str | None:
        """The character an escape stands for (read after its backslash), or None for a class such as ``\\d``."""
        char = self.read()
        if char in "dDsSwW":
            return None
        if char in _CONTROL:
            return _CONTROL[char]
        if char.isascii() and char.isalnum():
            raise _Unknown("a backreference, or a character by its code or name")
        return char

    def group(self, depth: int) -> _Piece:
        """What follows a ``(``: what the group holds; nothing for a lookaround, a comment or global flags."""
        if not self.take("?") or self.take(":", ">"):
            return self.closed(self.alternation(depth))
        if self.take("P=", "("):
            raise _Unknown("a backreference or a conditional")
        if self.take("#"):
            self.pos = self.text.index(")", self.pos) + 1
            return _EMPTY
        if self.take("=", "!", "<=", "<!"):
            self.skip()  # a lookaround consumes nothing: only where it ends matters, not what it holds
            return _EMPTY
        if self.take("P<", "<"):
            self.pos = self.text.index(">", self.pos) + 1
            return self.closed(self.alternation(depth))
        flags = _FLAGS.match(self.text, self.pos)
        if flags is None or "x" in flags.group(1) or (flags.group(2) == ")" and "i" in flags.group(1)):
            raise _Unknown("an extension the reader does not know, or verbose text")
        self.pos = flags.end()
        if flags.group(2) == ")":
            return _EMPTY  # global flags other than IGNORECASE and VERBOSE (refused above) leave the literals as they are
        piece = self.closed(self.alternation(depth))
        return _OPAQUE if "i" in flags.group(1) else piece  # its literals match in either case: they require nothing

    def skip(self) -> None:
        """Read to the end of the group being read, without working out what it matches."""
        depth = 1
        while depth:
            char = self.read()
            if char == "\\":
                self.read()
            elif char == "[":
                self.char_class()
            elif char in "()":
                depth += 1 if char == "(" else -1

    def closed(self, piece: _Piece) -> _Piece:
        if self.take(")") is None:
            raise _Unknown("an unclosed group")
        return piece

    def char_class(self) -> _Piece:
        """A ``[...]`` set: spelled out when it lists a few plain characters, else one character of many."""
        members: set[str] = set()
        plain, first = not self.take("^"), True
        while (char := self.read()) != "]" or first:
            first = False
            if char == "\\":
                escaped = "\b" if self.take("b") else self.escape()  # "\b" is a backspace in a set
                if escaped is None:
                    plain = False
                    continue
                char = escaped
            if self.text.startswith("-", self.pos) and not self.text.startswith("-]", self.pos):
                plain = False  # a range: read its other end, and give up spelling the set out
                self.pos += 1
                if self.read() == "\\":
                    self.escape()
                continue
            members.add(char)
        return _spelled(frozenset(members)) if plain and len(members) <= MAX_STRINGS else _OPAQUE
