"""How the rules engine matches text: the words of a prompt, whole phrases among them, what a prompt already says,
and the literal prefilters in front of the weak-concept patterns.

Knowledge phrases are matched on words (:class:`PhraseSet`, no regex alternation of hundreds of names to compile at
start-up), lower case and with accents folded; magic words are looked up by their :func:`variant_key`, so that
spellings of one tag meet. Each weak-concept pattern runs only where one of the literals it cannot match without
occurs (:class:`Prefiltered`; the literals come from :mod:`bridge.rules.literals`), and which literals a prompt holds
is found word by word (:class:`LiteralFinder`).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet

from bridge.memo import Memo
from bridge.rules.knowledge import KnowledgeError
from bridge.rules.literals import required_literals

__all__ = ["END_MARKS", "LiteralFinder", "PhraseSet", "Prefiltered", "Said", "Words", "case_blind", "fold_accents",
           "normalize", "variant_key"]

_WORD_TOKEN = re.compile(r"\w+|[^\w\s]")


class PhraseSet:
    """Finds whole phrases ("photo", "3d render", "b&w") in text, case-insensitively, on word boundaries.

    A set of word tuples looked up by n-grams: building one costs nothing (a regex alternation of hundreds of names
    costs milliseconds to compile, which a one-prompt run cannot afford) and a search is a few set lookups per word.
    """

    def __init__(self, phrases):
        self.phrases: dict[tuple[str, ...], str] = {}
        for phrase in phrases:
            words = PhraseSet.fixed_words(phrase)  # the knowledge's phrases: several sets share many of them
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
    @functools.lru_cache(maxsize=1 << 12)  # knowledge phrases: a bounded set
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
        return list(self._found(words, firsts))

    def _found(self, words: Words, firsts: AbstractSet[str]) -> Iterator[str]:
        """The phrases of ``words`` in order, each where it starts: ``firsts`` (the first words of phrases that
        ``words`` holds) tell the only places where one can."""
        starts: list[int] = []
        for first in firsts:
            starts += _places(words, first)
        starts.sort()
        free = 0  # matches do not overlap: the next one starts here or later
        for i in starts:
            if i < free:
                continue
            for n in self.lengths[words[i]]:
                phrase = self.phrases.get(tuple(words[i:i + n]))
                if phrase is not None:
                    yield phrase
                    free = i + n
                    break

    def found_as(self, phrase: str) -> str | None:
        """What ``find`` returns for ``phrase`` (the first phrase given with the same words), or None if not listed."""
        return self.phrases.get(PhraseSet.fixed_words(phrase))

    def search(self, text: str | list[str]) -> str | None:
        """The first phrase ``find`` returns, or None: the scan stops there."""
        words = text if isinstance(text, Words) else Words(self.words(text) if isinstance(text, str) else text)
        firsts = self.firsts & words.set
        return next(self._found(words, firsts), None) if firsts else None


_SEPARATOR_WORDS = frozenset(",.;!?|+()[]")


class Words(list):
    """The words of a text (``PhraseSet.words``), searched by several phrase sets: the set of them is made once."""

    def __init__(self, words: Iterable[str] = ()):
        super().__init__(words)
        self.set = frozenset(self)


class Said:
    """What a prompt already says, for asking whether new words would repeat it: a phrase of it holds them, they hold
    a whole phrase of it ("epic fantasy" where the prompt says "fantasy"), or they share two words in a row with it
    ("french science fiction" beside "science fiction poster"). Made from the prompt's words as ``PhraseSet.words``
    cuts them (separators are words of their own).

    Those three tests come to three questions: words of two or more share a pair of words in a row with the prompt
    whenever a phrase of it holds them or they hold a phrase of it of two or more words, so what is left to ask is
    whether one of them is a whole phrase of the prompt on its own. Each is answered where the prompt holds the word
    (its set of words first, most questions end there): nothing is built per prompt but that set, which ``Words``
    already has."""

    def __init__(self, words: Iterable[str] = ()):
        self.words = list(words)
        self._runs: dict[int, Counter[tuple[str, ...]]] = {}  # n -> every run of n words (n-grams), counted
        self._set: AbstractSet[str] = words.set if isinstance(words, Words) else set(self.words)

    def add(self, words: Sequence[str]) -> None:
        start = len(self.words)
        self.words += [",", *words]
        for n, runs in self._runs.items():  # the new runs only: adding stays linear
            runs.update(zip(*(self.words[max(0, start - n + 1) + i:] for i in range(n))))
        if not isinstance(self._set, set):
            self._set = set(self._set)
        self._set.update(self.words[start:])

    def count(self, words: tuple[str, ...]) -> int:
        """How often ``words`` occur as a run."""
        n = len(words)
        runs = self._runs.get(n)
        if runs is None:  # worked out once per length: a question costs the same however long the prompt is
            runs = self._runs[n] = Counter(zip(*(self.words[i:] for i in range(n))))
        return runs[words]

    def says(self, words: Sequence[str]) -> bool:
        held = self._set
        if len(words) < 2:
            return bool(words) and words[0] in held
        said, marks, last = self.words, _SEPARATOR_WORDS, len(self.words) - 1
        for first, second in itertools.pairwise(words):  # two words in a row
            if first in held and second in held:
                for i in _places(said, first):
                    if i < last and said[i + 1] == second:
                        return True
        for word in words:  # a word that is a whole phrase of the prompt: between separators (or ends)
            if word in held and word not in marks:
                for i in _places(said, word):
                    if (i == 0 or said[i - 1] in marks) and (i == last or said[i + 1] in marks):
                        return True
        return False


def _places(words: list[str], word: str) -> list[int]:
    """Where ``word`` stands in ``words`` (found by list.count and list.index, in C)."""
    places, i = [], -1
    for _ in range(words.count(word)):
        i = words.index(word, i + 1)
        places.append(i)
    return places


def fold_accents(text: str) -> str:
    """``"Beyoncé"`` → ``"Beyonce"``: the knowledge's phrases are written without accents."""
    if text.isascii():
        return text
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """Lower-case, whitespace collapsed and stripped: the form phrases are matched in."""
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


