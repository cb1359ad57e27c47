"""AUTOMATIC1111's prompt language, parsed into a tree that renders back to the exact input.

This is the one prompt parser of the project. It reads everything A1111 users write:

    a (castle:1.3), ((detailed)), [blurry], \\(escaped\\), [day:night:0.5], [cat|dog],
    <lora:detail:0.6>, first chunk BREAK second chunk, a forest AND a river :0.7

``parse(text)`` never fails and ``str(parse(text)) == text`` for every string: what A1111 would treat as literal text
(unbalanced brackets, a stray ``:``) stays literal text here. The tree is rendered from its nodes, so a program can walk
it, replace a phrase, change a weight or remove a tag, and every span it did not touch comes back byte-identical.

``attention(text)`` is A1111's emphasis parser applied to a raw string, with its exact output and quirks: x1.1 per
``( )``, /1.1 per ``[ ]``, explicit weights multiplied through nesting, unclosed brackets applied at the end, equal
neighbours merged, ``BREAK`` as ``("BREAK", -1)`` (multiplied like any text inside brackets). Where A1111 raises
(``((a:1.2.3))``) it raises :class:`PromptSyntaxError`.

How A1111 reads a prompt, and so how the tree is shaped:

1. Extra-network tags ``<kind:name:args>`` are taken out of the text first (they never reach the text encoder).
2. The text is split into clauses at the word ``AND``; each clause may end with a weight, ``a cat :1.2``.
3. Each clause is parsed for prompt editing ``[from:to:when]`` / ``[to:when]`` / ``[from::when]`` and alternation
   ``[a|b]``. If any part of a clause does not fit that grammar (a ``|`` outside an alternation, a dangling
   backslash), A1111 schedules nothing in that clause and the whole clause is literal text to step 4; so does this
   parser (``Clause.scheduled`` is False then).
4. The text of each step goes through :func:`attention`.

Nodes: :class:`Text`, :class:`Break`, :class:`NetworkTag`, :class:`Emphasis`, :class:`Editing`,
:class:`Alternation`, inside :class:`Clause` objects inside a :class:`Prompt`. Every algorithm here is iterative, so
10,000 nested brackets parse and render without ``RecursionError``.

This module is over the project's 500 lines on purpose: it is one grammar, and its parser, its renderer and
``attention()`` must agree on every character (the round-trip and hypothesis tests hold them together). Split, each
half would have to know the other's rules.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter

__all__ = [
    "MAX_PROMPT_LENGTH",
    "Alternation",
    "Break",
    "Clause",
    "Editing",
    "Emphasis",
    "NetworkTag",
    "Node",
    "Prompt",
    "PromptSyntaxError",
    "Text",
    "attention",
    "excerpt",
    "features",
    "format_weight",
    "parse",
    "render",
    "render_head",
    "walk_text",
]

# Characters: the rules bridge and the dialect conversions pass a longer prompt through unchanged, with a warning. No
# prompt written for a 75-token window comes near it (100,000 characters are some 25,000 tokens); it bounds the time
# a pasted blob can take. parse() and attention() themselves take any length, in linear time.
MAX_PROMPT_LENGTH = 100_000

ROUND_MULTIPLIER = 1.1  # A1111: each ( ) multiplies attention by 1.1
SQUARE_MULTIPLIER = 1 / 1.1  # A1111: each [ ] divides attention by 1.1


class PromptSyntaxError(ValueError):
    """A prompt A1111 itself would refuse (for example a malformed weight such as ``(a:1.2.3)``)."""


# --------------------------------------------------------------------------------------------------------------------
# attention(): A1111's emphasis parser on a raw string

_ATTENTION_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]            # an escaped bracket or backslash: literal
    | \\                    # a lone backslash: dropped
    | [(\[]                 # openers
    | :\s*([+-]?[.\d]+)\s*\)  # an explicit weight closing a round bracket
    | [)\]]                 # closers
    | [^\\()\[\]:]+         # a run of text
    | :                     # a colon that is not a weight
    """,
    re.VERBOSE,
)
# Text with none of these characters and no "BREAK" has no emphasis: attention() of it is the text at weight 1.0.
_ATTENTION_SYNTAX = re.compile(r"[\\()\[\]:]")


