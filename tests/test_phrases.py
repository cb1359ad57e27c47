"""Phrase-level editing: drops take their comma, BREAK survives, untouched phrases stay byte-identical."""

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rules.matching import PhraseSet
from bridge.rules.phrases import DROP, KEEP, containers, edit_phrases
from bridge.syntax import parse

WORDS = ["a castle", "8k", "(8k:1.2)", "((tall))", "sky", "by greg", "[fog]", "<lora:x:1>", "4k"]


def drop_where(prompt_text: str, doomed: set[str], nested: bool = False) -> str:
    prompt = parse(prompt_text)
    for container in (containers(prompt) if nested else [c.children for c in prompt.clauses]):
        edit_phrases(container, lambda p: DROP if p.text in doomed else KEEP)
    return str(prompt)


@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8), st.sets(st.sampled_from(WORDS)),
       st.sampled_from([", ", ",", " , "]))
@settings(max_examples=300, deadline=None)
def test_dropping_phrases_keeps_the_rest_in_order_with_clean_commas(words, doomed, sep):
    out = drop_where(sep.join(words), doomed)
    kept = [w for w in words if w not in doomed]
    assert [p.strip() for p in out.split(",") if p.strip()] == kept
    assert not out.strip().startswith(",") and not out.strip().endswith(",")
    assert ",," not in out.replace(" ", "")


@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), st.sets(st.sampled_from(WORDS)))
@settings(max_examples=200, deadline=None)
def test_break_is_never_dropped_and_stays_a_word(words, doomed):
    text = " BREAK ".join(words)
    out = drop_where(text, doomed)
    assert out.split().count("BREAK") == len(words) - 1
    assert parse(out).features() >= ({"break"} if len(words) > 1 else set())


def test_untouched_prompt_is_not_rebuilt():
    text = "a  castle ,(tall:1.2),, [fog]"
    assert drop_where(text, set()) == text


def test_dropping_inside_brackets():
    assert drop_where("a castle, (tall, 8k), sky", {"8k"}, nested=True) == "a castle, (tall), sky"
    assert drop_where("8k, 4k, a cat", {"8k", "4k"}) == "a cat"
    assert drop_where("a cat, 8k, 4k", {"8k", "4k"}) == "a cat"


def _reference_find(phrases: list[str], text: str) -> list[str]:
    """Left to right over every word, the longest phrase starting there, matches not overlapping."""
    table = {tuple(PhraseSet.words(p)): p for p in reversed(phrases) if PhraseSet.words(p)}
    words, found, i = PhraseSet.words(text), [], 0
    while i < len(words):
        for n in sorted({len(k) for k in table}, reverse=True):
            if tuple(words[i:i + n]) in table:
                found.append(table[tuple(words[i:i + n])])
                i += n
                break
        else:
            i += 1
    return found


vocabulary = st.sampled_from(["a", "b", "c", "photo", "3d", "render", "b&w", ",", "the"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(vocabulary, min_size=1, max_size=3).map(" ".join), max_size=6),
       st.lists(vocabulary, max_size=30).map(" ".join))
def test_phrase_set_finds_what_a_word_by_word_scan_finds(phrases, text):
    phrase_set = PhraseSet(phrases)
    expected = _reference_find(phrases, text)
    assert phrase_set.find(text) == expected
    words = PhraseSet.words(text)
    assert phrase_set.find(words) == expected and phrase_set.find(list(words)) == expected
    assert phrase_set.search(words) == (expected[0] if expected else None)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aB \t\n\u00a0\u2003\u3000\x1c\x85,")), max_size=20))
def test_normalize_collapses_whitespace_as_the_regex_did(text):
    import re

    from bridge.rules.matching import normalize

    assert normalize(text) == re.sub(r"\s+", " ", text).strip().lower()
