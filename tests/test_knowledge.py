"""The shipped SD1 -> SD2 knowledge: every rule in the files does what it says, and plain prompts are left alone."""

import csv
from pathlib import Path

import pytest

from bridge.load import translate
from bridge.rules import KnowledgeBase
from bridge.rules.knowledge import RULES_DIR

KB = KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml")
CORPORA = Path(__file__).resolve().parent.parent / "data" / "corpora"
MAGIC = [r for r in KB.rules.values() if r.kind == "phrase"]
ARTISTS = list(KB.artists.values())


def test_knowledge_sizes_and_citations():
    assert len(ARTISTS) >= 150
    assert {a.action for a in ARTISTS} == {"keep", "replace", "keep_and_describe"}
    assert len(MAGIC) >= 40
    assert {"photo", "painting", "anime", "default"} <= set(KB.negatives)
    notes = (RULES_DIR / "NOTES.md").read_text(encoding="utf-8")
    for rule in KB.rules.values():
        assert rule.fact and f"## {rule.fact}:" in notes, rule.id
        assert rule.reason.strip() or getattr(rule.params, "warning", ""), rule.id
    assert len({a.rule_id for a in ARTISTS}) == len(ARTISTS)


@pytest.mark.parametrize("rule", MAGIC, ids=lambda r: r.id)
def test_every_magic_word_rule_does_what_it_says(rule):
    phrase = rule.params.match[0]
    t = translate(f"a lighthouse on a cliff, {phrase}, at dusk", disable=["artist.*"])
    action = rule.params.action
    if action == "keep":
        assert t.prompt == f"a lighthouse on a cliff, {phrase}, at dusk"
    elif action == "drop":
        assert t.prompt == "a lighthouse on a cliff, at dusk"
        assert any(c.rule == rule.id and c.after == "" for c in t.changes)
    else:
        assert t.prompt == f"a lighthouse on a cliff, {rule.params.replacement}, at dusk"


@pytest.mark.parametrize("artist", ARTISTS, ids=lambda a: a.rule_id)
def test_every_artist_action(artist):
    t = translate(f"a lighthouse on a cliff, by {artist.name}")
    if artist.action == "keep":
        assert t.prompt == f"a lighthouse on a cliff, by {artist.name}"
        return
    style = next(c for c in t.changes if c.rule == "artists")
    items = style.after.split(", ")
    assert style.after and t.prompt.endswith(style.after)
    assert set(items) <= set(artist.facets())  # facets only, each at most once
    assert len(items) == len(set(items))
    assert (artist.name in t.prompt) == (artist.action == "keep_and_describe")
    assert any(c.rule == artist.rule_id and c.fact == artist.fact for c in t.changes)
    assert not t.prompt.rstrip().endswith((",", " by", " and"))


def test_the_classic_rutkowski_mucha_phrase_becomes_a_clean_sd2_phrase():
    t = translate("portrait of a sorceress, by greg rutkowski and alphonse mucha, highly detailed")
    assert "rutkowski" not in t.prompt
    style = next(c for c in t.changes if c.rule == "artists").after
    assert t.prompt == f"portrait of a sorceress, by alphonse mucha, {style}, highly detailed"
    rutkowski, mucha = KB.artists["greg rutkowski"], KB.artists["alphonse mucha"]
    assert rutkowski.style[0] in style and mucha.style[0] in style  # one phrase for both
    assert len([i for i in style.split(", ") if i in (rutkowski.medium, mucha.medium)]) == 1  # one medium


def test_artist_words_in_ordinary_phrases_are_not_artists():
    for prompt in ("a house by the sea", "a cabin by the lake and the mountains", "style of the 1920s"):
        assert translate(prompt).prompt == prompt


@pytest.mark.parametrize("prompt,kind", [
    ("a photo of an old fisherman, dslr", "photo"),
    ("an oil painting of a harbour at dawn", "painting"),
    ("anime girl with silver hair, pixiv", "anime"),
    ("a bowl of soup", "default"),
])
def test_default_negative_by_kind_of_image(prompt, kind):
    t = translate(prompt)
    assert any(c.rule == f"negative.{kind}" for c in t.changes)
    phrases = [p.strip() for p in t.negative_prompt.split(",")]
    assert len(phrases) == len(set(phrases)) > 3


def test_default_negative_leaves_out_what_the_prompt_asks_for():
    t = translate("a 3d render of a robot")
    assert "3d render" not in [p.strip() for p in t.negative_prompt.split(",")]


