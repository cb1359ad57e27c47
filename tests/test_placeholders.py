"""Protected syntax through placeholders (bridge/learned/placeholders.py): exact round trip, the rules bridge's network
policy, and check() catching every way a model can break a placeholder."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.learned.placeholders import (
    MAX_SLOTS,
    PLACEHOLDER_PATTERN,
    TooManySlotsError,
    align,
    check,
    placeholder,
    protect,
    restore,
)
from bridge.load import load_translator
from bridge.syntax import parse, render, walk_text

SYNTAX = ["(castle:1.3)", "((masterpiece))", "[fog]", "[day:night:0.5]", "[cat|dog]", " BREAK ", " AND ", " :1.2",
          "<lora:detail:0.6>", "<hypernet:anime:1>", "\\(escaped\\)", "negative:", "{red|blue}", "a < b", "||", "<extra_id_4>", "(unclosed", "stray)",
          "[a:b:c:d]", "(nested (deep:1.1) text)", "easynegative", ":", "|", "\\"]
fragments = st.one_of(st.sampled_from(SYNTAX), st.text(alphabet="abc xyz,.:()[]|<>\\-_0123456789", max_size=12))
prompts = st.lists(fragments, max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(prompts)
def test_protect_restore_round_trips_with_kept_networks(prompt):
    protected = protect(prompt, networks="keep")
    assert restore(protected.text, protected) == prompt
    assert check(protected.text, protected) == []
    assert len(protected.slots) <= MAX_SLOTS


@settings(max_examples=200, deadline=None)
@given(prompts, st.data())
def test_check_finds_a_dropped_or_repeated_placeholder(prompt, data):
    protected = protect(prompt, networks="keep")
    if not protected.slots:
        return
    token = data.draw(st.sampled_from(list(protected.slots)))
    dropped = protected.text.replace(token, "", 1)
    assert any(token in p and "missing" in p for p in check(dropped, protected))
    repeated = protected.text + " " + token
    assert any(token in p and "2 times" in p for p in check(repeated, protected))


def test_what_is_protected_and_what_stays_translatable():
    p = protect("a (castle:1.3), ((tall)) BREAK [day:night:0.5] AND [cat|dog] :1.2")
    assert PLACEHOLDER_PATTERN.sub("_", p.text) == "a _castle_, _tall_ _ _ _ _"
    # neighbouring pieces share one placeholder: "((", and the alternation with the clause weight after it
    assert list(p.slots.values()) == ["(", ":1.3)", "((", "))", "BREAK", "[day:night:0.5]", "AND", "[cat|dog] :1.2"]


def test_what_t5_cannot_spell_is_protected_too():
    p = protect("a {red|blue} car, x > y, photo negative: inverted")
    assert list(p.slots.values()) == ["{red|blue}", ">", "negative:"]


def test_check_names_invented_and_reordered_placeholders():
    p = protect("a (castle:1.3)")
    assert check("a <extra_id_0>castle<extra_id_1>", p) == []
    assert check("a <extra_id_0>castle<extra_id_1> <extra_id_7>", p) == ["<extra_id_7> is invented (not in the input)"]
    assert check("a <extra_id_1>castle<extra_id_0>", p)[0].startswith("protected syntax is out of order")


def test_network_policy_is_the_rules_bridges():
    prompt = "a castle <lora:detail:0.6>, easynegative"
    rules = load_translator("rules").translate(prompt)
    removed = protect(prompt)
    assert "<lora" not in removed.text and "easynegative" not in removed.text
    assert removed.slots == {}
    assert removed.warnings and set(removed.warnings) <= set(rules.warnings)
    assert [c.before for c in removed.changes] == ["<lora:detail:0.6>", "easynegative"]

    kept = protect(prompt, networks="keep")
    assert list(kept.slots.values()) == ["<lora:detail:0.6>", "easynegative"]  # tag and embedding name protected
    assert any("kept <lora:detail:0.6>" in w for w in kept.warnings)

    mapped = protect(prompt, network_map={"detail": "detail-sd2"})
    assert list(mapped.slots.values()) == ["<lora:detail-sd2:0.6>"]
    assert restore(mapped.text, mapped).startswith("a castle <lora:detail-sd2:0.6>")


def test_negative_numbering_starts_after_the_prompt():
    p = protect("(a:1.2)")
    n = protect("(blurry:1.4)", label="negative prompt", start=len(p.slots))
    assert list(n.slots) == [placeholder(2), placeholder(3)]


def test_too_much_syntax_is_an_error_naming_the_limit():
    with pytest.raises(TooManySlotsError, match=f"at most {MAX_SLOTS}"):
        protect(", ".join(f"(w{i})" for i in range(MAX_SLOTS)))


def test_align_keeps_source_weights_and_rejects_targets_that_drop_syntax():
    p = protect("a (castle:1.3) on a hill BREAK sunset")
    assert align("a (stone castle:1.2) on a hill BREAK sunset, 4k", p) == \
        "a <extra_id_0>stone castle<extra_id_1> on a hill <extra_id_2> sunset, 4k"
    assert align("a stone castle on a hill BREAK sunset", p) is None
    assert align("a (castle:1.3) on a hill, sunset", p) is None
    # syntax only the target has stays literal text
    assert align("a (castle:1.3) on a [hill] BREAK sunset", p) == \
        "a <extra_id_0>castle<extra_id_1> on a [hill] <extra_id_2> sunset"


@settings(max_examples=300, deadline=None)
@given(prompts)
def test_the_walk_placeholders_read_is_the_rendered_prompt_in_order(prompt):
    for clause in parse(prompt).clauses:
        for step in (None, 1, 2):
            events = list(walk_text(clause.children, step=step))
            assert "".join(text for _, text, _ in events) == render(clause.children, step=step)
            depths = list(itertools.accumulate(edge for _, _, edge in events))
            assert all(d >= 0 for d in depths) and depths[-1:] in ([], [0])


def test_deep_nesting_is_protected_without_recursion():
    prompt = "(" * 10_000 + "castle" + ")" * 10_000 + " [day:" + "[" * 10_000 + "night" + "]" * 10_000 + ":0.5]"
    p = protect(prompt)
    assert p.text == "<extra_id_0>castle<extra_id_1> <extra_id_2>"
    assert p.slots["<extra_id_2>"] == prompt[prompt.index("[day:"):]  # prompt editing: whole, however deep
    assert restore(p.text, p) == prompt