def attention(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into (text, weight) pairs exactly as A1111's ``parse_prompt_attention`` does.

    >>> attention("a (castle:1.3), ((tall)) [fog]")
    [('a ', 1.0), ('castle', 1.3), (', ', 1.0), ('tall', 1.2100000000000002), (' ', 1.0), ('fog', 0.9090909090909091)]
    >>> attention("one BREAK two")
    [('one', 1.0), ('BREAK', -1), ('two', 1.0)]

    Time is linear in the length of ``text``: A1111 multiplies every piece inside a bracket pair when the pair
    closes, which is quadratic for deep nesting around many pieces (``"(a " * 50_000``). Up to
    :data:`EXACT_MULTIPLICATIONS` such multiplications this does the same, float for float; past that each piece's
    weight is the same product taken outer bracket first, which can differ from A1111's in the last bits.
    """
    if _ATTENTION_SYNTAX.search(text) is None and "BREAK" not in text:
        return [(text, 1.0)]  # plain text (most prompts in a library): one search instead of the full scan
    # Entries created between two bracket events always receive the same multipliers afterwards, so weights are kept
    # per segment (one float per run of entries) instead of per entry; each entry keeps only its sign (BREAK is -1).
    texts: list[str] = []
    signs: list[int] = []
    seg_of_entry: list[int] = []
    segments = 0
    need_new_segment = True
    round_opens: list[int] = []  # segment index at which each open ( starts
    square_opens: list[int] = []
    closed: list[tuple[int, int, float, bool]] = []  # (first segment, end, multiplier, square) in closing order

    def add(piece: str, sign: int) -> None:
        nonlocal need_new_segment, segments
        if need_new_segment:
            segments += 1
            need_new_segment = False
        texts.append(piece)
        signs.append(sign)
        seg_of_entry.append(segments - 1)

    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        opens = round_opens if token == "(" else square_opens if token == "[" else None
        if token.startswith("\\"):
            add(token[1:], 1)
            continue
        if opens is not None:
            opens.append(segments)
        elif weight is not None and round_opens:
            closed.append((round_opens.pop(), segments, _parse_weight(weight, text), False))
        elif token == ")" and round_opens:
            closed.append((round_opens.pop(), segments, ROUND_MULTIPLIER, False))
        elif token == "]" and square_opens:
            closed.append((square_opens.pop(), segments, SQUARE_MULTIPLIER, True))
        else:
            for i, part in enumerate(_split_at_break(token)):
                if i:
                    add("BREAK", -1)
                add(part, 1)
            continue
        need_new_segment = True  # a bracket event: the entries after it are weighed apart from those before

    if not texts:
        return [("", 1.0)]
    # A1111's order: each pair as it closes, then the unclosed ( in order, then the unclosed [
    brackets = [*closed, *((start, segments, ROUND_MULTIPLIER, False) for start in round_opens),
                *((start, segments, SQUARE_MULTIPLIER, True) for start in square_opens)]
    if sum(end - start for start, end, _, _ in brackets) <= EXACT_MULTIPLICATIONS:
        seg_weight = [1.0] * segments
        for start, end, multiplier, _ in brackets:  # A1111's own loop, one float per segment instead of per entry
            seg_weight[start:end] = [w * multiplier for w in seg_weight[start:end]]
    else:
        seg_weight = _nested_products(segments, brackets)
    merged: list[tuple[list[str], float]] = []  # equal neighbours' pieces, joined once at the end
    for piece, sign, seg in zip(texts, signs, seg_of_entry):
        # A1111 starts BREAK at int -1 and multiplies it; -(w) is the same float as (-1 * m1 * m2 ...).
        w = seg_weight[seg] if sign > 0 else (-seg_weight[seg] if seg_weight[seg] != 1.0 else -1)
        if merged and merged[-1][1] == w:
            merged[-1][0].append(piece)
        else:
            merged.append(([piece], w))
    return [("".join(pieces), w) for pieces, w in merged]


EXACT_MULTIPLICATIONS = 1_000_000  # segment weights attention() multiplies A1111's way before it takes the linear way


def _nested_products(segments: int, brackets: list[tuple[int, int, float, bool]]) -> list[float]:
    """Each segment's weight in linear time: the product of the multipliers of the ``brackets`` around it ((first
    segment, end segment, multiplier, square); unclosed ones end at the last segment).

    The brackets of one kind nest (A1111 keeps a stack per kind), so one sweep per kind keeps the running products
    of the open brackets on a stack, outermost first; a segment's weight is the round product times the square one.
    Where every multiplier is the same (``"(a" * 50_000``) this is A1111's float exactly.
    """
    rounds = [(start, end, m) for start, end, m, square in brackets if not square]
    squares = [(start, end, m) for start, end, m, square in brackets if square]
    weights = [1.0] * segments
    for kind in (rounds, squares):
        ordered = sorted((b for b in kind if b[0] < b[1]), key=lambda b: (b[0], -b[1]))  # outer ones first
        stack: list[tuple[int, float]] = []  # (end segment, product of the brackets open here)
        i = 0
        for s in range(segments):
            while stack and stack[-1][0] <= s:
                stack.pop()
            while i < len(ordered) and ordered[i][0] == s:
                _, end, multiplier = ordered[i]
                stack.append((end, (stack[-1][1] if stack else 1.0) * multiplier))
                i += 1
            if stack:
                weights[s] *= stack[-1][1]
    return weights


def _split_at_break(text: str) -> list[str]:
    """``text`` split at each word ``BREAK``, the whitespace around it taken too, as A1111 splits text at BREAK (a
    pattern with whitespace on both sides, which a regex search tries from every space of a run: quadratic)."""
    if "BREAK" not in text:
        return [text]
    parts = _BREAK_WORD.split(text)
    last = len(parts) - 1
    return [part if last == 0 else part.rstrip() if i == 0 else part.lstrip() if i == last else part.strip()
            for i, part in enumerate(parts)]


def _parse_weight(weight: str, context: str) -> float:
    try:
        return float(weight)
    except ValueError:
        raise PromptSyntaxError(
            f"malformed weight {weight!r} in {excerpt(context)}; a weight is one number such as 1.2 or 0.8"
        ) from None


def excerpt(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters with an ellipsis: one helper for every message."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --------------------------------------------------------------------------------------------------------------------
# The tree


@dataclass(eq=False, slots=True)
class Text:
    """Literal text, raw as written (escapes included: ``\\(`` stays two characters)."""

    text: str

    @property
    def value(self) -> str:
        """The text with A1111 escapes resolved (``\\(`` → ``(``)."""
        if "\\" not in self.text:
            return self.text
        return "".join(piece for piece, _ in _text_pieces(self.text))


@dataclass(eq=False)
class Break:
    """``BREAK``: outside brackets, A1111 starts a new 75-token chunk here."""

    text: str = "BREAK"


_TAG = re.compile(r"<(\w+):([^>]+)>")


@dataclass(eq=False)
class NetworkTag:
    """An extra-network tag such as ``<lora:name:0.8>`` or ``<lora:name:0.8:0.5>``, kept raw."""

    text: str

    @classmethod
    def make(cls, kind: str, name: str, *args: str | float) -> NetworkTag:
        return cls("<" + ":".join([kind, name, *(a if isinstance(a, str) else format_weight(a) for a in args)]) + ">")

    @property
    def kind(self) -> str:
        return self.text[1:-1].split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.text[1:-1].split(":")[1]

    @property
    def args(self) -> list[str]:
        return self.text[1:-1].split(":")[2:]


@dataclass(eq=False)
class Emphasis:
    """``(x)``, ``[x]``, ``(x:1.3)``; ``close`` is ``")"``, ``"]"``, ``":1.3)"`` as written, or ``""`` if unclosed.

    A group whose brackets A1111 does not read as emphasis (``(a:b:c)``, a ``[a:b]`` that is not prompt editing) is
    still an ``Emphasis`` node; its text is exact and :attr:`multiplier` gives what A1111's attention does with it.
    """

    children: list[Node] = field(default_factory=list)
    open: str = "("
    close: str = ")"

    @property
    def explicit_weight(self) -> str | None:
        """The weight as written (``"1.3"`` for ``(x:1.3)``), or None."""
        if self.open == "(" and len(self.close) > 1:
            return self.close[1:-1].strip()
        return None

    @property
    def multiplier(self) -> float:
        """What this pair of brackets multiplies attention by (raises PromptSyntaxError on a malformed weight)."""
        explicit = self.explicit_weight
        if explicit is not None:
            return _parse_weight(explicit, self.close)
        return ROUND_MULTIPLIER if self.open == "(" else SQUARE_MULTIPLIER

    def set_weight(self, weight: float) -> None:
        """Make this ``(children:weight)``."""
        self.open, self.close = "(", f":{format_weight(weight)})"


@dataclass(eq=False)
class Editing:
    """Prompt editing: ``[before:after:when]``, ``[after:when]`` (before is None) or ``[before::when]``.

    ``when`` is raw (whitespace kept). Since A1111 1.6 a number with a ``.`` is a fraction of the steps, otherwise a
    step count; the prompt shows ``before`` up to and including that step, ``after`` from the next one.
    """

    before: list[Node] | None
    after: list[Node]
    when: str

    def switch_step(self, steps: int) -> int:
        value = float(self.when)
        step = value * steps if "." in self.when else value
        return min(steps, int(step))


@dataclass(eq=False)
class Alternation:
    """``[a|b|c]``: A1111 uses option ``(step - 1) % len(options)`` at each step."""

    options: list[list[Node]]


Node = Text | Break | NetworkTag | Emphasis | Editing | Alternation


@dataclass(eq=False)
class Clause:
    """One ``AND`` part of a prompt; ``weight_text`` is the raw trailing weight (``" :1.2"``), or ``""``.

    ``scheduled`` is False when A1111 would not parse prompt editing in this clause (see the module docstring).
    """

    children: list[Node] = field(default_factory=list)
    weight_text: str = ""
    scheduled: bool = True

    @property
    def weight(self) -> float:
        if not self.weight_text:
            return 1.0
        return float(self.weight_text.strip().lstrip(":").strip())

    def __str__(self) -> str:
        return render(self.children) + self.weight_text

    def text_at(self, step: int | None = None, steps: int = 20) -> str:
        """The text A1111 feeds to :func:`attention` at ``step`` (1-based) of ``steps``: tags removed, editing and
        alternation resolved. ``step=None`` resolves to the first step."""
        return render(self.children, step=1 if step is None else step, steps=steps)


@dataclass(eq=False)
class Prompt:
    """A whole prompt: clauses joined by ``AND`` (``separators`` holds the raw ``"AND"`` between them)."""

    clauses: list[Clause] = field(default_factory=lambda: [Clause()])
    separators: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if len(self.clauses) == 1:
            return str(self.clauses[0])
        out = [str(self.clauses[0])]
        for sep, clause in zip(self.separators, self.clauses[1:]):
            out.append(sep)
            out.append(str(clause))
        return "".join(out)

    def attention(self, step: int | None = None, steps: int = 20) -> list[list[tuple[str, float]]]:
        """Per clause, the (text, weight) pairs A1111 encodes at ``step``. For a one-clause prompt with no tags, no
        editing and no clause weight this is ``[attention(str(prompt))]``."""
        return [attention(clause.text_at(step, steps)) for clause in self.clauses]

    def walk(self) -> Iterator[tuple[Node, list[Node], float]]:
        """Every node, depth first, with the list that holds it and the emphasis multiplier around it
        (the product of the enclosing brackets, as A1111 multiplies them for well-nested prompts)."""
        for clause in self.clauses:
            yield from walk(clause.children)

    def features(self) -> set[str]:
        """Which A1111 features this prompt uses: emphasis, editing, alternation, break, and, network."""
        if len(self.clauses) == 1 and not self.clauses[0].weight_text and all(
                type(node) is Text for node in self.clauses[0].children):
            return set()  # plain text
        found: set[str] = set()
        if len(self.clauses) > 1 or any(c.weight_text for c in self.clauses):
            found.add("and")
        kinds = {Emphasis: "emphasis", Editing: "editing", Alternation: "alternation", Break: "break",
                 NetworkTag: "network"}
        for node, _, _ in self.walk():
            if type(node) in kinds:
                found.add(kinds[type(node)])
        return found


def walk(nodes: list[Node], multiplier: float = 1.0) -> Iterator[tuple[Node, list[Node], float]]:
    """Depth-first walk of ``nodes``: (node, containing list, multiplier of the brackets around it)."""
    stack: list[tuple[list[Node], int, float]] = [(nodes, 0, multiplier)]
    while stack:
        container, index, mult = stack.pop()
        if index >= len(container):
            continue
        node = container[index]
        stack.append((container, index + 1, mult))
        yield node, container, mult
        if isinstance(node, Emphasis):
            try:
                inner = mult * node.multiplier
            except PromptSyntaxError:
                inner = mult
            stack.append((node.children, 0, inner))
        elif isinstance(node, Editing):
            stack.append((node.after, 0, mult))
            if node.before is not None:
                stack.append((node.before, 0, mult))
        elif isinstance(node, Alternation):
            for option in reversed(node.options):
                stack.append((option, 0, mult))


def walk_text(nodes: list[Node], *, step: int | None = None, steps: int = 20) -> Iterator[tuple[Node, str, int]]:
    """The text of ``nodes`` in order, piece by piece, as ``(node, text, edge)``: ``"".join`` of the texts is
    :func:`render` of ``nodes``. ``edge`` is 1 where a group opens (its ``(`` or ``[``), -1 where it closes (its
    closer: ``)``, ``:1.3)``, ``:0.5]``, or ``""`` when unclosed), 0 for a leaf's whole text and for a ``:`` or ``|``
    between the parts of editing or alternation; the running sum of ``edge`` is the nesting depth. With ``step``, the
    text A1111 sees at that step: editing and alternation resolved to the part chosen (their brackets not yielded),
    network tags left out. Iterative: 10,000 nested brackets are fine.

    >>> [(text, edge) for _, text, edge in walk_text(parse("a (b:1.2) [c|d]").clauses[0].children)]
    [('a ', 0), ('(', 1), ('b', 0), (':1.2)', -1), (' ', 0), ('[', 1), ('c', 0), ('|', 0), ('d', 0), (']', -1)]
    """
    # Iterators over children and, below each, the (node, text, edge) to yield when it is done. Leaves are yielded
    # from the innermost loop; a group puts its iterator back, with its own children above it.
    stack: list = [iter(nodes)]
    push = stack.append
    while stack:
        top = stack.pop()
        if type(top) is tuple:
            yield top
            continue
        for node in top:
            kind = type(node)
            if kind is Text or kind is Break:
                yield node, node.text, 0
                continue
            if kind is NetworkTag:
                if step is None:
                    yield node, node.text, 0
                continue
            push(top)
            if kind is Emphasis:
                yield node, node.open, 1
                push((node, node.close, -1))
                push(iter(node.children))
            elif step is not None:
                if kind is Editing:
                    push(iter((node.before or []) if step <= node.switch_step(steps) else node.after))
                else:
                    push(iter(node.options[(step - 1) % len(node.options)]))
            elif kind is Editing:
                yield node, "[", 1
                push((node, ":" + node.when + "]", -1))
                push(iter(node.after))
                if node.before is not None:
                    push((node, ":", 0))
                    push(iter(node.before))
            else:
                yield node, "[", 1
                push((node, "]", -1))
                last = len(node.options) - 1
                for i, option in enumerate(reversed(node.options)):
                    push(iter(option))
                    if i < last:
                        push((node, "|", 0))
            break


def render(nodes: list[Node], *, step: int | None = None, steps: int = 20) -> str:
    """The text of ``nodes`` (the texts of :func:`walk_text`). With ``step``, render what A1111 sees at that step:
    editing and alternation resolved, network tags removed."""
    if len(nodes) == 1 and type(nodes[0]) is Text:
        return nodes[0].text  # plain text: most prompts, and most phrases
    return "".join(map(_TEXT_OF, walk_text(nodes, step=step, steps=steps)))


_TEXT_OF = itemgetter(1)


def render_head(nodes: list[Node], limit: int) -> tuple[str, bool]:
    """The first ``limit`` characters of :func:`render` of ``nodes``, and whether that is all of it, in time
    proportional to ``limit`` (not to the whole text): for messages and records about a group of any size.

    >>> render_head(parse("(a (b:1.2) c)").clauses[0].children, 5)
    ('(a (b', False)
    """
    pieces: list[str] = []
    size = 0
    for _, text, _ in walk_text(nodes):
        pieces.append(text)
        size += len(text)
        if size > limit:
            return "".join(pieces)[:limit], False
    return "".join(pieces), True


def escape(text: str) -> str:
    """Escape brackets and backslashes so ``text`` is literal in an A1111 prompt: ``escape("a (b)") == "a \\(b\\)"``."""
    if not _TO_ESCAPE.search(text):
        return text  # the common case: a replacement phrase without brackets
    return _TO_ESCAPE.sub(r"\\\1", text)


_TO_ESCAPE = re.compile(r"([\\()\[\]])")


def format_weight(weight: float) -> str:
    """A weight as A1111 users write it: ``1.3``, ``0.85``, ``2`` (at most 2 decimals for a short, stable text)."""
    if not math.isfinite(weight):
        raise ValueError(f"weight must be a finite number, got {weight!r}")
    text = f"{round(weight, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# --------------------------------------------------------------------------------------------------------------------
# Parsing

_AND = re.compile(r"\bAND\b")
_CLAUSE_WEIGHT = re.compile(r":\s*[-+]?(?:\d+\.?|\d*\.\d+)\s*\Z")  # and the whitespace before it
_CLAUSE_TOKEN = re.compile(
    r"""
    (?P<esc>\\.?)
    | (?P<open>[(\[])
    | (?P<wclose>:\s*[+-]?[.\d]+\s*\))
    | (?P<close>[)\]])
    | (?P<sep>[:|])
    | (?P<text>[^\\()\[\]:|]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_BREAK_WORD = re.compile(r"\bBREAK\b")
# Text with none of these characters and no "AND" or "BREAK" is one clause of one Text node (no tags, brackets,
# weights or escapes). A character class alone is searched fast; the words are checked with str's own search.
_SYNTAX = re.compile(r"[\\()\[\]:|<]")
_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)\s*\Z")


class _Sep:
    """A ``:`` or ``|`` inside brackets, before the group it belongs to is classified."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


class _Frame:
    """An open bracket and what the parser has read inside it so far."""

    __slots__ = ("children", "open", "valid")

    def __init__(self, open: str):
        self.open = open
        self.children: list = []
        self.valid = True  # does everything inside fit A1111's scheduling grammar?


def parse(text: str) -> Prompt:
    """Parse an A1111 prompt. Never raises; ``str(parse(text)) == text`` for every string."""
    if _SYNTAX.search(text) is None and "AND" not in text and "BREAK" not in text:
        # plain text, the common case in prompt libraries: one search, no scan
        return Prompt([Clause([Text(text)] if text else [])], [])
    return _parse_syntax(text)


def _parse_syntax(text: str) -> Prompt:
    tags = [(m.start(), m.end()) for m in _TAG.finditer(text)]
    starts = [start for start, _ in tags]
    cuts = [m for m in _AND.finditer(text) if not _inside(m.start(), tags, starts)]
    bounds = [0, *(p for m in cuts for p in (m.start(), m.end())), len(text)]
    clauses = [_parse_clause(text, bounds[i], bounds[i + 1], tags, starts) for i in range(0, len(bounds), 2)]
    return Prompt(clauses, ["AND"] * len(cuts))


def _inside(pos: int, tags: list[tuple[int, int]], starts: list[int]) -> bool:
    """Whether ``pos`` is inside one of the ``tags`` (in order, not overlapping; ``starts``: their starts)."""
    i = bisect.bisect_right(starts, pos) - 1
    return i >= 0 and pos < tags[i][1]


def _parse_clause(text: str, start: int, end: int, tags: list[tuple[int, int]], starts: list[int]) -> Clause:
    weight_text = ""
    # A clause weight holds the clause's last ":"; searched from there, not from every space before it (linear time)
    colon = text.rfind(":", start, end)
    if colon >= 0 and _CLAUSE_WEIGHT.match(text, colon, end):
        weight_start = start + len(text[start:colon].rstrip())  # with the whitespace before the ":"
        if not _inside(weight_start, tags, starts):
            weight_text = text[weight_start:end]
            end = weight_start
    inside = tags[bisect.bisect_left(starts, start):bisect.bisect_left(starts, end)]
    children, scheduled = _parse_body(text, start, end, [t for t in inside if t[1] <= end])
    return Clause(children, weight_text, scheduled)


def _parse_body(text: str, start: int, end: int, tags: list[tuple[int, int]]) -> tuple[list[Node], bool]:
    stack = [_Frame("")]
    opened: dict[str, list[int]] = {"(": [], "[": []}  # where each kind's open frames are on the stack
    fatal = False

    def emit(node: object) -> None:
        stack[-1].children.append(node)

    def close_frame(close: str) -> None:
        nonlocal fatal
        frame = stack.pop()
        opened[frame.open].pop()
        node, valid = _classify(frame, close)
        if isinstance(node, Emphasis) and any(isinstance(c, _Sep) and c.text == "|" for c in frame.children):
            fatal = True  # a | that is not an alternation: A1111 schedules nothing in this clause
        stack[-1].children.append(node)
        stack[-1].valid &= valid

    pos = start
    for tag_start, tag_end in [*tags, (end, end)]:
        while pos < tag_start:
            m = _CLAUSE_TOKEN.match(text, pos, tag_start)
            kind, token = m.lastgroup, m.group(0)
            pos = m.end()
            if kind == "text":
                _emit_text(text, m.start(), m.end(), emit)
            elif kind == "esc":
                if len(token) == 1 or token[1] == "\n":
                    fatal = True  # a dangling backslash does not fit A1111's grammar
                emit(Text(token))
            elif kind == "open":
                opened[token].append(len(stack))
                stack.append(_Frame(token))
            elif kind == "sep":
                emit(_Sep(token))
            elif kind == "wclose":
                depth = opened["("][-1] if opened["("] else 0  # the innermost open (, or 0: none
                if depth == 0:
                    emit(Text(token))  # no ( open: A1111 reads ":1.2)" as text
                    stack[-1].valid = False
                elif depth == len(stack) - 1:
                    close_frame(token)
                else:
                    _close_ill_nested(stack, "(", token, close_frame)
            else:  # ) or ]
                opener = "(" if token == ")" else "["
                depth = opened[opener][-1] if opened[opener] else 0
                if depth == 0:
                    emit(Text(token))  # a stray closer is text
                    stack[-1].valid = False
                elif depth == len(stack) - 1:
                    close_frame(token)
                else:
                    _close_ill_nested(stack, opener, token, close_frame)
        if tag_start < end:
            emit(NetworkTag(text[tag_start:tag_end]))
            pos = tag_end
    while len(stack) > 1:
        close_frame("")
    top = stack[0]
    if any(isinstance(c, _Sep) and c.text == "|" for c in top.children):
        fatal = True
    children = _finish(top.children)
    if fatal:
        children = _unschedule(children)
    return children, not fatal


def _emit_text(text: str, start: int, end: int, emit) -> None:
    pos = start
    for m in _BREAK_WORD.finditer(text, start, end):
        if m.start() > pos:
            emit(Text(text[pos : m.start()]))
        emit(Break())
        pos = m.end()
    if pos < end:
        emit(Text(text[pos:end]))


def _close_ill_nested(stack: list[_Frame], opener: str, token: str, close_frame) -> None:
    # A1111 keeps one stack per bracket kind, so ")" closes the last "(" even across an open "[". The tree cannot
    # nest that way: the inner groups are closed here as unclosed (their later closers become literal text), which
    # keeps the text exact; weights come from the text, so they stay exact too.
    while stack[-1].open != opener:
        close_frame("")
    close_frame(token)


def _classify(frame: _Frame, close: str) -> tuple[Node, bool]:
    """Turn a closed (or unclosed, close="") frame into a node; also say whether it fits the scheduling grammar."""
    seps = [c for c in frame.children if isinstance(c, _Sep)]
    colons = sum(1 for s in seps if s.text == ":")
    pipes = len(seps) - colons
    if frame.open == "[" and close == "]" and frame.valid:
        if pipes and not colons:
            return Alternation([_finish(part) for part in _split(frame.children, "|")]), True
        if not pipes and colons in (1, 2):
            parts = _split(frame.children, ":")
            when = parts[-1]
            if all(isinstance(c, Text) for c in when) and _NUMBER.match("".join(c.text for c in when)):
                before = _finish(parts[0]) if colons == 2 else None
                return Editing(before, _finish(parts[-2]), "".join(c.text for c in when)), True
    valid = frame.valid and bool(close) and pipes == 0
    if frame.open == "(":
        valid = valid and colons <= (1 if close == ")" else 0)
    else:
        valid = valid and colons == 0
    return Emphasis(_finish(frame.children), frame.open, close), valid


def _split(children: list, sep: str) -> list[list]:
    parts: list[list] = [[]]
    for child in children:
        if isinstance(child, _Sep) and child.text == sep:
            parts.append([])
        else:
            parts[-1].append(child)
    return parts


def _finish(children: list) -> list[Node]:
    """Replace leftover separators by text and merge neighbouring text nodes."""
    out: list[Node] = []
    texts: list[str] = []  # a run of text and separators, joined once (linear time for "a:" * 100_000)
    for child in children:
        if isinstance(child, (Text, _Sep)):
            texts.append(child.text)
            continue
        if texts:
            out.append(Text("".join(texts)))
            texts = []
        out.append(child)
    if texts:
        out.append(Text("".join(texts)))
    return out


def _unschedule(children: list[Node]) -> list[Node]:
    """Turn every Editing/Alternation into literal bracket text (A1111 schedules nothing in this clause)."""
    work = [children]
    while work:
        container = work.pop()
        for i, node in enumerate(container):
            if isinstance(node, Editing):
                inner: list[Node] = []
                if node.before is not None:
                    inner += [*node.before, Text(":")]
                inner += [*node.after, Text(":" + node.when)]
                node = container[i] = Emphasis(_finish(inner), "[", "]")
            elif isinstance(node, Alternation):
                inner = []
                for j, option in enumerate(node.options):
                    inner += ([Text("|")] if j else []) + option
                node = container[i] = Emphasis(_finish(inner), "[", "]")
            if isinstance(node, Emphasis):
                work.append(node.children)
    return children


def _text_pieces(raw: str) -> Iterator[tuple[str, float]]:
    for m in _ATTENTION_TOKEN.finditer(raw):
        token = m.group(0)
        yield (token.removeprefix("\\")), 1.0


def features(text: str) -> set[str]:
    """The A1111 features a prompt uses, a subset of {"emphasis", "editing", "alternation", "break", "and",
    "network"}.

    >>> sorted(features("a (b:1.2) BREAK <lora:x:1>"))
    ['break', 'emphasis', 'network']
    """
    return parse(text).features()