@pytest.mark.parametrize("prompt,left_out,without_the_request", [
    ("a black and white photo of a harbour, 35mm film", "b&w", "a photo of a harbour, 35mm film"),
    ("a monochrome photograph of a street", "b&w", "a photograph of a street"),
    ("pixel art castle on a hill", "lowres", "a castle on a hill"),
    ("a neon sign that says open, photo", "text", "a neon light, photo"),
    ("a photorealistic oil painting of a fox", "photo", "an oil painting of a fox"),
    ("close-up of an anime girl", "cropped", "an anime girl"),
])
def test_default_negative_leaves_out_what_the_prompt_asks_for_in_other_words(prompt, left_out, without_the_request):
    def negatives(text: str) -> list[str]:
        t = translate(text)
        assert any(c.rule.startswith("negative.") for c in t.changes)
        return [p.strip() for p in t.negative_prompt.split(",")]

    assert left_out not in negatives(prompt)
    assert left_out in negatives(without_the_request)


def test_every_asked_as_key_is_a_default_negative_phrase():
    """A key that names no phrase of any default negative would never do anything: a typo."""
    from bridge.rules.stages import phrase_key

    phrases = {phrase_key(p) for n in KB.negatives.values() for p in n.prompt.split(",") if p.strip()}
    assert KB.asked_as and set(KB.asked_as) <= phrases


