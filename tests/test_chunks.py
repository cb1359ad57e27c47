"""bridge.chunks: A1111's chunking and overflow warnings, each against a token-by-token reference; the fit check."""

import doctest
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bridge.chunks
from bridge.chunks import CHUNK_TOKENS, Chunk, chunk, overflows
from bridge.syntax import PromptSyntaxError, attention
from bridge.tokens import count_tokens, tokenize

SOUP = ("portrait of a knight, highly detailed, digital painting, artstation, concept art, smooth, sharp focus, "
        "illustration, art by greg rutkowski and alphonse mucha, 8k, octane render, unreal engine, "
        "trending on artstation, masterpiece, best quality, intricate, elegant, cinematic lighting, volumetric fog")


# --------------------------------------------------------------------------------------------------------------------
# Chunks


def test_comma_free_prompt_of_100_tokens_is_two_chunks():
    assert count_tokens("castle") == 1
    chunks = chunk("castle " * 100)
    assert [(c.tokens, c.start, c.ended_by) for c in chunks] == [(75, 0, "limit"), (25, 75, "end")]
    assert chunks[1].text == " ".join(["castle"] * 25)
    assert chunks[0].padding == 0 and chunks[1].padding == 50


def test_chunk_boundaries_at_exactly_75_tokens():
    assert [c.tokens for c in chunk("castle " * 75)] == [75]
    assert [c.tokens for c in chunk("castle " * 76)] == [75, 1]
    assert [c.tokens for c in chunk("castle " * 150)] == [75, 75]


def test_empty_text_is_one_empty_chunk():
    assert chunk("") == [Chunk(0, "", (), 0, "end")]


def test_break_starts_a_new_chunk():
    chunks = chunk("a castle on a hill BREAK a river")
    assert [(c.tokens, c.text, c.ended_by) for c in chunks] == [(5, "a castle on a hill", "break"), (2, "a river", "end")]
    assert [c.tokens for c in chunk("castle " * 74 + "BREAK castle")] == [74, 1]
    assert [c.tokens for c in chunk("BREAK a")] == [0, 1]  # A1111 pads an empty first chunk
    assert [c.tokens for c in chunk("a BREAK BREAK b")] == [1, 0, 1]
    assert [c.tokens for c in chunk("a BREAK")] == [1]  # nothing after the last BREAK: no extra chunk


def test_break_inside_brackets_is_weighted_text():
    (only,) = chunk("(a BREAK b)")
    assert only.tokens == 3 and only.text == "a break b"
    assert only.weights == (1.1, -1.1, 1.1)  # A1111 multiplies BREAK's -1 like any text


def test_comma_backtracking_moves_the_tail_after_a_recent_comma():
    chunks = chunk("castle " * 69 + "castle, " + "river " * 10)
    assert [(c.tokens, c.ended_by) for c in chunks] == [(71, "comma"), (10, "end")]
    assert chunks[0].text.endswith("castle,") and chunks[1].text == " ".join(["river"] * 10)


def test_comma_backtracking_reaches_back_20_tokens_and_no_further():
    at_20 = chunk("castle " * 55 + ", " + "river " * 30)  # the comma is token 56 of 75: 75 - 55 = 20
    assert [c.tokens for c in at_20] == [56, 30]
    at_21 = chunk("castle " * 54 + ", " + "river " * 30)
    assert [c.tokens for c in at_21] == [75, 10]
    assert [c.tokens for c in chunk("castle " * 70 + ", " + "river " * 10, comma_backtrack=0)] == [75, 6]


def test_comma_arriving_at_a_full_chunk_is_not_remembered():
    # A1111 resets its last comma when the comma itself opens a new chunk, so the next fill does not backtrack.
    chunks = chunk("castle " * 75 + ", " + "river " * 80)
    assert [(c.tokens, c.ended_by) for c in chunks] == [(75, "limit"), (75, "limit"), (6, "end")]


