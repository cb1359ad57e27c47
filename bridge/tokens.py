"""CLIP's byte-level BPE tokenizer, with the standard library only: token counts equal to open_clip's.

SD 1.x and SD 2.x both read a prompt through CLIP's byte-level BPE vocabulary in windows of 77 tokens: a start
token, 75 prompt tokens, an end token (A1111's 75-token chunks are :mod:`bridge.chunks`, built on this module).

>>> count_tokens("a castle on a hill, highly detailed, 8k")
11
>>> tokenize("Greg Rutkowski’s")
['greg</w>', 'rut', 'kowski</w>', "'s</w>"]

How this matches the reference tokenizer (open_clip's ``SimpleTokenizer``, which A1111 uses for SD 2.x):

* Cleaning: a subset of ``ftfy.fix_text`` (curly quotes made straight, full-width forms and Latin ligatures
  replaced, invisible control characters removed, surrogate pairs joined and lone surrogates made U+FFFD, NFC),
  then ``html.unescape`` twice, whitespace collapsed, lower case. Not emulated: ftfy's mojibake repair
  (``"cafÃ©"`` → ``"café"``), its C1-control and terminal-escape fixes, and its own extra round of HTML unescaping
  (``"&amp;amp;amp;"`` unescapes three times there, twice here).
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

The steps are public for :mod:`bridge.chunks`, which tokenizes piece by piece and phrase by phrase and keeps each
token's text: :func:`clean` a text once; cut the cleaned text into pre-tokens with :func:`pretokens` (or
:func:`spaced_pretokens`, each with the space before it), which take cleaned text so that a caller can cut it into
phrases first and never cleans twice; :func:`tokens_of` gives each pre-token's tokens (in CLIP's byte symbols,
``END_OF_WORD`` ending a word), :func:`decode` turns token texts back into text, and :func:`count_cleaned` counts
cleaned text. :func:`common_words` are the listed words whose exact counts need no vocabulary.

The merges are read from ``data/clip_bpe_vocab.txt.gz`` (OpenAI CLIP's vocabulary, see ``data/CLIP_BPE_LICENSE``)
on the first count, never at import: that costs 10-15 ms once, and about 8 ms more for the set of whole-word tokens
once a few hundred words have been counted (no cache needed; ``benchmarks/token_count.py``). Words and their tokens
are remembered as they are met (a bounded cache), so a prompt library tokenizes each of its repeated words once.
"""

from __future__ import annotations

import heapq
import html
import itertools
import re
import unicodedata
import zlib
from functools import cache
from pathlib import Path

from bridge.memo import memoized

__all__ = [
    "END_OF_WORD", "LONGEST_WORD", "clean", "common_words", "count_cleaned", "count_tokens", "decode", "pretokens",
    "spaced_pretokens", "tokenize", "tokens_of",
]

VOCAB_PATH = Path(__file__).parent / "data" / "clip_bpe_vocab.txt.gz"
COMMON_WORDS_PATH = Path(__file__).resolve().parent / "data" / "common_words.txt"
MERGE_COUNT = 49152 - 256 - 2  # CLIP's rule: the first 48,894 merges (49,408 tokens = 2 x 256 bytes + merges + 2)
END_OF_WORD = "</w>"
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


LONG_WORD = 24  # symbols: longer pre-tokens (rare) are merged with a heap of pairs, see _bpe_long


def _bpe(word: str) -> tuple[str, ...]:
    """Split one pre-token (in byte symbols) into CLIP tokens: merge the lowest-ranked adjacent pair, everywhere it
    occurs (left to right), until no adjacent pair is a known merge.

    A word's pair ranks are kept between merges and only the pairs next to a merge are looked up again. A long word
    (a run of one letter, pasted base64, a hostile megabyte of letters) goes to :func:`_bpe_long`.
    """
    if word in SPECIAL_TOKENS:
        return (word,)
    symbols = [*word[:-1], word[-1] + END_OF_WORD]
    if len(symbols) == 1:
        return tuple(symbols)
    rank = _merge_ranks().get
    if len(symbols) > LONG_WORD:
        return _bpe_long(symbols, rank)
    ranks = [rank(a + " " + b, MERGE_COUNT) for a, b in itertools.pairwise(symbols)]  # ranks[i]: symbols i and i + 1
    while ranks:
        best = min(ranks)
        if best == MERGE_COUNT:
            break
        i = ranks.index(best)  # the first place the pair occurs
        first, second = symbols[i], symbols[i + 1]
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


def _bpe_long(symbols: list[str], rank) -> tuple[str, ...]:
    """:func:`_bpe` of a long word in O(n log n) time: the known pairs wait in a heap by (rank, position), the
    symbols are a linked list. Each round takes every pair of the lowest rank and merges them left to right, as
    CLIP's loop does; a pair that a merge of the round took a symbol from no longer holds its rank and is skipped.
    A merge makes no new pair of its own rank (the merged symbol is longer than either half), so the new pairs wait
    for a later round, as they do in CLIP's loop.
    """
    size = len(symbols)
    after = [*range(1, size), -1]  # the next symbol still in the word, -1 at the end
    before = list(range(-1, size - 1))
    text: list[str | None] = list(symbols)  # None: merged into the symbol before it
    heap = [(r, i) for i, r in enumerate(rank(a + " " + b, MERGE_COUNT) for a, b in itertools.pairwise(symbols))
            if r < MERGE_COUNT]
    heapq.heapify(heap)
    while heap:
        best = heap[0][0]
        positions = []
        while heap and heap[0][0] == best:
            positions.append(heapq.heappop(heap)[1])  # in order: the heap pops equal ranks by position
        for i in positions:
            j = after[i]
            if text[i] is None or j < 0 or rank(text[i] + " " + text[j], MERGE_COUNT) != best:
                continue  # this pair lost a symbol to a merge before it
            text[i] += text[j]  # type: ignore[operator]
            text[j] = None
            after[i] = after[j]
            if after[i] >= 0:
                before[after[i]] = i
            for left in (before[i], i):
                if left >= 0 and after[left] >= 0:
                    r = rank(text[left] + " " + text[after[left]], MERGE_COUNT)  # type: ignore[operator]
                    if r < MERGE_COUNT:
                        heapq.heappush(heap, (r, left))
    return tuple(t for t in text if t is not None)
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


