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

import itertools
import re
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from bridge.syntax import Alternation, Break, Editing, Emphasis, Node, Prompt, Text, escape, render

__all__ = ["DROP", "END_MARKS", "KEEP", "Phrase", "PhraseSet", "Said", "Words", "containers", "edit_phrases", "fold_accents",
           "items_text", "normalize", "phrase_words", "variant_key"]

Item = str | Node
KEEP = None  # callback result: leave the phrase as it is
DROP: list[Item] = []  # callback result: remove the phrase

_WORD_TOKEN = re.compile(r"\w+|[^\w\s]")


class PhraseSet:
    """Finds whole phrases ("photo", "3d render", "b&w") in text, case-insensitively, on word boundaries.

    A set of word tuples looked up by n-grams: building one costs nothing (a regex alternation of hundreds of names
    costs milliseconds to compile, which a one-prompt run cannot afford) and a search is a few set lookups per word.
    """

    def __init__(self, phrases):
        self.phrases: dict[tuple[str, ...], str] = {}
        for phrase in phrases:
            words = tuple(_WORD_TOKEN.findall(phrase.lower()))
            if words:
                self.phrases.setdefault(words, phrase)
        # first word -> the lengths of the phrases starting with it, longest first: one lookup per word of the text
        lengths: dict[str, set[int]] = {}
        for words in self.phrases:
            lengths.setdefault(words[0], set()).add(len(words))
        self.lengths = {first: sorted(ns, reverse=True) for first, ns in lengths.items()}
        self.firsts = frozenset(self.lengths)  # set against set: C walks the smaller of the two

    def __bool__(self) -> bool:
        return bool(self.phrases)

    @staticmethod
    def words(text: str) -> Words:
        """``text`` cut into the words phrases are matched on; pass the result to ``find``/``search`` to cut once."""
        return Words(_WORD_TOKEN.findall(text.lower()))

    @staticmethod
    @lru_cache(maxsize=1 << 12)
    def fixed_words(text: str) -> tuple[str, ...]:
        """``words`` of a text that comes back again and again (a knowledge phrase), remembered."""
        return tuple(_WORD_TOKEN.findall(text.lower()))

    def find(self, text: str | list[str]) -> list[str]:
        """The phrases present in ``text`` (as given to the constructor), longest match first at each position;
        ``text`` may be already cut with ``PhraseSet.words``."""
        words = text if isinstance(text, Words) else Words(self.words(text) if isinstance(text, str) else text)
        firsts = self.firsts & words.set
        if not firsts:
            return []  # the common case, decided in C
        starts: list[int] = []
        for first in firsts:  # visit only the places where a phrase could start
            i = -1
            for _ in range(words.count(first)):
                i = words.index(first, i + 1)
                starts.append(i)
        starts.sort()
        found: list[str] = []
        free = 0  # matches do not overlap: the next one starts here or later
        for i in starts:
            if i < free:
                continue
            for n in self.lengths[words[i]]:
                phrase = self.phrases.get(tuple(words[i:i + n]))
                if phrase is not None:
                    found.append(phrase)
                    free = i + n
                    break
        return found

    def found_as(self, phrase: str) -> str | None:
        """What ``find`` returns for ``phrase`` (the first phrase given with the same words), or None if not listed."""
        return self.phrases.get(tuple(_WORD_TOKEN.findall(phrase.lower())))

    def search(self, text: str | list[str]) -> str | None:
        found = self.find(text)
        return found[0] if found else None


_SEPARATOR_WORDS = frozenset(",.;!?|+()[]")


def phrase_words(words: list[str]) -> list[tuple[str, ...]]:
    """The words of ``PhraseSet.words`` cut into phrases at separators (``, . ; ! ? | +`` and brackets)."""
    phrases: list[tuple[str, ...]] = []
    start = 0
    for i, word in enumerate(words):
        if word in _SEPARATOR_WORDS:
            phrases.append(tuple(words[start:i]))
            start = i + 1
    phrases.append(tuple(words[start:]))
    return phrases


class Words(list):
    """The words of a text (``PhraseSet.words``), searched by several phrase sets: the set of them is made once."""

    @cached_property
    def set(self) -> frozenset[str]:
        return frozenset(self)


class Said:
    """What a prompt already says, for asking whether new words would repeat it: a phrase of it holds them, they hold
    a whole phrase of it ("epic fantasy" where the prompt says "fantasy"), or they share two words in a row with it
    ("french science fiction" beside "science fiction poster"). Made from the prompt's words as ``PhraseSet.words``
    cuts them (separators are words of their own).

    Those three tests come to three sets, made once: words of two or more share a pair of words in a row with the
    prompt whenever a phrase of it holds them or they hold a phrase of it of two or more words, so what is left to
    ask is whether one of them is a whole phrase of the prompt on its own."""

    def __init__(self, words: Iterable[str] = ()):
        self.words = list(words)
        self._runs: dict[int, Counter[tuple[str, ...]]] = {}  # n -> every run of n words (n-grams), counted
        self._sets: tuple[set[str], set[tuple[str, str]], set[str]] | None = None  # words, pairs, one-word phrases

    def add(self, words: Sequence[str]) -> None:
        start = len(self.words)
        self.words += [",", *words]
        for n, runs in self._runs.items():  # the new runs only: adding stays linear
            runs.update(zip(*(self.words[max(0, start - n + 1) + i:] for i in range(n))))
        if self._sets is not None:
            singles, pairs, alone = self._sets
            singles.update(self.words[start:])
            pairs.update(itertools.pairwise(self.words[max(0, start - 1):]))
            if len(words) == 1:
                alone.add(words[0])

    def count(self, words: tuple[str, ...]) -> int:
        """How often ``words`` occur as a run."""
        n = len(words)
        runs = self._runs.get(n)
        if runs is None:  # worked out once per length: a question costs the same however long the prompt is
            runs = self._runs[n] = Counter(zip(*(self.words[i:] for i in range(n))))
        return runs[words]

    def says(self, words: Sequence[str]) -> bool:
        if self._sets is None:
            self._sets = (set(self.words), set(itertools.pairwise(self.words)),
                          {p[0] for p in phrase_words(self.words) if len(p) == 1})
        singles, pairs, alone = self._sets
        if len(words) < 2:
            return bool(words) and words[0] in singles
        return any(pair in pairs for pair in itertools.pairwise(words)) or any(w in alone for w in words)


