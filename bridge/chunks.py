"""A1111's 75-token chunks of a prompt, and the warnings where running text spills into the next, stdlib only.

SD 1.x and SD 2.x read a prompt in windows of 77 CLIP tokens (:mod:`bridge.tokens`): a start token, 75 prompt tokens,
an end token. A1111 cuts a longer prompt into 75-token chunks, encodes each chunk on its own and concatenates the
results, so a phrase cut in two is encoded as two unrelated fragments. :func:`chunk_spans` is the project's one
A1111 chunker: :func:`chunk`, :func:`chunk_count` and :func:`overflows` run it over CLIP's BPE tokens, the renderer
over its pipeline tokenizer's ids (:func:`bridge.imaging.conditioning.prompt_chunks`).

>>> [(c.tokens, c.text, c.ended_by) for c in chunk("a (cat:1.2) BREAK a dog")]
[(2, 'a cat', 'break'), (2, 'a dog', 'end')]
>>> chunk("a (cat:1.2)")[0].weights
(1.0, 1.2)
>>> overflows("a castle on a hill")
[]
>>> print(overflows("a castle, " + "very " * 80 + "detailed")[0])  # doctest: +NORMALIZE_WHITESPACE
tokens 76-84 (9) spill into chunk 2 of 2 after '…very very very very very' at 'very very very very very…';
SD2 encodes each 75-token chunk separately: shorten the prompt or put BREAK where a new idea starts

Each attention piece of a prompt is tokenized on its own (as A1111 does), cut at its commas into phrases whose
tokens add up to the piece's. Phrases and their tokens are remembered as they are met (bounded caches), so a prompt
library tokenizes each of its repeated phrases once; whether a text fits in 75 tokens is checked first with a bound
from the common-word counts, which needs no BPE vocabulary.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

from bridge.memo import memoized
from bridge.syntax import attention, parse
from bridge.tokens import (
    END_OF_WORD,
    LONGEST_WORD,
    clean,
    common_words,
    count_cleaned,
    decode,
    pretokens,
    spaced_pretokens,
    tokens_of,
)

__all__ = [
    "CHUNK_TOKENS", "COMMA", "COMMA_BACKTRACK", "Chunk", "Span", "chunk", "chunk_count", "chunk_spans", "overflows",
]

CHUNK_TOKENS = 75  # 77-token window minus the start and end tokens
COMMA_BACKTRACK = 20  # A1111's option "comma_padding_backtrack" (default 20; 0 switches it off)
COMMA = "," + END_OF_WORD

# What is remembered stays small whatever the input: a phrase longer than this (a pasted blob, a hostile prompt) is
# worked out each time instead, and so is a whole text longer than LONGEST_TEXT (words: bridge.tokens.LONGEST_WORD).
LONGEST_PHRASE = 400
LONGEST_TEXT = 4000

# --------------------------------------------------------------------------------------------------------------------
# A1111's chunks

EndedBy = Literal["end", "break", "limit", "comma"]


@dataclass(frozen=True)
class Chunk:
    """One 75-token window of a clause as A1111 fills it (it pads the rest with end tokens)."""

    tokens: int  # real tokens, at most CHUNK_TOKENS
    text: str  # the tokens decoded: lower case, cleaned, brackets and weights gone
    weights: tuple[float, ...]  # A1111's emphasis multiplier of each token
    start: int  # index of the first token in the clause's tokens
    ended_by: EndedBy  # "end" of the text, "break" (BREAK), "limit" (cut at 75 tokens mid-text), or "comma"
    # (at 75 tokens A1111 moved the tokens after a recent comma into the next chunk)

    @property
    def padding(self) -> int:
        return CHUNK_TOKENS - self.tokens


class _Runs(NamedTuple):
    """The tokens of a clause's text, one list per run between two BREAKs, in parallel lists of lists (``symbols``
    is what :func:`chunk_spans` takes)."""

    symbols: list[list[str]]
    texts: list[list[str]]  # each token as it reads in Chunk.text: a space where the prompt has one before it, then
    # the token without its end-of-word mark (still in byte symbols)
    weights: list[list[float]]


def _phrases(cleaned: str) -> list[str]:
    """Cleaned text cut into phrases whose tokens add up to the text's: at each ", " whose comma follows a letter, a
    digit or a space. That comma is a pre-token of its own (a run of punctuation with none next to it), one token,
    and no pre-token reaches across it. Where a comma follows other punctuation (",," ".,") the text stays whole.

    A prompt library repeats its comma-separated phrases, so their tokens are worked out once (:func:`_phrase_tokens`).
    """
    if ", " not in cleaned or cleaned.startswith(", ") or _UNSPLITTABLE.search(cleaned) is not None:
        return [cleaned]
    return cleaned.split(", ")


# A ", " after punctuation or an underscore (CLIP's punctuation runs take the comma in), or one that would leave an
# empty phrase (right after another ", "; at the start is checked apart): such a text is not cut. Cleaned text has
# single spaces, and \w is what str.isalnum() accepts, plus the underscore. The pattern starts with the literal so
# that the search skips to each ", " (a test checks it against the phrase-by-phrase rule).
_UNSPLITTABLE = re.compile(r", (?:(?<=[^\w ], )|(?<=_, )|(?=, ))")


def _tokens_and_texts(cleaned: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tokens of cleaned text, and their texts (see _Runs.texts; the first has no space before it)."""
    found = [_spaced_tokens(w) for w in spaced_pretokens(cleaned)]
    return (tuple(itertools.chain.from_iterable(tokens for tokens, _ in found)),
            tuple(itertools.chain.from_iterable(texts for _, texts in found)))