def test_chunks_keep_weights_and_tokenize_each_weighted_piece_separately():
    (only,) = chunk("A castle, (highly detailed:1.2), 8k &amp; more")
    assert only.text == "a castle, highly detailed, 8k & more"
    assert only.weights == (1.0, 1.0, 1.0, 1.2, 1.2, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert count_tokens("castles") == 1
    assert chunk("castle(s)")[0].tokens == 2  # A1111 tokenizes "castle" and "s" apart


def test_malformed_weight_raises_like_a1111():
    with pytest.raises(PromptSyntaxError):
        chunk("a (castle:1.2.3)")
    with pytest.raises(PromptSyntaxError):
        overflows("a (castle:1.2.3)")


words = st.sampled_from(["castle", "highly detailed", "rutkowski", ",", "BREAK", "(sharp focus:1.3)", "[fog]", "8k"])


@settings(max_examples=200, deadline=None)
@given(st.lists(words, max_size=150))
def test_chunks_hold_every_token_once_and_in_order(parts):
    text = " ".join(parts)
    chunks = chunk(text)
    expected = sum(count_tokens(piece) for piece, weight in attention(text) if not (piece == "BREAK" and weight == -1))
    assert sum(c.tokens for c in chunks) == expected
    assert all(0 <= c.tokens <= CHUNK_TOKENS and len(c.weights) == c.tokens for c in chunks)
    assert [c.start for c in chunks] == [sum(c.tokens for c in chunks[:i]) for i in range(len(chunks))]
    assert all(c.ended_by != "end" for c in chunks[:-1]) and chunks[-1].ended_by in ("end", "break")


# --------------------------------------------------------------------------------------------------------------------
# Warnings


def test_no_overflow_warnings_for_prompts_that_fit():
    assert 60 < count_tokens(SOUP) < CHUNK_TOKENS
    assert overflows("") == []
    assert overflows("a castle on a hill, highly detailed, 8k") == []
    assert overflows("castle " * 75) == []
    assert overflows(SOUP + " BREAK " + SOUP) == []  # each part under 75 tokens: BREAK splits on purpose
    assert overflows("castle " * 74 + "<lora:a_very_long_network_name_indeed:0.8>") == []  # tags take no tokens


def test_overflow_warning_for_a_long_soup_names_the_split():
    prompt = SOUP + ", " + SOUP
    total = count_tokens(prompt)
    (warning,) = overflows(prompt)
    first = chunk(prompt)[0].tokens
    assert warning.startswith(f"tokens {first + 1}-{total} ({total - first}) spill into chunk 2 of 2 after '…")
    assert "put BREAK" in warning
    assert chunk(prompt)[0].ended_by == "comma" and warning.split("after '")[1].split("'")[0].endswith(",")


def test_overflow_warnings_per_and_part_and_per_step():
    (warning,) = overflows("a castle AND " + "river " * 80)
    assert warning.startswith("AND part 2: tokens 76-80 (5) spill into chunk 2 of 2")
    (warning,) = overflows("[" + "river " * 80 + ":a castle:0.5]")
    assert warning.startswith("from step 1: tokens 76-80")
    assert len(overflows("river " * 200)) == 2  # 75 + 75 + 50: two splits, two warnings


def test_module_examples_pass():
    result = doctest.testmod(bridge.chunks)
    assert result.attempted >= 8 and result.failed == 0


def test_fit_check_agrees_with_chunking(real_prompts):
    from bridge.chunks import _fits

    def fits_by_chunks(prompt: str) -> bool:
        return all(c.ended_by in ("end", "break") for c in chunk(prompt))

    assert [_fits(p) for p in real_prompts[:3000]] == [fits_by_chunks(p) for p in real_prompts[:3000]]


# --------------------------------------------------------------------------------------------------------------------
# The chunker against a token-by-token reference (A1111's loop in sd_hijack_clip.tokenize_line, written plainly)


def _reference_chunks(text: str, comma_backtrack: int = 20) -> list[tuple]:
    from bridge.tokens import clean, decode, pretokens, tokens_of

    def piece_tokens(piece: str) -> list[tuple[str, bool]]:
        cleaned, pos, out = clean(piece), 0, []
        for word in pretokens(cleaned):
            start = cleaned.index(word, pos)
            gap = " " in cleaned[pos:start]
            pos = start + len(word)
            for symbols in tokens_of(word):
                out.append((symbols, gap))
                gap = False
        return out

    def decoded(tokens: list) -> str:
        text = "".join((" " if gap and i else "") + sym.removesuffix("</w>") for i, (sym, _, gap) in enumerate(tokens))
        return decode(text)

    chunks, current, last_comma, start = [], [], -1, 0

    def close(ended_by: str) -> None:
        nonlocal last_comma, start
        chunks.append((len(current), decoded(current), tuple(w for _, w, _ in current), start, ended_by))
        start += len(current)
        current.clear()
        last_comma = -1

    gap = False
    for piece, weight in attention(text):
        if piece == "BREAK" and weight == -1:
            close("break")
            continue
        tokens = [(sym, weight, spaced) for sym, spaced in piece_tokens(piece)]
        if tokens and (gap or piece[:1].isspace() or piece == "BREAK"):
            tokens[0] = (tokens[0][0], weight, True)
        for token in tokens:
            if token[0] == ",</w>":
                last_comma = len(current)
            elif (comma_backtrack and len(current) == CHUNK_TOKENS and last_comma != -1
                  and len(current) - last_comma <= comma_backtrack):
                moved = current[last_comma + 1:]
                del current[last_comma + 1:]
                close("comma")
                current.extend(moved)
            if len(current) == CHUNK_TOKENS:
                close("limit")
            current.append(token)
        gap = piece[-1:].isspace() or piece == "BREAK"
    if current or not chunks:
        close("end")
    return chunks


def _as_tuples(chunks: list[Chunk]) -> list[tuple]:
    return [(c.tokens, c.text, c.weights, c.start, c.ended_by) for c in chunks]


chunk_parts = st.sampled_from(["castle", "highly detailed", "rutkowski", ",", ", ", "BREAK", "(sharp focus:1.3)",
                               "[fog]", "8k", "café", "(a, b)", "  ", "word,word", "AND", "(BREAK)"])


@settings(max_examples=300, deadline=None)
@given(st.lists(chunk_parts, max_size=200), st.sampled_from([20, 0, 3, 75]))
def test_chunker_matches_the_token_by_token_reference(parts, backtrack):
    text = " ".join(parts)
    assert _as_tuples(chunk(text, comma_backtrack=backtrack)) == _reference_chunks(text, backtrack)


def test_chunker_matches_the_reference_on_real_prompts(real_prompts):
    long = [p for p in real_prompts if count_tokens(p) > 60][:400]
    assert len(long) > 100
    for prompt in long:
        assert _as_tuples(chunk(prompt)) == _reference_chunks(prompt), prompt


@settings(max_examples=100, deadline=None)
@given(st.lists(chunk_parts, max_size=200), st.sampled_from([20, 0, 3, 75]))
def test_chunker_takes_any_kind_of_token(parts, backtrack):
    """chunk_spans is the one chunker: chunk() runs it over BPE strings, the renderer over its tokenizer's ids
    (tests/test_render.py on the tiny pipeline). Spans depend only on where the commas are, not on the token type."""
    from bridge.chunks import COMMA, _runs, chunk_spans

    runs = _runs(" ".join(parts)).symbols
    ids: dict[str, int] = {COMMA: 267}
    as_ids = [[ids.setdefault(t, 1000 + len(ids)) for t in run] for run in runs]
    assert (chunk_spans(as_ids, 267, comma_backtrack=backtrack)
            == chunk_spans(runs, COMMA, comma_backtrack=backtrack))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["castle", ",", ", ", " ", "8k", "it's", "!", "_", "é", "&amp;", "“", "ﬁ", "²",
                                 "BREAK", "(a, b:1.2)", ",,", "., ", "x_,", "<start_of_text>"]), max_size=40)
       .map("".join))
