"""Phrase-level editing of a parsed prompt: the unit SD1 prompters think in.

An SD1 prompt is mostly a list of comma-separated phrases ("a castle, highly detailed, by greg rutkowski, 8k"), and
sometimes sentences ("a dark forest. art by X. 8k.") or lists joined with ``|`` or ``+``. :func:`edit_phrases` splits
one node list (a clause, or the inside of a bracket group) into phrases at commas, sentence punctuation (``.`` ``;``
``!`` ``?`` before a space or the end; not the full stop of an initial or an abbreviation, "h.r. giger", "dr. seuss"),
a ``|`` or ``+`` between spaces, and ``BREAK``; hands each phrase to a callback, and rebuilds the list: a dropped
phrase takes one neighbouring separator with it, a replaced phrase keeps its surrounding whitespace, ``BREAK`` is never
removed, and every phrase the callback left alone renders byte-identical.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass

from bridge.rules.matching import normalize
from bridge.syntax import Alternation, Break, Editing, Emphasis, Node, Prompt, Text, escape, render

__all__ = ["DROP", "KEEP", "Chains", "Item", "Phrase", "containers", "edit_phrases", "has_content", "items_text",
           "tidy"]

Item = str | Node
KEEP = None  # callback result: leave the phrase as it is
DROP: list[Item] = []  # callback result: remove the phrase


def items_text(items: list[Item]) -> str:
    """The text of a phrase's items (strings and nodes) as written."""
    return "".join(i if isinstance(i, str) else render([i]) for i in items)


class Chains:
    """What one walk over a prompt's containers (outer first) learns about chains of nested groups, ``((((x))))``:
    each group's innermost group, and the innermost groups' plain words. Every level of a chain asks for the same
    ones; shared by the phrases of the walk, each chain is followed and its words read once, so 100,000 nested
    brackets cost linear time, not quadratic. (A group's words are read again when its children list is replaced.)
    """

    __slots__ = ("innermost", "words")

    def __init__(self) -> None:
        self.innermost: dict[int, tuple[Emphasis, Emphasis]] = {}  # id -> (group, its innermost group)
        self.words: dict[int, tuple[list[Node], str | None]] = {}  # id of a group -> (its children, Phrase.plain)


@dataclass(slots=True)
class Phrase:
    """One comma/BREAK-separated phrase: leading whitespace, core items, trailing whitespace."""

    lead: str
    core: list[Item]
    trail: str
    chains: Chains | None = None  # shared by the phrases of one walk (see Chains)

    @property
    def text(self) -> str:
        """The core as written (escapes and brackets included)."""
        return items_text(self.core)

    @property
    def emphasis(self) -> Emphasis | None:
        """The bracket group when the whole phrase is one, e.g. ``(8k:1.2)`` or ``((masterpiece))``."""
        if len(self.core) == 1 and isinstance(self.core[0], Emphasis):
            return self.core[0]
        return None

    @property
    def innermost(self) -> Emphasis | None:
        """For ``((word))``, the inner group: follow groups that hold exactly one group."""
        group = self.emphasis
        chains = self.chains
        passed: list[Emphasis] = []
        while group is not None and len(group.children) == 1 and isinstance(group.children[0], Emphasis):
            known = chains.innermost.get(id(group)) if chains is not None else None
            if known is not None and known[0] is group:
                group = known[1]
                break
            passed.append(group)
            group = group.children[0]
        if chains is not None:
            for outer in passed:
                chains.innermost[id(outer)] = (outer, group)
        return group

    @property
    def plain(self) -> str | None:
        """The phrase's words, normalized, when it is plain text or nested groups around plain text; else None."""
        core = self.core
        if len(core) == 1 and type(core[0]) is str:  # plain text, the common case
            return normalize(core[0] if "\\" not in core[0] else Text(core[0]).value)
        group = self.innermost
        if group is not None:
            known = self.chains.words.get(id(group)) if self.chains is not None else None
            if known is not None and known[0] is group.children:
                return known[1]
            words = None
            if all(isinstance(c, Text) for c in group.children):
                words = normalize("".join(c.value for c in group.children))  # type: ignore[union-attr]
            if self.chains is not None:
                self.chains.words[id(group)] = (group.children, words)
            return words
        if all(isinstance(i, str) for i in self.core):
            return normalize(Text("".join(self.core)).value)  # type: ignore[arg-type]
        return None

    def replaced(self, new_text: str) -> list[Item]:
        """Core items with the words replaced by ``new_text`` (escaped), keeping the brackets and weights around."""
        group = self.innermost
        if group is not None:
            group.children = [Text(escape(new_text))]
            return list(self.core)
        return [escape(new_text)]