@memoized(size=1 << 14, longest=LONGEST_PHRASE)  # bulkier than a count; only the prompts that get chunked need it
def _phrase_tokens(cleaned: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """_tokens_and_texts of a phrase, remembered: what a text that needs chunking is made of."""
    return _tokens_and_texts(cleaned)


@memoized(size=1 << 14, longest=LONGEST_PHRASE)
def _after_comma(cleaned: str, space_before_comma: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A phrase with the comma before it: the comma (after a space if the phrase before ends with one), then the
    phrase, whose first token comes after the comma's space."""
    return _comma_join(*_phrase_tokens(cleaned), space_before_comma)


def _comma_join(tokens: tuple[str, ...], texts: tuple[str, ...], space_before_comma: bool
                ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    comma = " ," if space_before_comma else ","
    return (COMMA, *tokens), ((comma, " " + texts[0], *texts[1:]) if texts else (comma,))


@memoized(size=256, longest=LONGEST_TEXT)  # a text that needs chunking was read for the fit check just before
def _attention(text: str) -> tuple[tuple[str, float], ...]:
    return tuple(attention(text))


@memoized(size=256, longest=LONGEST_TEXT)  # (for the same reason)
def _piece_phrases(piece: str) -> tuple[str, ...]:
    """The cleaned phrases of one attention piece."""
    return tuple(_phrases(clean(piece)))


def _piece_count(piece: str) -> int:
    """How many tokens one attention piece takes."""
    phrases = _piece_phrases(piece)
    return sum(map(_phrase_count, phrases)) + len(phrases) - 1


@memoized(size=1 << 16, longest=LONGEST_PHRASE)
def _phrase_count(cleaned: str) -> int:
    """count_cleaned of a phrase, remembered (the fit check needs no more than this)."""
    return count_cleaned(cleaned)


@memoized(size=1 << 16, longest=LONGEST_WORD)
def _spaced_tokens(spaced_word: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tokens of a pre-token and their texts; ``spaced_word`` comes with the space before it, if any."""
    word = spaced_word.removeprefix(" ")
    tokens = tokens_of(word)
    texts = [token.removesuffix(END_OF_WORD) for token in tokens]
    if word is not spaced_word:
        texts[0] = " " + texts[0]
    return tokens, tuple(texts)


def _runs(text: str) -> _Runs:
    """The tokens of one clause's text (see :func:`chunk`), cut at each BREAK."""
    runs = _Runs([[]], [[]], [[]])
    gap = False
    for piece, weight in _attention(text):
        if piece == "BREAK" and weight == -1:
            runs.symbols.append([])
            runs.texts.append([])
            runs.weights.append([])
            continue
        symbols, texts = runs.symbols[-1], runs.texts[-1]
        first = len(symbols)
        phrases = _piece_phrases(piece)
        spaces = map(str.endswith, phrases[:-1], itertools.repeat(" "))
        # the first phrase, then each next one with the comma before it
        parts = [_phrase_tokens(phrases[0]), *map(_after_comma, phrases[1:], spaces)]
        symbols.extend(itertools.chain.from_iterable(map(operator.itemgetter(0), parts)))
        texts.extend(itertools.chain.from_iterable(map(operator.itemgetter(1), parts)))
        added = len(symbols) - first
        if added:
            runs.weights[-1].extend([weight] * added)
            # BREAK inside brackets is weighted text whose surrounding spaces attention() dropped: keep it a word
            if (gap or piece[:1].isspace() or piece == "BREAK") and not texts[first].startswith(" "):
                texts[first] = " " + texts[first]
        gap = piece[-1:].isspace() or piece == "BREAK"
    return runs


def _decode(texts: list[str]) -> str:
    """Token texts (see _Runs.texts) as text, without the space before the first."""
    return decode("".join(texts).removeprefix(" ") if texts and texts[0].startswith(" ") else "".join(texts))


class Span(NamedTuple):
    """Where one chunk starts and ends: tokens ``start`` to ``end - 1`` of run number ``run`` (a run is the text
    between two BREAKs)."""

    run: int
    start: int
    end: int
    offset: int  # index of the run's first token among the tokens of all the runs
    ended_by: EndedBy


Token = TypeVar("Token")


def chunk_spans(runs: Sequence[Sequence[Token]], comma: Token, *,
                comma_backtrack: int = COMMA_BACKTRACK) -> list[Span]:
    """A1111's 75-token chunks of one clause, as spans of its ``runs`` (its tokens between BREAKs, in order): the
    project's one chunker. Tokens are of any kind that compares with ``comma``: CLIP BPE strings here (``",</w>"``),
    a pipeline tokenizer's ids in :func:`bridge.imaging.conditioning.prompt_chunks`.

    A1111 fills a chunk token by token (``modules/sd_hijack_clip.py``, ``tokenize_line``); this jumps from one full
    chunk to the next with the same outcome. Each BREAK ends a chunk (an empty one too). When token 76 arrives at a
    full chunk: if the chunk's last remembered comma is among its last ``comma_backtrack`` tokens (and token 76 is
    not itself a comma), the tokens after that comma move on with token 76 (``"comma"``); otherwise the chunk is cut
    at 75 tokens (``"limit"``). Every comma is remembered except one that arrives at a full chunk, A1111's quirk: it
    opens the next chunk without being remembered there. An empty run after the last BREAK makes no chunk, but there
    is always at least one chunk.

    >>> [(s.run, s.start, s.end, s.ended_by) for s in chunk_spans([[1] * 70 + [0] + [2] * 10], comma=0)]
    [(0, 0, 71, 'comma'), (0, 71, 81, 'end')]
    >>> [(s.run, s.start, s.end, s.ended_by) for s in chunk_spans([["a</w>"], []], comma=",</w>")]
    [(0, 0, 1, 'break')]
    """
    spans: list[Span] = []
    offset = 0
    last = len(runs) - 1
    for number, tokens in enumerate(runs):
        n = len(tokens)
        start = remembered_from = 0
        while n - start > CHUNK_TOKENS:
            arriving = start + CHUNK_TOKENS
            if comma_backtrack and tokens[arriving] != comma:
                # the last comma among the chunk's last comma_backtrack tokens, if it is remembered
                low = max(remembered_from, arriving - comma_backtrack)
                window = tokens[low:arriving]
                if comma in window:
                    after_comma = arriving - window[::-1].index(comma)
                    spans.append(Span(number, start, after_comma, offset, "comma"))
                    start = remembered_from = after_comma
                    continue
            spans.append(Span(number, start, arriving, offset, "limit"))
            start = arriving
            remembered_from = arriving + 1 if tokens[arriving] == comma else arriving
        if number < last:
            spans.append(Span(number, start, n, offset, "break"))
        elif start < n or not spans:
            spans.append(Span(number, start, n, offset, "end"))
        offset += n
    return spans


def chunk(text: str, *, comma_backtrack: int = COMMA_BACKTRACK) -> list[Chunk]:
    """Cut one clause's text (no ``AND``, no ``<lora:…>`` tags, editing resolved) into A1111's 75-token chunks.

    Tokens fill a chunk up to 75; ``BREAK`` ends the chunk early; when a token arrives at a full chunk whose last
    comma is among its last ``comma_backtrack`` tokens, the tokens after that comma move on with it. An empty text
    is one empty chunk. Raises :class:`bridge.syntax.PromptSyntaxError` where A1111 does (``(a:1.2.3)``).

    >>> [(c.tokens, c.ended_by) for c in chunk("word " * 100)]
    [(75, 'limit'), (25, 'end')]
    >>> [(c.tokens, c.ended_by) for c in chunk("word " * 70 + ", " + "word " * 10)]
    [(71, 'comma'), (10, 'end')]
    """
    runs = _runs(text)
    return [Chunk(s.end - s.start, _decode(runs.texts[s.run][s.start : s.end]),
                  tuple(runs.weights[s.run][s.start : s.end]), s.offset + s.start, s.ended_by)
            for s in chunk_spans(runs.symbols, COMMA, comma_backtrack=comma_backtrack)]


# --------------------------------------------------------------------------------------------------------------------
# Warnings

CONTEXT_WORDS = 5  # words quoted on each side of a split


def overflows(prompt: str, *, steps: int = 20) -> list[str]:
    """One warning per place where A1111 has to cut running text at the 75-token limit (not at a ``BREAK``).

    ``prompt`` is a whole A1111 prompt: each ``AND`` part is chunked on its own, ``<lora:…>`` tags take no tokens,
    and prompt editing is resolved at every one of ``steps`` sampling steps. Raises
    :class:`bridge.syntax.PromptSyntaxError` where A1111 does.

    >>> overflows("a castle BREAK " + "word " * 75)
    []
    """
    return list(_overflows(prompt, steps))


@memoized(size=1024, longest=LONGEST_TEXT)  # the same default negative prompt comes back for prompt after prompt
def _overflows(prompt: str, steps: int) -> tuple[str, ...]:
    clauses = _clause_texts(prompt, steps)
    messages: dict[str, None] = {}  # in order, each once (a long prompt has thousands)
    for number, first_step in enumerate(clauses, 1):
        where = f"AND part {number}: " if len(clauses) > 1 else ""
        for text, step in first_step.items():
            if _fits(text):
                continue
            when = f"from step {step}: " if len(first_step) > 1 else ""
            runs = _runs(text)
            spans = chunk_spans(runs.symbols, COMMA)
            for k, (before, after) in enumerate(itertools.pairwise(spans), 2):
                if before.ended_by in ("limit", "comma"):
                    message = where + when + _split_message(k, len(spans), runs.texts[before.run], before, after)
                    messages[message] = None
    return tuple(messages)


def chunk_count(prompt: str, *, steps: int = 20) -> int:
    """How many 75-token chunks A1111 encodes a whole prompt in: the chunks of each ``AND`` part added up, each part
    taken at the sampling step whose text needs the most. The bridge compares it before and after a translation, so
    that what it adds never makes A1111 split a prompt that fitted.

    >>> chunk_count("a castle AND " + "word " * 80)
    3
    """
    return sum(max(_break_runs(text) if _fits(text) else len(chunk_spans(_runs(text).symbols, COMMA))
                   for text in texts) for texts in _clause_texts(prompt, steps))


@memoized(size=256, longest=LONGEST_TEXT)  # the bridge counts a prompt's chunks, then warns about the same text
def _clause_texts(prompt: str, steps: int) -> tuple[dict[str, int], ...]:
    """Each ``AND`` part of ``prompt``: its distinct texts over ``steps`` sampling steps (prompt editing resolved),
    each with the first step that shows it (not to be changed: the result is remembered)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    parsed = parse(prompt)
    scheduled = bool({"editing", "alternation"} & parsed.features())
    clauses = []
    for clause in parsed.clauses:
        first_step: dict[str, int] = {}
        for step in range(1, steps + 1) if scheduled else (1,):
            first_step.setdefault(clause.text_at(step, steps), step)
        clauses.append(first_step)
    return tuple(clauses)


def _break_runs(text: str) -> int:
    """The chunks of a text whose runs between BREAKs all fit: one per run."""
    return 1 + sum(piece == "BREAK" and weight == -1 for piece, weight in _attention(text))


@memoized(size=1024, longest=LONGEST_TEXT)  # the bridge's spill check, then its token warnings, ask of one text
def _fits(text: str) -> bool:
    """True when no run of text between BREAKs passes 75 tokens (no chunks are built: only a text that does not fit
    needs them, for the warning). An upper bound that needs no BPE vocabulary comes first (a listed common word takes
    its listed count, any other pre-token at most one token per byte), so a short prompt never loads it; a text past
    the bound is counted exactly."""
    return _runs_fit(text, _piece_bound) or _runs_fit(text, _piece_count)


def _runs_fit(text: str, count: Callable[[str], int]) -> bool:
    tokens = 0
    for piece, weight in _attention(text):
        if piece == "BREAK" and weight == -1:
            tokens = 0
            continue
        tokens += count(piece)
        if tokens > CHUNK_TOKENS:
            return False
    return True


def _piece_bound(piece: str) -> int:
    """At least as many tokens as one attention piece takes (_piece_count), from the common words alone."""
    phrases = _piece_phrases(piece)
    return sum(map(_phrase_bound, phrases)) + len(phrases) - 1


@memoized(size=1 << 16, longest=LONGEST_PHRASE)
def _phrase_bound(cleaned: str) -> int:
    common = common_words()
    return sum(common.get(word) or len(word.encode("utf-8")) for word in pretokens(cleaned))


def _split_message(k: int, total: int, texts: list[str], before: Span, after: Span) -> str:
    """The warning for the split between two chunks of one run (``texts``: the run's token texts), quoting the words
    each side of it."""
    tail, more_before = _last_words(texts, before.start, before.end, CONTEXT_WORDS)
    head, more_after = _first_words(texts, after.start, after.end, CONTEXT_WORDS)
    quoted_tail = ("…" if more_before else "") + " ".join(tail)
    quoted_head = " ".join(head) + ("…" if more_after else "")
    first, tokens = after.offset + after.start, after.end - after.start
    return (
        f"tokens {first + 1}-{first + tokens} ({tokens}) spill into chunk {k} of {total} "
        f"after '{quoted_tail}' at '{quoted_head}'; SD2 encodes each {CHUNK_TOKENS}-token chunk separately: "
        "shorten the prompt or put BREAK where a new idea starts"
    )


# The words of a chunk are those of its text (Chunk.text) split at whitespace: a word starts at a token with
# whitespace before it. These decode only as many tokens as they need, widening the window until it holds one word
# more than asked for (or the whole chunk). A word cut by the window's edge is left out; UTF-8 decoding starts over
# at every word, so the words kept are exactly the chunk's (a test compares with whole chunks).


def _last_words(texts: list[str], start: int, end: int, n: int) -> tuple[list[str], bool]:
    """The last ``n`` words of tokens ``start``..``end - 1``, and whether there are more."""
    low = max(start, end - 3 * n)
    while True:
        words = _decode(texts[low:end]).split()
        if low == start:
            return words[-n:], len(words) > n
        if not texts[low].startswith(" "):
            words = words[1:]  # the window starts inside a word
        if len(words) > n:
            return words[-n:], True
        low = max(start, low - 4 * n)


def _first_words(texts: list[str], start: int, end: int, n: int) -> tuple[list[str], bool]:
    """The first ``n`` words of tokens ``start``..``end - 1``, and whether there are more."""
    high = min(end, start + 3 * n)
    while True:
        words = _decode(texts[start:high]).split()
        if high == end:
            return words[:n], len(words) > n
        if not texts[high].startswith(" "):
            words = words[:-1]  # the window ends inside a word
        if len(words) > n:
            return words[:n], True
        high = min(end, high + 4 * n)