def fold_accents(text: str) -> str:
    """``"Beyoncé"`` → ``"Beyonce"``: the knowledge's phrases are written without accents."""
    if text.isascii():
        return text
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """Lower-case, whitespace collapsed and stripped: the form phrases are matched in."""
    return _normalized(text) if len(text) <= LONGEST_REMEMBERED else _normalized.__wrapped__(text)


LONGEST_REMEMBERED = 400  # characters: a longer phrase (a pasted blob) is worked out each time, not remembered


@lru_cache(maxsize=1 << 16)  # libraries repeat their phrases
def _normalized(text: str) -> str:
    return " ".join(text.split()).lower()  # str.split() and \s agree on what whitespace is


_SPACED_NUMBER = re.compile(r"(?<=\d) (?=\d|(?:k|mm|p)\b)")
_SEPARATOR_MARKS = str.maketrans("-_", "  ")
END_MARKS = " .!?;:'\"\u201c\u201d\u2018\u2019"  # what may close a phrase after its words: punctuation and quotes


def variant_key(text: str) -> str:
    """The form magic words are looked up in, so that spellings of one tag meet: lower case, hyphens and underscores
    as spaces, whitespace collapsed, sentence punctuation and quotes (straight or curly) at the ends stripped, and the
    spaces DiffusionDB and hurried typing put inside numbers and units removed (``"8 K."``, ``"8k"`` → ``"8k"``; ``"3 5 mm"`` →
    ``"35mm"``; ``"hyper-detailed"`` → ``"hyper detailed"``). Misspellings and version suffixes are listed in the
    knowledge file instead. (Not remembered: only phrases holding digits or punctuation need it, Plan.magic.)"""
    key = " ".join(text.translate(_SEPARATOR_MARKS).split()).lower().strip(END_MARKS)
    return _SPACED_NUMBER.sub("", key) if " " in key else key


def items_text(items: list[Item]) -> str:
    """The text of a phrase's items (strings and nodes) as written."""
    return "".join(i if isinstance(i, str) else render([i]) for i in items)


@dataclass(slots=True)
class Phrase:
    """One comma/BREAK-separated phrase: leading whitespace, core items, trailing whitespace."""

    lead: str
    core: list[Item]
    trail: str

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
        while group is not None and len(group.children) == 1 and isinstance(group.children[0], Emphasis):
            group = group.children[0]
        return group

    @property
    def plain(self) -> str | None:
        """The phrase's words, normalized, when it is plain text or nested groups around plain text; else None."""
        core = self.core
        if len(core) == 1 and type(core[0]) is str:  # plain text, the common case
            return normalize(core[0] if "\\" not in core[0] else Text(core[0]).value)
        group = self.innermost
        if group is not None:
            if not all(isinstance(c, Text) for c in group.children):
                return None
            return normalize("".join(c.value for c in group.children))  # type: ignore[union-attr]
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


def _phrase(items: list[Item]) -> Phrase:
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
    return Phrase(lead, [i for i in items if i != ""], trail)


def edit_phrases(container: list[Node], edit: Callable[[Phrase], list[Item] | None],
                 unchanged: Container[str] = ()) -> bool:
    """Apply ``edit`` to every phrase of ``container`` (in place). ``edit`` returns KEEP (None), DROP ([]) or new core
    items. A plain-text phrase whose text (stripped) is in ``unchanged`` is kept without asking ``edit``. Returns True
    when anything changed."""
    raw_phrases, seps = _split(container)
    results: list[list[Item] | None] = []
    for raw in raw_phrases:
        if unchanged and len(raw) == 1 and type(raw[0]) is str and raw[0].strip() in unchanged:
            results.append(KEEP)
            continue
        phrase = _phrase(raw)
        if not phrase.core:
            results.append(KEEP)
            continue
        new = edit(phrase)
        results.append(None if new is None else ([phrase.lead, *new, phrase.trail] if new else []))
    if all(r is None for r in results):
        return False

    seq: list[list[Item] | Item | None] = []  # phrase, sep, phrase, sep, ..., phrase; None = removed
    for i, raw in enumerate(raw_phrases):
        seq.append(raw if results[i] is None else results[i])
        if i < len(seps):
            seq.append(seps[i])
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