def test_counting_phrase_by_phrase_gives_the_whole_count(text):
    from bridge.chunks import _piece_count

    for piece, weight in attention(text):
        if not (piece == "BREAK" and weight == -1):
            assert _piece_count(piece) == len(tokenize(piece)), piece


def test_counting_phrase_by_phrase_on_real_prompts(real_prompts):
    from bridge.chunks import _piece_count

    assert [_piece_count(p) for p in real_prompts] == [count_tokens(p) for p in real_prompts]


def _reference_overflows(prompt: str) -> list[str]:
    """The warnings built from whole chunks (chunk() is checked against the token-by-token reference above)."""
    from bridge.chunks import CONTEXT_WORDS
    from bridge.syntax import parse

    parsed = parse(prompt)
    scheduled = bool({"editing", "alternation"} & parsed.features())
    messages = []
    for number, clause in enumerate(parsed.clauses, 1):
        where = f"AND part {number}: " if len(parsed.clauses) > 1 else ""
        first_step: dict[str, int] = {}
        for step in range(1, 21) if scheduled else (1,):
            first_step.setdefault(clause.text_at(step, 20), step)
        for text, step in first_step.items():
            chunks = chunk(text)
            when = f"from step {step}: " if len(first_step) > 1 else ""
            for k, (before, after) in enumerate(itertools.pairwise(chunks), 2):
                if before.ended_by not in ("limit", "comma"):
                    continue
                tail, head = before.text.split(), after.text.split()
                quoted_tail = ("…" if len(tail) > CONTEXT_WORDS else "") + " ".join(tail[-CONTEXT_WORDS:])
                quoted_head = " ".join(head[:CONTEXT_WORDS]) + ("…" if len(head) > CONTEXT_WORDS else "")
                message = (where + when + f"tokens {after.start + 1}-{after.start + after.tokens} ({after.tokens}) "
                           f"spill into chunk {k} of {len(chunks)} after '{quoted_tail}' at '{quoted_head}'; SD2 "
                           f"encodes each {CHUNK_TOKENS}-token chunk separately: shorten the prompt or put BREAK "
                           "where a new idea starts")
                if message not in messages:
                    messages.append(message)
    return messages