_SURROGATE = re.compile("[\ud800-\udfff]")  # (text read with surrogateescape, or JSON's "\\ud800", can hold them)


def clean(text: str) -> str:
    """CLIP's text cleaning: the ftfy subset, HTML entities (twice), whitespace collapsed, lower case.

    >>> clean("  HIGHLY   Detailed &amp; it’s")
    "highly detailed & it's"
    """
    if not text.isascii() or not text.isprintable():
        if _SURROGATE.search(text) is not None:  # ftfy's fix_surrogates: a pair is its character, a lone one U+FFFD
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        text = unicodedata.normalize("NFC", text.translate(_fix_table()))
    if "&" in text:  # html.unescape only ever changes text with an entity
        text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


def pretokens(cleaned: str) -> list[str]:
    """CLIP's pre-tokens of cleaned text (:func:`clean`'s result, not cleaned again here). ``re`` counts numerals
    such as ``²`` as letters; CLIP makes each of them a pre-token of its own, so letter runs holding one are split.

    >>> pretokens(clean("It's 8k!!"))
    ['it', "'s", '8', 'k', '!!']
    """
    if cleaned.isascii():
        return _PRETOKEN_ASCII.findall(cleaned)
    words = _PRETOKEN.findall(cleaned)
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


def spaced_pretokens(cleaned: str) -> list[str]:
    """The pre-tokens of cleaned text, each with the space before it in the text, if any.

    >>> spaced_pretokens(clean("a castle, 8k"))
    ['a', ' castle', ',', ' 8', 'k']
    """
    if cleaned.isascii():
        return _PRETOKEN_SPACED.findall(cleaned)  # cleaned ASCII text: pre-tokens separated by single spaces
    spaced = []
    pos = 0
    for word in pretokens(cleaned):
        start = cleaned.index(word, pos)  # pre-tokens come in order; between them: spaces (or a skipped U+0345)
        spaced.append(" " + word if " " in cleaned[pos:start] else word)
        pos = start + len(word)
    return spaced


def _symbols(word: str) -> str:
    if word.isascii() and word.isalnum():
        return word  # letters and digits are their own byte symbols
    return word.encode("utf-8").decode("latin-1").translate(_TO_SYMBOLS)


def decode(symbols: str) -> str:
    """Text written in CLIP's byte symbols (token texts joined, ``END_OF_WORD`` marks removed; spaces may stand
    between them) back as text; bytes that are not whole UTF-8 characters become U+FFFD.

    >>> tokenize("café")
    ['cafÃ©</w>']
    >>> decode("cafÃ©")
    'café'
    """
    return symbols.translate(_FROM_SYMBOLS).encode("latin-1").decode("utf-8", errors="replace")


# What is remembered stays small whatever the input: a word longer than this (a pasted blob, a hostile prompt) is
# worked out each time instead (bridge.chunks bounds its phrases and texts the same way).
LONGEST_WORD = 100  # characters; CLIP pre-tokens of real prompts are far shorter


@memoized(size=1 << 16, longest=LONGEST_WORD)  # prompts repeat their words
def tokens_of(word: str) -> tuple[str, ...]:
    """The tokens of one pre-token (see :func:`pretokens`).

    >>> tokens_of("rutkowski")
    ('rut', 'kowski</w>')
    """
    return _bpe(_symbols(word))


def tokenize(text: str) -> list[str]:
    """The CLIP tokens of ``text`` (no start or end token), as vocabulary strings; ``</w>`` ends a word.

    >>> tokenize("8k, trending")
    ['8</w>', 'k</w>', ',</w>', 'trending</w>']
    """
    return [token for word in pretokens(clean(text)) for token in tokens_of(word)]


def count_tokens(text: str) -> int:
    """How many CLIP tokens ``text`` takes, without the start and end tokens (``len(tokenize(text))``).

    >>> count_tokens("masterpiece, best quality")
    4
    """
    cleaned = clean(text)
    # A text of listed common words (their counts are exact) and single ASCII characters is counted without the BPE
    # vocabulary: the bridge's own phrases are, so a one-prompt run never loads it for them.
    common = common_words()
    counts = [common.get(word) or (len(word) == 1 and word.isascii()) for word in pretokens(cleaned)]
    return sum(counts) if all(counts) else count_cleaned(cleaned)


def count_cleaned(cleaned: str) -> int:
    """How many tokens cleaned text takes (:func:`count_tokens` with no cleaning and no common-word shortcut).

    >>> count_cleaned("greg rutkowski")
    3
    """
    return sum(map(len, map(tokens_of, pretokens(cleaned))))


@cache
def common_words() -> dict[str, int]:
    """Frequent prompt words and their exact token counts (tools/common_words.py; a test checks every count)."""
    pairs = (line.rsplit(" ", 1) for line in COMMON_WORDS_PATH.read_text(encoding="utf-8").splitlines() if line)
    return {word: int(count) for word, count in pairs}