def test_asked_as_in_a_user_file_replaces_a_key_and_is_checked(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[asked_as]\n"b&w" = ["sepia"]\n')
    assert "b&w" not in translate("a sepia photo of a harbour", knowledge=user).negative_prompt
    assert "b&w" in translate("a black and white photo of a harbour", knowledge=user).negative_prompt
    bad = tmp_path / "bad.toml"
    bad.write_text('[asked_as]\n"b&w" = "sepia"\n')
    from bridge.rules import KnowledgeError

    with pytest.raises(KnowledgeError, match="asked_as.'b&w' must be a list"):
        translate("a castle", knowledge=bad)


def _parti() -> list[str]:
    with (CORPORA / "parti_prompts.tsv").open(encoding="utf-8") as f:
        return [row["Prompt"] for row in csv.DictReader(f, delimiter="\t") if row["Prompt"].strip()]


def test_plain_descriptive_prompts_come_back_byte_identical():
    prompts = _parti()
    assert len(prompts) > 1500
    unchanged = sum(translate(p).prompt == p for p in prompts)
    assert unchanged / len(prompts) >= 0.99  # measured: 1630 of 1630


def test_no_op_still_gets_sd2_settings():
    t = translate("a red cube on top of a blue sphere")
    assert t.prompt == "a red cube on top of a blue sphere"
    assert t.negative_prompt and (t.recipe.width, t.recipe.height) == (768, 768)


def test_sd1_anime_tag_soup_from_fine_tunes_is_translated():
    t = translate("masterpiece, best quality, 1girl, solo, (silver hair:1.3), looking at viewer, <lora:style:0.7>",
                  negative_prompt="(worst quality, low quality:1.4), easynegative")
    assert t.prompt.startswith("1girl, solo, ")
    assert "(silver hair:1.3)" in t.prompt  # under the emphasis cap: as written
    assert any(c.rule == "negative.anime" for c in t.changes)
    assert "easynegative" not in t.negative_prompt


@pytest.mark.parametrize("prompt,rule", [
    ("portrait of Emma Watson as a knight", "weak.celebrity"),
    ("portrait of Beyoncé on stage", "weak.celebrity"),
    ('a shop sign that says "open"', "weak.text"),
    ("pen and ink drawing of a heron", "weak.black-and-white"),
])
def test_weak_concepts_warn_and_never_rewrite(prompt, rule):
    t = translate(prompt)
    assert t.prompt == prompt
    assert any(f"rule {rule}" in w for w in t.warnings)


def test_weak_concept_unless_and_no_false_alarm():
    assert not any("weak." in w for w in translate("colorful pen and ink drawing of a heron").warnings)
    assert not any("weak." in w for w in translate("a textured wall in context").warnings)


def test_weak_pattern_prefilter_never_changes_a_result():
    """Each pattern behind its own literal prefilter finds what one case-blind alternation of them all finds."""
    import json
    import re

    from bridge.rules.engine import build_plan
    from bridge.translation import TranslationOptions

    prompts = [json.loads(line)["prompt"].lower() for line in
               (CORPORA / "diffusiondb_prompts.jsonl").read_text(encoding="utf-8").splitlines()] + [
        p.lower() for p in _parti()] + [
        "a sign that says hello, a hand", "nude tones, a naked eye", "a nude statue", "charcoal grey", "charcoal drawing"]
    plan = build_plan(KB, TranslationOptions())
    weak = [w for w in plan.weak if w.patterns]
    assert weak
    present = [plan.literals.present(p) for p in prompts]
    for concept in weak:
        plain = re.compile("|".join(f"(?:{p})" for p in concept.rule.params.patterns), re.IGNORECASE)
        expected = [(m.start(), m.group(0)) if (m := plain.search(p)) else None for p in prompts]
        found = [(m.start(), m.group(0)) if (m := concept.search(p)) else None for p in prompts]
        assert found == expected, concept.rule.id
        found = [(m.start(), m.group(0)) if (m := concept.search(p, s)) else None for p, s in zip(prompts, present)]
        assert found == expected, concept.rule.id
        assert any(found), concept.rule.id  # the comparison saw matches, not only misses


def test_literal_finder_finds_exactly_the_literals_in_the_text():
    from bridge.memo import Memo
    from bridge.rules.matching import LiteralFinder

    literals = ["sign", "signboard", "text", "t-shirt", "'", "says", "é"]
    finder = LiteralFinder(literals)
    assert finder.in_words == ("says", "sign", "signboard", "text", "é") and finder.other == ("'", "t-shirt")
    texts = [p.lower() for p in _parti()[:300]] + ["a design on a t-shirt", "signboard's text", "café", ""]
    for text in texts + texts:  # the second round answers from the remembered words
        assert finder.present(text) == {x for x in literals if x in text}, text
    assert finder.present("a signboard") == {"sign", "signboard"}
    small = LiteralFinder(["cat"])
    small._held = Memo(2)
    assert [small.present(t) for t in ("a cat", "dog", "bird", "catfish")] == [{"cat"}, set(), set(), {"cat"}]
    assert len(small._held) <= 2


def test_remembered_phrases_translate_as_on_first_sight():
    """The phrase stage remembers plain phrases it left alone, and artist rewrites; a second pass over a corpus
    (answered from that memory) gives exactly what a translator that remembers nothing gives."""
    import json

    prompts = [json.loads(line)["prompt"] for line in
               (CORPORA / "diffusiondb_prompts.jsonl").read_text(encoding="utf-8").splitlines()][:400]
    from bridge.memo import Memo
    from bridge.rules import RulesTranslator
    from bridge.translation import TranslationOptions

    class Forgetful(Memo):
        def put(self, key: object, value: object) -> None:
            pass

    def outputs(translator: RulesTranslator) -> list[tuple]:
        return [(t.prompt, t.negative_prompt, t.changes, t.warnings) for t in map(translator.translate, prompts)]

    prompts = [p for p in (json.loads(line)["prompt"] for line in
               (CORPORA / "diffusiondb_prompts.jsonl").read_text(encoding="utf-8").splitlines()[:400]) if p.strip()]
    reference = RulesTranslator.for_models("sd15", "sd2")
    reference.plan(TranslationOptions()).unchanged_phrases = Forgetful(1)
    reference.plan(TranslationOptions()).artists._rewritten = Forgetful(1)
    expected = outputs(reference)
    remembering = RulesTranslator.for_models("sd15", "sd2")
    assert outputs(remembering) == expected
    assert len(remembering.plan(TranslationOptions()).unchanged_phrases) > 100
    assert len(remembering.plan(TranslationOptions()).artists._rewritten) > 10
    assert outputs(remembering) == expected  # now mostly from memory
    assert sum(bool(changes) for _, _, changes, _ in expected) > 100


def test_a_pasted_blob_is_translated_but_not_remembered():
    from bridge.memo import LONGEST_KEY
    from bridge.rules import RulesTranslator
    from bridge.rules.matching import normalize
    from bridge.translation import TranslationOptions

    translator = RulesTranslator.for_models("sd15", "sd2")
    blob = "lorem ipsum " * 200
    t = translator.translate(f"a castle, {blob}, greg rutkowski {blob}, 8k")
    assert blob.strip() in t.prompt and "8k" not in t.prompt
    plan = translator.plan(TranslationOptions())
    assert "a castle" in plan.unchanged_phrases
    assert all(len(text) <= LONGEST_KEY for text in plan.unchanged_phrases)
    assert all(len(text) <= LONGEST_KEY for text in plan.artists._rewritten)
    assert normalize("  A  " + blob.upper()) == "a " + " ".join(blob.split())