long_words = st.sampled_from(["castle", "supercalifragilisticexpialidocious", "café", "日本語のテキスト", "8k", ",",
                              ", ", " ", "(sharp focus:1.3)", "[fog]", "BREAK", "x", "——", "ﬁnal", "AND", "a,b",
                              "(red)dress", "[day:night:5]"])


@settings(max_examples=300, deadline=None)
@given(st.lists(long_words, min_size=20, max_size=220).map(" ".join))
def test_overflow_warnings_quote_the_words_whole_chunks_show(prompt):
    assert overflows(prompt) == _reference_overflows(prompt)


def test_overflow_warnings_on_real_prompts_quote_the_words_whole_chunks_show(real_prompts):
    long = [p for p in real_prompts if count_tokens(p) > 75]
    assert len(long) > 100
    assert [overflows(p) for p in long] == [_reference_overflows(p) for p in long]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ,_!é1.")), max_size=16))
def test_phrases_are_cut_only_where_counts_add_up(text):
    from bridge.chunks import _phrases
    from bridge.tokens import clean

    cleaned = clean(text)
    phrases = cleaned.split(", ")
    whole = len(phrases) > 1 and not all(p[-1:].isalnum() or p[-1:] == " " for p in phrases[:-1])
    assert _phrases(cleaned) == ([cleaned] if whole else phrases)


def test_long_words_phrases_and_texts_are_worked_out_but_not_remembered():
    """A pasted blob must not pin megabytes in the memories of a long-running process."""
    from bridge import chunks, tokens

    memoized = (tokens.tokens_of, chunks._phrase_count, chunks._phrase_bound, chunks._phrase_tokens,
                chunks._after_comma, chunks._spaced_tokens, chunks._overflows, chunks._piece_phrases,
                chunks._attention)
    for function in memoized:
        function.cache_clear()
    blob = "q" * 5_000
    assert count_tokens(blob) == len(tokenize(blob)) > 1000
    assert len(tokens.tokens_of.memo) == 0

    long_phrase = "word " * 130 + "end"  # 653 characters, short words
    prompt = "a castle, " + long_phrase + ", a hill, " + "x" * 200
    expected = _reference_chunks(prompt)
    assert [(c.tokens, c.text, c.weights, c.start, c.ended_by) for c in chunk(prompt)] == expected
    assert overflows(prompt) == _reference_overflows(prompt)
    kept = {function.__name__: set(function.memo) for function in memoized}
    assert long_phrase.strip() not in kept["_phrase_count"] | kept["_phrase_bound"] | kept["_phrase_tokens"]
    assert kept["_phrase_tokens"] == {"a castle", "a hill", "x" * 200}
    assert {key[0] for key in kept["_after_comma"]} == {"a hill", "x" * 200}

    huge = ", ".join(["a castle on a hill"] * 400)  # 7,998 characters
    remembered = len(chunks._overflows.memo), len(chunks._piece_phrases.memo), len(chunks._attention.memo)
    assert overflows(huge) == _reference_overflows(huge)
    assert (len(chunks._overflows.memo), len(chunks._piece_phrases.memo), len(chunks._attention.memo)) == remembered
