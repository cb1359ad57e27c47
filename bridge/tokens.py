"""CLIP token counts and A1111's 75-token chunks, with the standard library only.

SD 1.x and SD 2.x both read a prompt through CLIP's byte-level BPE vocabulary in windows of 77 tokens: a start
token, 75 prompt tokens, an end token. A1111 cuts a longer prompt into 75-token chunks, encodes each chunk on its
own and concatenates the results, so a phrase cut in two is encoded as two unrelated fragments.

>>> count_tokens("a castle on a hill, highly detailed, 8k")
11
>>> tokenize("Greg Rutkowski’s")
['greg</w>', 'rut', 'kowski</w>', "'s</w>"]
>>> [(c.tokens, c.text, c.ended_by) for c in chunk("a (cat:1.2) BREAK a dog")]
[(2, 'a cat', 'break'), (2, 'a dog', 'end')]
>>> chunk("a (cat:1.2)")[0].weights
(1.0, 1.2)
>>> overflows("a castle on a hill")
[]
>>> print(overflows("a castle, " + "very " * 80 + "detailed")[0])  # doctest: +NORMALIZE_WHITESPACE
tokens 76-84 (9) spill into chunk 2 of 2 after '…very very very very very' at 'very very very very very…';
SD2 encodes each 75-token chunk separately: shorten the prompt or put BREAK where a new idea starts

How this matches the reference tokenizer (open_clip's ``SimpleTokenizer``, which A1111 uses for SD 2.x):

* Cleaning: a subset of ``ftfy.fix_text`` (curly quotes made straight, full-width forms and Latin ligatures
  replaced, invisible control characters removed, NFC), then ``html.unescape`` twice, whitespace collapsed,
  lower case. Not emulated: ftfy's mojibake repair (``"cafÃ©"`` → ``"café"``), its C1-control and terminal-escape
  fixes, and its own extra round of HTML unescaping (``"&amp;amp;amp;"`` unescapes three times there, twice here).
* Pre-tokenization: CLIP's pattern (contractions ``'s 't 're 've 'm 'll 'd``; runs of letters; single digits; runs
  of anything else) in Python's ``re``: ``\\p{L}`` is ``[^\\W\\d_]`` and ``\\p{N}`` is ``\\d`` plus the non-decimal
  numerals (``²``, ``½``, ``Ⅻ``), which ``re`` counts as word characters and which are split off here as CLIP does.
  U+0345 (which ``regex`` drops under IGNORECASE) is dropped too. Characters that the ``regex`` module knows from a
  newer Unicode version than this Python are "other" here.
* The special tokens ``<start_of_text>`` and ``<end_of_text>`` written in a prompt count as one token each, as in
  open_clip (OpenAI's and Hugging Face's tokenizers spell them ``<|startoftext|>`` / ``<|endoftext|>``).
* Hugging Face's ``CLIPTokenizer`` (A1111's SD 1.x path) never calls ``html.unescape`` and, in transformers 5,
  no ftfy either: ``&amp;`` and curly quotes can count differently there.
* Textual-inversion embedding names count as the words they are spelled with (A1111 swaps in their vectors).

The merges are read from ``data/clip_bpe_vocab.txt.gz`` (OpenAI CLIP's vocabulary, see ``data/CLIP_BPE_LICENSE``)
on the first count, never at import: that costs 10-15 ms once, and about 8 ms more for the set of whole-word tokens
once a few hundred words have been counted (no cache needed; ``benchmarks/token_count.py``). Words, phrases and their counts are remembered as they are met
(bounded caches), so a prompt library tokenizes each of its repeated phrases once.
"""

from __future__ import annotations

import html
import itertools
import operator
import re
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

from bridge.memo import memoized
from bridge.syntax import attention, parse

__all__ = [
    "CHUNK_TOKENS", "COMMA_BACKTRACK", "Chunk", "Span", "chunk", "chunk_count", "chunk_spans", "count_tokens",
    "overflows", "tokenize",
]