_UNESCAPED_UPPER = re.compile(r"(?<!\\)[A-Z]")


def case_blind(pattern: str) -> Prefiltered | re.Pattern:
    """A pattern matched case-insensitively against lower-cased text (stages lower the text once). Without upper-case
    letters of its own (escapes such as ``\\S`` aside) it needs no IGNORECASE flag, which halves the search time,
    and the literal words it cannot match without are checked first (a substring test is far cheaper)."""
    if _UNESCAPED_UPPER.search(pattern) is not None:
        return re.compile(pattern, re.IGNORECASE)
    return Prefiltered(pattern)


class Prefiltered:
    """A pattern behind a necessary condition: one of the literals it requires occurs in the text. It is compiled on
    its first search past that condition: most patterns are never needed by a one-prompt run, and compiling them all
    was a tenth of its start-up."""

    def __init__(self, pattern: str):
        self.text = pattern
        self._compiled: re.Pattern | None = None
        needs = required_literals(pattern)
        self.needs: tuple[str, ...] | None = tuple(sorted(needs)) if needs and "" not in needs else None

    @property
    def pattern(self) -> re.Pattern:
        if self._compiled is None:
            try:
                self._compiled = re.compile(self.text)
            except re.error as exc:  # a shipped file edited in place: a user's own file is checked as it loads
                raise KnowledgeError(f"weak-concept pattern {self.text[:80]!r} is not a regular expression: {exc}"
                                     ) from None
        return self._compiled

    def search(self, text: str, present: set[str] | None = None) -> re.Match | None:
        """``present``, when given, holds every literal of ``self.needs`` that occurs in ``text``."""
        if self.needs is not None:
            if present is not None:
                if present.isdisjoint(self.needs):
                    return None
            elif not any(literal in text for literal in self.needs):
                return None
        return self.pattern.search(text)


_WORD_CHARS = re.compile(r"\w+")


class LiteralFinder:
    """Which of a fixed set of literals occur in a text, found word by word.

    A literal made of word characters occurs in a text exactly when it occurs inside one of the text's words (it
    cannot reach across a character that is not a word character), so the literals each distinct word holds are
    worked out once and remembered: over a prompt library, where the same words come back prompt after prompt, that is
    one dict lookup per word instead of a substring search per literal. Other literals are searched for directly.
    """

    HEAD = 3

    def __init__(self, literals: Iterable[str]):
        literals = set(literals)
        self.in_words = tuple(sorted(x for x in literals if _WORD_CHARS.fullmatch(x)))
        self.other = tuple(sorted(literals.difference(self.in_words)))
        self._held: Memo[frozenset[str]] = Memo(1 << 16)  # word -> the literals inside it
        # A new word is searched by the first three characters of the literals: one lookup per place in the word.
        self._short = tuple(x for x in self.in_words if len(x) < self.HEAD)
        self._by_head: dict[str, list[str]] = {}
        for x in self.in_words:
            if len(x) >= self.HEAD:
                self._by_head.setdefault(x[: self.HEAD], []).append(x)

    def present(self, text: str, words: Iterable[str] | None = None) -> set[str]:
        """The literals that occur in ``text``; ``words`` may give its word-character runs (extra tokens, such as
        punctuation, do no harm) when the caller has already cut it."""
        found = {x for x in self.other if x in text}
        if not self.in_words:
            return found
        if words is None:
            unique: AbstractSet[str] = set(_WORD_CHARS.findall(text))
        else:
            unique = words.set if isinstance(words, Words) else set(words)
        held = self._held
        for word in unique:
            inside = held.get(word)
            if inside is None:
                inside = self._inside(word)
                held.put(word, inside)
            if inside:  # (most words hold none)
                found |= inside
        return found

    def _inside(self, word: str) -> frozenset[str]:
        inside = [x for x in self._short if x in word]
        by_head = self._by_head
        for i in range(len(word) - self.HEAD + 1):
            for x in by_head.get(word[i : i + self.HEAD], ()):
                if word.startswith(x, i):
                    inside.append(x)
        return frozenset(inside)