_MARKS = re.compile(r",|[.;!?]+|[|+]")  # where a separator may be: each is checked by _is_break
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "mt", "jr", "sr", "vs", "no", "vol", "ft", "fig", "inc",
                            "ltd", "co", "feat", "ca", "approx", "ver"})
_WORD_BEFORE = re.compile(r"(\S?)\s*(\w+)$")


def _cut(text: str) -> tuple[list[str], list[str]]:
    """The pieces of one run of text between separators, and the separators."""
    if _SENTENCE_MARKS.search(text) is None:  # commas only: the common case
        pieces = text.split(",")
        return pieces, [","] * (len(pieces) - 1)
    pieces, seps = [], []
    last = 0
    for m in _MARKS.finditer(text):
        if m.group() != "," and not _is_break(text, m.start(), m.end()):
            continue
        pieces.append(text[last:m.start()])
        seps.append(m.group())
        last = m.end()
    pieces.append(text[last:])
    return pieces, seps


_SENTENCE_MARKS = re.compile(r"[.;!?|+]")


def _is_break(text: str, start: int, end: int) -> bool:
    """Whether the marks ``text[start:end]`` end a phrase: sentence punctuation before a space or the end (or after a
    space and before a word: "masterpiece .intricate"), a ``|`` or ``+`` between spaces; not the full stop of an
    initial or an abbreviation, nor a decimal point DiffusionDB spaced out."""
    before, after = text[start - 1:start], text[end:end + 1]
    if text[start] in "|+":
        return (not before or before.isspace()) and (not after or after.isspace())
    if after and not after.isspace() and not (before.isspace() and after.isalpha()):
        return False
    return text[start:end] != "." or not _initial_or_abbreviation(text, start)


def _initial_or_abbreviation(text: str, at: int) -> bool:
    """Whether the full stop at ``at`` ends an initial ("h.r.", "j. c.") or an abbreviation ("dr.", "st."), or is
    a decimal point DiffusionDB spaced out ("f 1. 8")."""
    before = _WORD_BEFORE.search(text, max(0, at - 40), at)  # a bounded look back: linear in the text
    if before is None:
        return False
    word = before.group(2).lower()
    if word.isdigit():
        return text[at + 1:at + 3].lstrip()[:1].isdigit()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha() and not before.group(1).isdigit())


def _split(container: list[Node]) -> tuple[list[list[Item]], list[Item]]:
    """Raw phrases (lists of items) and the separators between them (strings such as "," or ".", or Break nodes)."""
    if len(container) == 1 and type(container[0]) is Text:  # plain text: the same, built in one go
        pieces, seps = _cut(container[0].text)
        return [[piece] if piece else [] for piece in pieces], seps
    phrases: list[list[Item]] = [[]]
    seps: list[Item] = []
    for node in container:
        if isinstance(node, Text):
            pieces, cut_at = _cut(node.text)
            for i, piece in enumerate(pieces):
                if i:
                    seps.append(cut_at[i - 1])
                    phrases.append([])
                if piece:
                    phrases[-1].append(piece)
        elif isinstance(node, Break):
            seps.append(node)
            phrases.append([])
        else:
            phrases[-1].append(node)
    return phrases, seps


def _phrase(items: list[Item], chains: Chains | None = None) -> Phrase:
    if len(items) == 1 and type(items[0]) is str:  # plain text between two commas: most phrases
        text = items[0]
        core = text.strip()
        if not core:
            return Phrase(text, [], "")
        start = text.index(core[0])
        return Phrase(text[:start], [core], text[start + len(core):])
    items = list(items)
    lead = trail = ""
    if items and isinstance(items[0], str):
        stripped = items[0].lstrip()
        lead = items[0][: len(items[0]) - len(stripped)]
        items[0] = stripped
    if items and isinstance(items[-1], str):
        stripped = items[-1].rstrip()
        trail = items[-1][len(stripped):]
        items[-1] = stripped
    return Phrase(lead, [i for i in items if i != ""], trail, chains)