VOCAB_PATH = Path(__file__).parent / "data" / "clip_bpe_vocab.txt.gz"
MERGE_COUNT = 49152 - 256 - 2  # CLIP's rule: the first 48,894 merges (49,408 tokens = 2 x 256 bytes + merges + 2)
CHUNK_TOKENS = 75  # 77-token window minus the start and end tokens
COMMA_BACKTRACK = 20  # A1111's option "comma_padding_backtrack" (default 20; 0 switches it off)
END_OF_WORD = "</w>"
COMMA = "," + END_OF_WORD
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
INFLATE_STEP = 1 << 15  # compressed bytes per step: the merges CLIP uses end at 40% of the file

_PRETOKEN = re.compile(
    "|".join(SPECIAL_TOKENS) + r"|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w\u0345]|_)+",
    re.IGNORECASE,  # as CLIP's pattern: "'ſ" is a contraction too; U+0345 case-folds to a letter, so CLIP skips it
)
# The same on cleaned ASCII text (lower case, single spaces), where case-folding changes nothing: without IGNORECASE,
# and with letters and digits tried first (no other alternative starts with one, so the order changes nothing).
_PRETOKEN_ASCII = re.compile(r"[a-z]+|[0-9]|'(?:s|t|re|ve|m|ll|d)|" + "|".join(SPECIAL_TOKENS) + r"|[^\sa-z0-9]+")
_PRETOKEN_SPACED = re.compile(f" ?(?:{_PRETOKEN_ASCII.pattern})")


def _byte_symbols() -> list[str]:
    """CLIP's byte -> symbol table: printable Latin-1 bytes stand for themselves, the other 68 bytes (space, control
    characters, ...) take the code points from 256 up, so no symbol is whitespace."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    symbols = [""] * 256
    extra = 256
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(extra)
            extra += 1
    return symbols


_BYTE_SYMBOLS = _byte_symbols()
_TO_SYMBOLS = {byte: symbol for byte, symbol in enumerate(_BYTE_SYMBOLS) if chr(byte) != symbol}
_FROM_SYMBOLS = {ord(symbol): byte for byte, symbol in enumerate(_BYTE_SYMBOLS)} | {ord(" "): ord(" ")}

# ftfy.fix_text's character fixes that apply to well-formed text (see the module docstring).
_LIGATURES = {
    "Ĳ": "IJ", "ĳ": "ij", "ŉ": "'n", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž", "Ǉ": "LJ",
    "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj", "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl",
    "ﬅ": "ſt", "ﬆ": "st",
}
_CONTROL = [*range(0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF, *range(0xFFF9, 0xFFFD)]
_QUOTES = {0x02BC: "'", 0x2018: "'", 0x2019: "'", 0x201A: "'", 0x201B: "'",
           0x201C: '"', 0x201D: '"', 0x201E: '"', 0x201F: '"'}


@cache
def _fix_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {0x3000: " "}
    for code in range(0xFF01, 0xFFF0):  # full-width and half-width forms
        normal = unicodedata.normalize("NFKC", chr(code))
        if normal != chr(code):
            table[code] = normal
    table.update({ord(k): v for k, v in _LIGATURES.items()})
    table.update(_QUOTES)
    table.update(dict.fromkeys(_CONTROL))
    return table


@cache
def _merge_ranks() -> dict[str, int]:
    """``"first second"`` -> rank (lower merges first), from the first MERGE_COUNT lines after the header line.

    Only the head of the file is decompressed: CLIP uses fewer than a fifth of the merges it lists.
    """
    compressed = memoryview(VOCAB_PATH.read_bytes())
    inflate = zlib.decompressobj(wbits=31)  # a gzip container; zlib directly is twice as fast as the gzip module
    head = bytearray()
    newlines = 0
    for offset in range(0, len(compressed), INFLATE_STEP):
        block = inflate.decompress(compressed[offset : offset + INFLATE_STEP])
        head += block
        newlines += block.count(b"\n")
        if newlines > MERGE_COUNT:
            break
    lines = head.decode("utf-8", errors="replace").split("\n", MERGE_COUNT + 1)[1 : MERGE_COUNT + 1]
    if len(lines) < MERGE_COUNT:
        raise ValueError(f"{VOCAB_PATH} holds {len(lines)} merges; CLIP's vocabulary needs {MERGE_COUNT}")
    return dict(zip(lines, range(MERGE_COUNT)))


LONG_WORD = 24  # symbols: longer pre-tokens (rare) are merged a whole round at a time, see _bpe


def _bpe(word: str) -> tuple[str, ...]:
    """Split one pre-token (in byte symbols) into CLIP tokens: merge the lowest-ranked adjacent pair, everywhere it
    occurs (left to right), until no adjacent pair is a known merge.

    A word's pair ranks are kept between merges and only the pairs next to a merge are looked up again. A long word
    (a run of one letter, pasted base64) can hold a pair hundreds of times: there each round rebuilds the word in one
    pass, so the time stays quadratic in the word's length at worst.
    """
    if word in SPECIAL_TOKENS:
        return (word,)
    symbols = [*word[:-1], word[-1] + END_OF_WORD]
    if len(symbols) == 1:
        return tuple(symbols)
    rank = _merge_ranks().get
    ranks = [rank(a + " " + b, MERGE_COUNT) for a, b in itertools.pairwise(symbols)]  # ranks[i]: symbols i and i + 1
    while ranks:
        best = min(ranks)
        if best == MERGE_COUNT:
            break
        i = ranks.index(best)  # the first place the pair occurs
        first, second = symbols[i], symbols[i + 1]
        if len(symbols) > LONG_WORD:
            merged = symbols[:i]
            while i < len(symbols):
                if symbols[i] == first and i + 1 < len(symbols) and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
            ranks = [rank(a + " " + b, MERGE_COUNT) for a, b in itertools.pairwise(symbols)]
            continue
        while True:
            symbols[i : i + 2] = [first + second]
            del ranks[i]
            if i:
                ranks[i - 1] = rank(symbols[i - 1] + " " + symbols[i], MERGE_COUNT)
            if i < len(ranks):
                ranks[i] = rank(symbols[i] + " " + symbols[i + 1], MERGE_COUNT)
            # the next place the same pair occurs, not overlapping this merge
            i += 1
            while i < len(ranks) and not (symbols[i] == first and symbols[i + 1] == second):
                i += 1
            if i >= len(ranks):
                break
    return tuple(symbols)


def _clean(text: str) -> str:
    """CLIP's text cleaning: the ftfy subset, HTML entities (twice), whitespace collapsed, lower case."""
    if not text.isascii() or not text.isprintable():
        text = unicodedata.normalize("NFC", text.translate(_fix_table()))
    if "&" in text:  # html.unescape only ever changes text with an entity
        text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


