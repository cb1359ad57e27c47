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


# --------------------------------------------------------------------------------------------------------------------
# Malformed knowledge files: one KnowledgeError naming the file, the entry and the key, never a traceback


MALFORMED = [
    ('rule = "magic.8k"', r"'rule' must be a list of \[\[rule\]\] tables, got 'magic.8k'"),
    ('rule = ["magic.8k"]', r"rule #1 must be a table \(\[\[rule\]\] with its keys\), got 'magic.8k'"),
    ('[rule]\nid = "x"', r"'rule' must be a list of \[\[rule\]\] tables \(write \[\[rule\]\], not \[rule\]\)"),
    ("rule = 5", r"'rule' must be a list of \[\[rule\]\] tables, got 5"),
    ("artist = [1, 2]", r"artist #1 must be a table"),
    ('negative = "photo"', r"'negative' must be a list of \[\[negative\]\] tables"),
    ("meta = 3", r"\[meta\] must be a table"),
    ("[meta]\ninclude = 5", r"meta.include must be a list of file names \(relative to this file\), got 5"),
    ('[meta]\ninclude = "knowledge/media.toml"', r"meta.include must be a list of file names"),
    ("[meta]\ninclude = [[1]]", r"meta.include must be a list of file names"),
    ('media = ["photo"]', r"\[media\] must be a table \(family = \[words, ...\]\), got \['photo'\]"),
    ("asked_as = 1", r"\[asked_as\] must be a table"),
    ("[rules]\nid = 1", r"unknown key 'rules'; a knowledge file holds meta, rule, artist"),
    ('[[rule]]\nid = "x"\nkind = ["phrase"]', r"rule #1 \(x\): kind \['phrase'\] is not one of phrase, "),
    ('[[rule]]\nid = "x"\nkind = "tokens"\nreason = 5', r"rule #1 \(x\): 'reason' must be a string, got 5"),
    ('[[rule]]\nid = "x"\nkind = "tokens"\nfact = ["F"]', r"rule #1 \(x\): 'fact' must be a string"),
    ('[[rule]]\nid = 7', r"rule #1: 'id' must be a non-empty str, got 7"),
    ('[[rule]]\nid = "s"\nkind = "size"\nmultiple = 0', r"rule #1 \(s\): 'multiple' must be a whole number from 1"),
    ('[[rule]]\nid = "s"\nkind = "size"\nbuckets = [[99999, 512]]', r"rule #1 \(s\): 'buckets' sides must be at most 8192"),
    ('[[rule]]\nid = "e"\nkind = "emphasis"\nkeep_outside = [3, 0]', r"rule #1 \(e\): 'keep_outside' must be two finite weights"),
    ('[[rule]]\nid = "e"\nkind = "emphasis"\nkeep_outside = [0, inf]', r"rule #1 \(e\): 'keep_outside' must be two finite"),
    ('[[rule]]\nid = "a"\nkind = "artist"\nstyle_budget = -1', r"rule #1 \(a\): 'style_budget' must be 0 or more"),
    ('[[rule]]\nid = "w"\nkind = "weak-concept"\npatterns = ["(("]', r"rule #1 \(w\): 'patterns' holds '\(\(', not a regular "),
    ('[[artist]]\nname = "x"\naction = "keep"\naliases = "abc"', r"artist #1 \(x\): 'aliases' must be a list of "),
    ('[[artist]]\nname = "x"\naction = "keep"\naliases = [1]', r"artist #1 \(x\): 'aliases' must be a list of "),
    ('[[artist]]\nname = "x"\naction = "keep"\ncount = 1e400', r"artist #1 \(x\): 'count' must be a whole number"),
    ('[[artist]]\nname = "x"\naction = "keep"\ncount = "many"', r"artist #1 \(x\): 'count' must be a whole number, got 'many'"),
    ('[[artist]]\nname = "x"\naction = "keep"\ndescription = 3', r"artist #1 \(x\): 'description' must be a string, got 3"),
    ('[[artist]]\nname = "x"\naction = "keep"\nmedia = "oil"', r"artist #1 \(x\): unknown key 'media' \(valid keys: name, action"),
    ('[[artist]]\nname = "x"\naction = ["keep"]', r"artist #1 \(x\): action must be one of keep, replace"),
    ('[[negative]]\nkind = "x"\nprompt = "y"\ndetect = [1]', r"negative #1 \(x\): 'detect' must be a list of "),
    ('[[negative]]\nkind = "x"\nprompt = "y"\ndetect = "photo"', r"negative #1 \(x\): 'detect' must be a list of phrases, got 'photo'"),
    ('[[negative]]\nkind = "x"\nprompt = "y"\nreason = 1', r"negative #1 \(x\): 'reason' must be a string"),
    ('[[negative]]\nkind = "x"\nprompt = 2', r"negative #1 \(x\): 'prompt' must be a non-empty str, got 2"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_a_malformed_knowledge_file_is_one_error_naming_file_entry_and_key(tmp_path, text, message):
    from bridge.rules import KnowledgeError

    bad = tmp_path / "bad.toml"
    bad.write_text(text + "\n")
    with pytest.raises(KnowledgeError, match=r"bad\.toml: " + message):
        translate("a castle", knowledge=bad)


def test_every_shipped_weak_concept_pattern_compiles():
    """The loader compiles the patterns of a user's file as it loads, and the shipped files' patterns on first use
    (start-up): this is where a bad shipped pattern is caught."""
    import re

    patterns = [p for path in sorted(RULES_DIR.glob("*.toml"))
                for rule in KnowledgeBase.load(path).rules.values() if rule.kind == "weak-concept"
                for p in rule.params.patterns]
    assert len(patterns) >= 20
    for pattern in patterns:
        re.compile(pattern)


def test_a_shipped_pattern_is_compiled_on_first_use_and_a_bad_one_is_a_knowledge_error_then():
    from bridge.rules import KnowledgeError
    from bridge.rules.matching import case_blind

    good = case_blind(r"\bsigns?\s+(?:that\s+)?says\b")
    assert good.search("a lamp") is None and good.search("a sign that says hi").group(0) == "sign that says"
    bad = case_blind("says (?<=a+)x")  # a shipped file edited in place (a lookbehind of no fixed width)
    assert bad.search("a lamp", set()) is None  # its literal is absent: nothing compiled, nothing raised
    with pytest.raises(KnowledgeError, match=r"weak-concept pattern 'says \(\?<=a\+\)x' is not a regular exp"):
        bad.search("it says x")


def test_a_bad_pattern_in_a_user_file_is_an_error_as_it_loads_beside_the_shipped_file(tmp_path):
    from bridge.rules import KnowledgeError

    user = tmp_path / "mine.toml"
    user.write_text('[[rule]]\nid = "w"\nkind = "weak-concept"\npatterns = ["ok", "[a-"]\n')
    with pytest.raises(KnowledgeError, match=r"mine\.toml: rule #1 \(w\): 'patterns' holds '\[a-', not a regular"):
        KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml", user=user)


def test_a_long_value_is_cut_in_the_message(tmp_path):
    from bridge.rules import KnowledgeError

    bad = tmp_path / "bad.toml"
    bad.write_text(f'rule = "{"x" * 10_000}"\n')
    with pytest.raises(KnowledgeError) as error:
        translate("a castle", knowledge=bad)
    assert len(str(error.value)) < 200 and "…" in str(error.value)


@pytest.mark.parametrize("files", [
    {"a.toml": '[meta]\ninclude = ["a.toml"]'},  # itself: was a RecursionError
    {"a.toml": '[meta]\ninclude = ["./a.toml"]'},
    {"a.toml": '[meta]\ninclude = ["b.toml"]', "b.toml": '[meta]\ninclude = ["a.toml"]'},
    {"a.toml": '[meta]\ninclude = ["b.toml"]', "b.toml": '[meta]\ninclude = ["sub/c.toml"]',
     "sub/c.toml": '[meta]\ninclude = ["../b.toml"]'},
])
def test_an_include_cycle_is_an_error_that_shows_the_cycle(tmp_path, files):
    from bridge.rules import KnowledgeError

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    with pytest.raises(KnowledgeError, match=r"[ab]\.toml: include cycle \([ab]\.toml -> .*[ab]\.toml\)"):
        KnowledgeBase.load(tmp_path / "a.toml")


def test_an_include_cycle_through_a_link_is_found(tmp_path):
    from bridge.rules import KnowledgeError

    (tmp_path / "a.toml").write_text('[meta]\ninclude = ["link.toml"]\n')
    (tmp_path / "link.toml").symlink_to(tmp_path / "a.toml")
    with pytest.raises(KnowledgeError, match="include cycle"):
        KnowledgeBase.load(tmp_path / "a.toml")


def test_includes_nested_too_deep_are_an_error_and_a_shared_include_is_not(tmp_path):
    from bridge.rules import KnowledgeError
    from bridge.rules.knowledge import MAX_INCLUDE_DEPTH

    for i in range(MAX_INCLUDE_DEPTH + 2):
        (tmp_path / f"f{i}.toml").write_text(f'[meta]\ninclude = ["f{i + 1}.toml"]\n')
    (tmp_path / f"f{MAX_INCLUDE_DEPTH + 2}.toml").write_text("")
    with pytest.raises(KnowledgeError, match=f"nested more than {MAX_INCLUDE_DEPTH} deep"):
        KnowledgeBase.load(tmp_path / "f0.toml")
    KnowledgeBase.load(tmp_path / "f3.toml")  # a shorter chain loads

    (tmp_path / "shared.toml").write_text('[[rule]]\nid = "magic.x"\nmatch = ["xyzzy"]\naction = "drop"\n')
    (tmp_path / "one.toml").write_text('[meta]\ninclude = ["shared.toml"]\n')
    (tmp_path / "top.toml").write_text('[meta]\ninclude = ["one.toml", "shared.toml"]\n')
    assert "magic.x" in KnowledgeBase.load(tmp_path / "top.toml").rules  # the same file twice is no cycle


def test_a_missing_include_names_the_file_that_includes_it(tmp_path):
    from bridge.rules.knowledge import KnowledgeFileError

    (tmp_path / "a.toml").write_text('[meta]\ninclude = ["gone.toml"]\n')
    with pytest.raises(KnowledgeFileError, match=r"not found: .*gone\.toml \(included by .*a\.toml\)"):
        KnowledgeBase.load(tmp_path / "a.toml")


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), IsADirectoryError(21, "Is a directory"),
                                   UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")])
def test_an_unreadable_knowledge_file_is_a_knowledge_file_error(tmp_path, monkeypatch, error):
    """(The tests run as root, where chmod 000 does not stop a read: the read itself is made to fail.)"""
    from bridge.rules import knowledge
    from bridge.rules.knowledge import KnowledgeFileError

    def unreadable(path):
        raise error

    monkeypatch.setattr(knowledge, "read_toml", unreadable)
    with pytest.raises(KnowledgeFileError, match=r"cannot read knowledge file .*mine\.toml"):
        KnowledgeBase.load(tmp_path / "mine.toml")
