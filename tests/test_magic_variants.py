"""Magic words in other spellings: spacing, case, end punctuation, misspellings and version suffixes of a tag meet the
rule of its canonical form, and a form the bridge removes in one prompt never survives in another."""

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from bridge.load import load_translator
from bridge.rules import KnowledgeBase
from bridge.rules.knowledge import RULES_DIR
from bridge.rules.matching import variant_key
from bridge.translation import Translation

CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpora" / "diffusiondb_prompts.jsonl"


@pytest.fixture(scope="module")
def sd2():
    return load_translator("rules", source="sd15", target="sd2")


def rule_of(t: Translation, written: str) -> str | None:
    """The rule of the change made to the phrase written ``written``, or None if it was left alone."""
    rules = {c.rule for c in t.changes if c.before == written}
    assert len(rules) <= 1, rules
    return rules.pop() if rules else None


@pytest.mark.parametrize("variant,canonical", [
    ("8 k", "8k"),
    ("8K.", "8k"),
    ("8 K", "8k"),
    ("4K HD", "4k hd"),
    ("4k hd", "4k"),
    ("artstation hq.", "artstation hq"),
    ("ArtStation HQ", "artstation hq"),
    ("trending on artsation", "trending on artstation"),
    ("trending on art station", "trending on artstation"),
    ("unreal engine 5", "unreal engine"),
    ("Unreal Engine 5.", "unreal engine"),
    ("unreal 5", "unreal engine"),
    ("ue5", "unreal engine"),
    ("octane render 4k", "octane render"),
    ("octanerender", "octane render"),
    ("hyper-detailed", "hyper detailed"),
])
def test_a_variant_gets_the_rule_of_its_canonical_form(sd2, variant, canonical):
    canonical_rule = rule_of(sd2.translate(f"a lighthouse on a cliff, {canonical}, at dusk"), canonical)
    assert canonical_rule is not None and canonical_rule.startswith("magic.")
    t = sd2.translate(f"a lighthouse on a cliff, {variant}, at dusk")
    assert rule_of(t, variant) == canonical_rule
    assert variant not in t.prompt


@pytest.mark.parametrize("prompt,kept", [
    ("a 4k tv on a table", "4k tv"),
    ("a 4k tv, on a table", "4k tv"),
    ("a game engine, blueprint", "a game engine"),
    ("engine, steam locomotive", "engine"),
    ("a drawing of a cat, render", "render"),
])
def test_a_phrase_that_only_contains_a_tag_is_not_the_tag(sd2, prompt, kept):
    t = sd2.translate(prompt)
    assert kept in t.prompt
    assert not [c for c in t.changes if c.rule.startswith("magic.")]


# -- consistency over the corpus ----------------------------------------------------------------------------------

_OPEN, _CLOSE = "([{<", ")]}>"
_DELIMITERS = ",;!|+"


def delimited_phrases(prompt: str) -> list[str]:
    """The whole phrases of a prompt, stripped: text between `,` `.` `;` `!` `|` `+` and BREAK outside brackets.
    A backslash escapes the next character; a `.` inside a number ("f/1.8", DiffusionDB's "f 1. 8") delimits
    nothing."""
    phrases: list[str] = []
    current: list[str] = []
    depth = 0
    i, n = 0, len(prompt)
    while i < n:
        c = prompt[i]
        if c == "\\" and i + 1 < n:
            current.append(prompt[i:i + 2])
            i += 2
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(depth - 1, 0)
        elif depth == 0 and (c in _DELIMITERS or (c == "." and not _in_number(prompt, i))):
            phrases.append("".join(current))
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    phrases.append("".join(current))
    out: list[str] = []
    for phrase in phrases:
        out.extend(_split_break(phrase))
    return [p.strip() for p in out if p.strip()]


def _in_number(text: str, i: int) -> bool:
    after = text[i + 1:i + 3]
    return i > 0 and text[i - 1].isdigit() and (after[:1].isdigit() or (after[:1] == " " and after[1:2].isdigit()))


def _split_break(text: str) -> list[str]:
    """``BREAK`` as a word of its own (A1111 matches it in capitals) delimits phrases too."""
    words = text.split(" ")
    pieces: list[list[str]] = [[]]
    for word in words:
        if word.strip() == "BREAK":
            pieces.append([])
        else:
            pieces[-1].append(word)
    return [" ".join(p) for p in pieces]


def test_delimited_phrases():
    assert delimited_phrases("a castle. 8k; hd! (a, b) | c + d BREAK e, f/1.8, f 1. 8, [x|y]") == [
        "a castle", "8k", "hd", "(a, b)", "c", "d", "e", "f/1.8", "f 1. 8", "[x|y]"]
    assert delimited_phrases(r"a \(cat\), dog.") == [r"a \(cat\)", "dog"]


def comma_phrases(prompt: str) -> set[str]:
    """The phrases between commas and BREAK only (what the engine delimits today), stripped."""
    return {p.strip() for part in prompt.split(",") for p in _split_break(part) if p.strip()}


def test_no_form_removed_in_one_prompt_survives_in_another(sd2):
    """Collect every form (variant key) the bridge removes as a whole delimited phrase somewhere (in the original's
    phrases, some change's ``before`` is that phrase, and the translation holds fewer of it), leaving out artist
    rewrites and forms of `keep` rules;
    then no translation may still hold one of those forms as a whole delimited phrase.

    Each offender is labelled by how it survives: ``sentence`` (a whole phrase only when `.` `;` `!` `|` `+` delimit),
    ``split off`` (a whole comma phrase of the translation that was not one in the original: another stage, e.g. an
    artist rewrite, cut it loose after the magic words were looked up) or ``comma`` (a whole comma phrase in both: a
    spelling the knowledge does not list)."""
    kb = KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml")
    kept = {variant_key(m) for r in kb.rules.values() if r.kind == "phrase" and r.params.action == "keep"
            for m in r.params.match}
    prompts = [json.loads(line)["prompt"] for line in CORPUS.open(encoding="utf-8")]
    assert len(prompts) > 9000
    removed: dict[str, str] = {}  # form -> the rule that removed it (first seen)
    survivors: dict[str, list[tuple[str, str]]] = defaultdict(list)  # form -> (original, translation) holding it
    for prompt in prompts:
        t = sd2.translate(prompt)
        original = Counter(variant_key(p) for p in delimited_phrases(prompt))
        translated = Counter(variant_key(p) for p in delimited_phrases(t.prompt))
        for change in t.changes:
            if change.rule.startswith("artist.") or not change.before:
                continue
            form = variant_key(change.before)
            # removed from the prompt: fewer of it are left (a change to the negative prompt can name a phrase the
            # prompt also holds, "painting" left out of a default negative, and leaves the prompt's alone)
            if translated[form] < original[form] and form not in kept:
                removed.setdefault(form, change.rule)
        for form in translated:
            survivors[form].append((prompt, t.prompt))

    def how(form: str, original: str, translated: str) -> str:
        written = {p for p in comma_phrases(translated) if variant_key(p) == form}
        if not written:
            return "sentence"
        return "comma" if written & comma_phrases(original) else "split off"

    lines = []
    for form, rule in sorted(removed.items()):
        if form in survivors:
            kinds = Counter(how(form, *pair) for pair in survivors[form])
            example = survivors[form][0][1]
            lines.append(f"{form!r} (removed by {rule}) survives in {dict(kinds)}, e.g. {example[:150]!r}")
    assert not lines, f"{len(lines)} removed form(s) survive elsewhere:\n" + "\n".join(lines)