def _pretokens(text: str) -> list[str]:
    """CLIP's pre-tokens of cleaned text. ``re`` counts numerals such as ``²`` as letters; CLIP makes each of them a
    pre-token of its own, so letter runs holding one are split here."""
    if text.isascii():
        return _PRETOKEN_ASCII.findall(text)
    words = _PRETOKEN.findall(text)
    out: list[str] = []
    for word in words:
        if len(word) > 1 and word.isalnum() and not word.isalpha():
            letters = ""
            for char in word:
                if char.isalpha():
                    letters += char
                else:
                    out.extend([letters, char] if letters else [char])
                    letters = ""
            if letters:
                out.append(letters)
        else:
            out.append(word)
    return out


def _symbols(word: str) -> str:
    if word.isascii() and word.isalnum():
        return word  # letters and digits are their own byte symbols
    return word.encode("utf-8").decode("latin-1").translate(_TO_SYMBOLS)


# What is remembered stays small whatever the input: a word or phrase longer than this (a pasted blob, a hostile
# prompt) is worked out each time instead, and so is a whole text longer than LONGEST_TEXT.
LONGEST_WORD = 100  # characters; CLIP pre-tokens of real prompts are far shorter
LONGEST_PHRASE = 400
LONGEST_TEXT = 4000


@memoized(size=1 << 16, longest=LONGEST_WORD)  # prompts repeat their words
def _tokens_of(word: str) -> tuple[str, ...]:
    """The tokens of one pre-token."""
    return _bpe(_symbols(word))