def edit_phrases(container: list[Node], edit: Callable[[Phrase], list[Item] | None],
                 unchanged: Container[str] = (), chains: Chains | None = None) -> bool:
    """Apply ``edit`` to every phrase of ``container`` (in place). ``edit`` returns KEEP (None), DROP ([]) or new core
    items. A plain-text phrase whose text (stripped) is in ``unchanged`` is kept without asking ``edit``. Returns True
    when anything changed. A walk over :func:`containers` passes one :class:`Chains` to each call.
    """
    raw_phrases, seps = _split(container)
    results: list[list[Item] | None] = []
    for raw in raw_phrases:
        if unchanged and len(raw) == 1 and type(raw[0]) is str and raw[0].strip() in unchanged:
            results.append(KEEP)
            continue
        phrase = _phrase(raw, chains)
        if not phrase.core:
            results.append(KEEP)
            continue
        new = edit(phrase)
        results.append(None if new is None else ([phrase.lead, *new, phrase.trail] if new else []))
    if results.count(KEEP) == len(results):
        return False

    seq: list[list[Item] | Item | None] = []  # phrase, sep, phrase, sep, ..., phrase; None = removed
    for i, raw in enumerate(raw_phrases):
        seq.append(raw if results[i] is None else results[i])
        if i < len(seps):
            seq.append(seps[i])
    lead = ""  # the space before the first of a run of dropped phrases whose separators after them went too
    for i, result in enumerate(results):
        if result != []:
            continue
        at = 2 * i
        after, before = at + 1, at - 1
        next_to_break = (after < len(seq) and isinstance(seq[after], Break)) or (
            before >= 0 and isinstance(seq[before], Break))
        last_before_empty_end = after == len(seq) - 2 and not _has_words(seq[after + 1])
        if after < len(seq) and isinstance(seq[after], str) and not last_before_empty_end:
            seq[after] = None
            if not (i and results[i - 1] == [] and seq[before] is None):
                lead = _lead_space(raw_phrases[i])
            following = seq[after + 1]
            if lead and following and isinstance(following[0], str) and not following[0][:1].isspace():
                seq[at] = [lead]  # "a girl. masterpiece .intricate" -> "a girl. intricate", not "a girl.intricate"
        else:
            _drop_comma_before(seq, before)
        if next_to_break and 0 < at < len(seq) - 1:
            seq[at] = [" "]  # keep BREAK a separate word
    last = raw_phrases[-1]
    if results[-1] == [] and last and isinstance(last[-1], str) and last[-1][-1:].isspace():
        seq.append([last[-1][len(last[-1].rstrip()):]])  # the space before what follows (" AND ...") stays
    rebuilt = _rebuild(seq)
    first_was_dropped = results[0] == [] and not (raw_phrases[0] and isinstance(raw_phrases[0][0], str)
                                                  and raw_phrases[0][0][:1].isspace())
    if first_was_dropped and rebuilt and isinstance(rebuilt[0], Text):
        # The list now starts with what followed the dropped phrases: no leading space the user did not write.
        rebuilt[0] = Text(rebuilt[0].text.lstrip())
        if not rebuilt[0].text:
            rebuilt.pop(0)
    container[:] = rebuilt
    return True


def _lead_space(raw: list[Item]) -> str:
    first = raw[0] if raw else None
    return first[: len(first) - len(first.lstrip())] if isinstance(first, str) else ""


def _has_words(part: list[Item] | None) -> bool:
    return bool(part) and any(not isinstance(i, str) or i.strip() for i in part)


def _drop_comma_before(seq: list, j: int) -> None:
    """Remove the nearest separator to the left, across phrases already dropped (whose separators went before them).
    """
    while j >= 0:
        if isinstance(seq[j], str):
            seq[j] = None
            return
        if isinstance(seq[j], Break) or (isinstance(seq[j], list) and seq[j]):
            return  # a BREAK or a phrase that stays: no comma of ours to take
        j -= 1


def _rebuild(seq: list) -> list[Node]:
    """The node list of a phrase/separator sequence: each run of strings (and Text nodes) becomes one Text node."""
    out: list[Node] = []
    texts: list[str] = []
    for part in seq:
        if part is None:
            continue
        for item in part if isinstance(part, list) else (part,):
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, Text):
                texts.append(item.text)
            else:
                if texts:
                    text = "".join(texts)
                    texts.clear()
                    if text:
                        out.append(Text(text))
                out.append(item)
    text = "".join(texts)
    if text:
        out.append(Text(text))
    return out


def containers(prompt: Prompt) -> Iterator[list[Node]]:
    """Every node list of a prompt, outermost first: clauses, then the insides of groups, editing and alternation."""
    work: list[list[Node]] = [clause.children for clause in reversed(prompt.clauses)]
    while work:
        container = work.pop()
        yield container
        for node in reversed(container):
            if isinstance(node, Emphasis):
                work.append(node.children)
            elif isinstance(node, Editing):
                work.append(node.after)
                if node.before is not None:
                    work.append(node.before)
            elif isinstance(node, Alternation):
                work.extend(reversed(node.options))


def has_content(items: list[Item]) -> bool:
    """Whether a phrase's items hold anything but whitespace."""
    return any(not isinstance(i, str) or i.strip() for i in items)


def tidy(items: list[Item]) -> list[Item]:
    """Collapse the double spaces a removal leaves and trim the ends of the phrase core."""
    out = [re.sub(r" {2,}", " ", i) if isinstance(i, str) else i for i in items]
    if out and isinstance(out[0], str):
        out[0] = out[0].lstrip()
    if out and isinstance(out[-1], str):
        out[-1] = out[-1].rstrip()
    return [i for i in out if i != ""]