def tokenize(text: str) -> list[str]:
    """The CLIP tokens of ``text`` (no start or end token), as vocabulary strings; ``</w>`` ends a word.

    >>> tokenize("8k, trending")
    ['8</w>', 'k</w>', ',</w>', 'trending</w>']
    """
    return [token for word in _pretokens(_clean(text)) for token in _tokens_of(word)]


def count_tokens(text: str) -> int:
    """How many CLIP tokens ``text`` takes, without the start and end tokens (``len(tokenize(text))``).

    >>> count_tokens("masterpiece, best quality")
    4
    """
    cleaned = _clean(text)
    # A text of listed common words (their counts are exact) and single ASCII characters is counted without the BPE
    # vocabulary: the bridge's own phrases are, so a one-prompt run never loads it for them.
    common = _common_words()
    counts = [common.get(word) or (len(word) == 1 and word.isascii()) for word in _pretokens(cleaned)]
    return sum(counts) if all(counts) else _count(cleaned)


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
    found = [_spaced_tokens(w) for w in _spaced_words(cleaned)]
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
    return tuple(_phrases(_clean(piece)))


def _piece_count(piece: str) -> int:
    """How many tokens one attention piece takes."""
    phrases = _piece_phrases(piece)
    return sum(map(_phrase_count, phrases)) + len(phrases) - 1


def _count(cleaned: str) -> int:
    """How many tokens cleaned text takes."""
    return sum(map(len, map(_tokens_of, _pretokens(cleaned))))


@memoized(size=1 << 16, longest=LONGEST_PHRASE)
def _phrase_count(cleaned: str) -> int:
    """_count of a phrase, remembered (the fit check needs no more than this)."""
    return _count(cleaned)


def _spaced_words(cleaned: str) -> list[str]:
    """The pre-tokens of cleaned text, each with the space before it in the text, if any."""
    if cleaned.isascii():
        return _PRETOKEN_SPACED.findall(cleaned)  # cleaned ASCII text: pre-tokens separated by single spaces
    spaced = []
    pos = 0
    for word in _pretokens(cleaned):
        start = cleaned.index(word, pos)  # pre-tokens come in order; between them: spaces (or a skipped U+0345)
        spaced.append(" " + word if " " in cleaned[pos:start] else word)
        pos = start + len(word)
    return spaced


@memoized(size=1 << 16, longest=LONGEST_WORD)
def _spaced_tokens(spaced_word: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tokens of a pre-token and their texts; ``spaced_word`` comes with the space before it, if any."""
    word = spaced_word.removeprefix(" ")
    tokens = _tokens_of(word)
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
    text = "".join(texts).removeprefix(" ") if texts and texts[0].startswith(" ") else "".join(texts)
    return text.translate(_FROM_SYMBOLS).encode("latin-1").decode("utf-8", errors="replace")


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
    messages: list[str] = []
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
                    if message not in messages:
                        messages.append(message)
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


def _clause_texts(prompt: str, steps: int) -> list[dict[str, int]]:
    """Each ``AND`` part of ``prompt``: its distinct texts over ``steps`` sampling steps (prompt editing resolved),
    each with the first step that shows it."""
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
    return clauses


def _break_runs(text: str) -> int:
    """The chunks of a text whose runs between BREAKs all fit: one per run."""
    return 1 + sum(piece == "BREAK" and weight == -1 for piece, weight in _attention(text))


COMMON_WORDS_PATH = Path(__file__).resolve().parent / "data" / "common_words.txt"


@cache
def _common_words() -> dict[str, int]:
    """Frequent prompt words and their token counts (tools/common_words.py; a test checks every count)."""
    pairs = (line.rsplit(" ", 1) for line in COMMON_WORDS_PATH.read_text(encoding="utf-8").splitlines() if line)
    return {word: int(count) for word, count in pairs}


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
    common = _common_words()
    return sum(common.get(word) or len(word.encode("utf-8")) for word in _pretokens(cleaned))


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
