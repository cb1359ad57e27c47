"""How the rules bridge composes its edits: one style phrase for all the artists of a prompt, no spill, phrases found
the way prompters write them, media that stay coherent, negatives from the user's words (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import translate
from bridge.chunks import chunk_count
from bridge.rules import KnowledgeBase, RulesTranslator
from bridge.rules.knowledge import RULES_DIR, KnowledgeError
from bridge.tokens import count_tokens
from bridge.translation import TranslationOptions

KB = KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml")
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpora" / "diffusiondb_prompts.jsonl"


def style_of(t) -> str:
    return next((c.after for c in t.changes if c.rule == "artists"), "")


def items(t) -> list[str]:
    return [i for i in style_of(t).split(", ") if i]


# ---- one style phrase

def test_several_artists_make_one_short_phrase_where_the_first_was():
    t = translate("a knight in a forest, by greg rutkowski and artgerm and wlop, highly detailed")
    style = style_of(t)
    assert t.prompt == f"a knight in a forest, {style}, highly detailed"
    assert count_tokens(style) <= 10  # the shipped budget
    media = [i for i in items(t) if i in {a.medium for a in KB.artists.values()}]
    assert len(media) <= 1
    assert len(items(t)) == len(set(items(t)))
    assert {c.rule for c in t.changes} >= {"artist.greg-rutkowski", "artist.artgerm", "artist.wlop", "artists"}


def test_no_medium_is_added_when_the_prompt_names_one():
    t = translate("an oil painting of a harbour, by greg rutkowski")
    assert "digital painting" not in t.prompt
    style = next(c for c in t.changes if c.rule == "artists")
    assert "digital painting" in style.reason and "own medium" in style.reason


def test_a_painter_gives_a_photo_no_brushwork():
    t = translate("photo of an old fisherman, by greg rutkowski")
    assert "brush" not in t.prompt and "painting" not in t.prompt


def test_people_features_only_for_prompts_with_people():
    mucha = KB.artists["alphonse mucha"]
    people = [f for f, kind in mucha.subject_features if kind == "people"]
    assert people
    landscape = translate("a valley with a river at dawn, by alphonse mucha", style_budget=40)
    portrait = translate("portrait of a queen, by alphonse mucha", style_budget=40)
    assert not any(f in landscape.prompt for f in people)
    assert any(f in portrait.prompt for f in people)


def test_the_users_own_light_colours_and_figures_win_over_the_artists():
    """An artist's light, palette and people features stay out of a prompt that already sets them (the
    ``own_light``, ``own_palette`` and ``own_figure`` word lists), and the explanation says why."""
    lights = {a.light for a in KB.artists.values() if a.light}
    palettes = {a.palette for a in KB.artists.values() if a.palette}
    people = {f for a in KB.artists.values() for f, kind in a.subject_features if kind == "people"}
    plain = translate("portrait of a queen, by alphonse mucha and greg rutkowski", style_budget=40)
    assert set(items(plain)) & lights and set(items(plain)) & palettes and set(items(plain)) & people
    own = translate("portrait of an old queen with a gaunt face at golden hour, by alphonse mucha and greg rutkowski",
                    style_budget=40)
    assert items(own) and not set(items(own)) & (lights | palettes | people)
    reason = style_of_change(own).reason
    assert "the prompt sets its own light ('golden hour')" in reason
    assert "the prompt names its own colours ('golden hour')" in reason
    assert "the prompt says how its people look ('old')" in reason


def test_a_style_of_another_genre_stays_out_of_a_prompt_in_its_own_genre():
    """Rutkowski's "epic fantasy" stays out of a science-fiction prompt, and is kept in a fantasy prompt and in a
    prompt in no listed genre ([genres] in knowledge/genres.toml)."""
    scifi = translate("a cyberpunk city street, by greg rutkowski")
    assert "epic fantasy" not in scifi.prompt and items(scifi)
    assert "'epic fantasy' (the prompt is science fiction, not fantasy)" in style_of_change(scifi).reason
    for prompt in ("a dragon over a castle, by greg rutkowski", "portrait of a woman, by greg rutkowski"):
        assert "epic fantasy" in items(translate(prompt))


def test_a_users_knowledge_file_adds_genres(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('[genres]\nwestern = ["cowboy", "saloon", "western"]\n', encoding="utf-8")
    kb = KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml", mine)
    assert kb.genres["western"] == ("cowboy", "saloon", "western") and "fantasy" in kb.genres
    bad = tmp_path / "bad.toml"
    bad.write_text('[genres]\nwestern = "cowboy"\n', encoding="utf-8")
    with pytest.raises(KnowledgeError, match="genres.western must be a list of non-empty phrases"):
        KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml", bad)


def test_one_subject_feature_at_most():
    features = {f for a in KB.artists.values() for f, _ in a.subject_features}
    for prompt in ("portrait of a queen, by alphonse mucha and artgerm and wlop",
                   "a woman in a valley at noon, by alphonse mucha and greg rutkowski and artgerm"):
        assert len(set(items(translate(prompt, style_budget=60))) & features) == 1


def style_of_change(t):
    return next(c for c in t.changes if c.rule == "artists")


def test_the_style_says_nothing_the_prompt_already_says():
    t = translate("a dragon, epic fantasy, by greg rutkowski")
    assert t.prompt.count("epic fantasy") == 1 and t.prompt.count("fantasy") == 1


def test_a_repeated_name_is_described_once():
    t = translate("a castle, by greg rutkowski, greg rutkowski")
    assert t.prompt == f"a castle, {style_of(t)}"


@pytest.mark.parametrize("budget", [0, 4, 10, 30])
def test_style_budget_caps_what_styles_add_and_explain_says_what_was_left_out(budget):
    t = translate("a castle, by greg rutkowski and artgerm and alphonse mucha", style_budget=budget)
    assert count_tokens(style_of(t)) <= budget
    if budget < 30:
        change = next(c for c in t.changes if c.rule == "artists")
        assert f"over the style budget of {budget} tokens" in change.reason
    assert "rutkowski" not in t.prompt and "alphonse mucha" in t.prompt  # keep_and_describe keeps the name


def test_style_budget_option_is_checked():
    with pytest.raises(ValueError, match="style_budget"):
        TranslationOptions(style_budget=-1)


def test_style_budget_comes_from_the_knowledge_file(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[[rule]]\nid = "artists"\nkind = "artist"\nreason = "mine"\nstyle_budget = 3\n')
    translator = RulesTranslator.for_models("sd15", "sd2", knowledge=user)
    t = translator.translate("a castle, by greg rutkowski")
    assert 0 < count_tokens(style_of(t)) <= 3


def test_an_older_knowledge_file_with_a_description_still_loads_as_style(tmp_path):
    user = tmp_path / "old.toml"
    user.write_text('[[artist]]\nname = "jane doe"\naction = "replace"\n'
                    'description = "pastel gouache, dreamy light"\n')
    kb = KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml", user=user)
    assert kb.artists["jane doe"].style == ("pastel gouache", "dreamy light")
    t = RulesTranslator(kb, "sd15", "sd2").translate("a cat, by jane doe")
    assert t.prompt.startswith("a cat, pastel gouache") and "jane doe" not in t.prompt


def test_an_artist_needs_facets_and_known_subjects(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[artist]]\nname = "x y"\naction = "replace"\n')
    with pytest.raises(KnowledgeError, match="needs facets"):
        KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml", user=bad)
    bad.write_text('[[artist]]\nname = "x y"\naction = "replace"\nstyle = ["a"]\n'
                   'subject_features = [{ phrase = "b", subject = "robots" }]\n')
    with pytest.raises(KnowledgeError, match="robots"):
        KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml", user=bad)


def test_describe_artists_candidates_still_have_descriptions():
    """Data building's rules variants add every facet of an artist (bridge/workflows/pairs.py)."""
    assert all(a.description for a in KB.artists.values() if a.action != "keep")
    assert KB.artists["greg rutkowski"].description.startswith(KB.artists["greg rutkowski"].medium)


# ---- never cause a spill

def test_the_bridge_never_makes_a_fitting_prompt_spill():
    words = ", ".join(["castle"] * 31)  # 62 tokens with the commas
    prompt = f"a castle, {words}, by greg rutkowski and artgerm"
    assert chunk_count(prompt) == 1
    t = translate(prompt, style_budget=30)
    assert chunk_count(t.prompt) == 1
    change = next(c for c in t.changes if c.rule == "artists")
    assert "split a prompt that fitted" in change.reason
    assert not any("75" in w for w in t.warnings)


def test_a_long_prompt_keeps_its_chunk_count():
    prompt = ", ".join(["castle"] * 60) + ", by greg rutkowski"
    t = translate(prompt, style_budget=40)
    assert chunk_count(t.prompt) <= chunk_count(prompt)


# ---- phrases as prompters write them

@pytest.mark.parametrize("prompt,expected_start", [
    ("oil painting by greg rutkowski", "oil painting, "),
    ("digital artwork by greg rutkowski", "digital artwork, "),
    ("line art by greg rutkowski", "line art, "),
    ("art by greg rutkowski", ""),
    ("a dark forest. art by greg rutkowski. 8 k.", "a dark forest. "),
    ("borderlands by greg rutkowski and wlop radiating a glowing aura", "borderlands radiating a glowing aura, "),
    ("a temple, in the style of greg rutkowski", "a temple, "),
    ("a temple, in style of greg rutkowski", "a temple, "),
    ("sharp high quality artwork in style of greg rutkowski, concept art", "sharp high quality artwork, "),
    ("a temple, greg rutkowski style", "a temple, "),
    ("a temple, by greg rutkowski, artgerm and wlop", "a temple, "),
    ("a temple + greg rutkowski + wlop", "a temple + "),
    ("a temple | greg rutkowski | 8k", "a temple | "),
    ("a temple, cinematic beeple", "a temple, cinematic, "),
])
def test_artists_are_found_where_prompters_write_them(prompt, expected_start):
    t = translate(prompt)
    style = style_of(t)
    assert style and style in t.prompt
    assert t.prompt.startswith(expected_start)
    for name in ("rutkowski", "wlop", "artgerm", "beeple"):
        assert name not in t.prompt
    assert "8 k" not in t.prompt


@pytest.mark.parametrize("prompt", [
    "a castle by greg rutkowski and",
    "moody, by by greg rutkowski, by jeremy mann",
    "painting by jeremy mann (and by greg rutkowski)",
    "a girl, in the style of and ilya kuvshinov",
    "alluring, in style of ilya kuvshinov, grunge",
    "josan gonzales and dan mumford, a city",
    "artwork of peter mohrbacher, a city",
    "( ilya kuvshinov ), ink drawing",
    "“ a mountain, by greg rutkowski ”",
    "a forest, paint by x and ( wlop ) and ( artgerm )",
])
def test_no_dangling_words_empty_phrases_or_doubled_separators(prompt):
    out = translate(prompt).prompt
    for phrase in (p.strip() for p in out.replace("(", " ").replace(")", " ").split(",")):
        words = phrase.split()
        assert not words or words[-1].lower() not in ("by", "and", "of", "in", "&")
        assert not words or words[0].lower() not in ("and", "&")
    assert ", ," not in out and ",," not in out.replace(" ", "") and "()" not in out.replace(" ", "")


def test_untouched_phrases_keep_their_separators_and_casing():
    prompt = "A Castle On A Hill;  Dramatic Sky | by greg rutkowski | Ornate Gate. 8K."
    t = translate(prompt)
    assert t.prompt.startswith("A Castle On A Hill;  Dramatic Sky | ")
    assert "| Ornate Gate" in t.prompt and "8K" not in t.prompt


@pytest.mark.parametrize(("prompt", "kept"), [
    ("a cat, by artgerm and mucha and disney pixar and boris vallejo", "by mucha and disney pixar and boris vallejo"),
    ("a cat, art by hsiao - ron cheng & artgerm & alphonse mucha", "art by hsiao - ron cheng & alphonse mucha"),
    ("a queen by gerald brom +artgerm +mark arian", "by gerald brom +mark arian"),
    ("a cat, by mucha, artgerm and rossdraws", "by mucha"),
])
def test_the_names_kept_stay_joined_as_the_user_wrote_them(prompt, kept):
    """Taking a name out of a list leaves the others with the user's own connectors: two names written side by
    side ("disney pixar") are not joined with an "and" the user never wrote."""
    assert kept in translate(prompt).prompt


def test_initials_abbreviations_and_decimals_do_not_cut_phrases():
    assert translate("by h.r. giger, a cat").prompt.startswith("by h.r. giger, ")
    for prompt in ("dr. seuss style cat", "a lens at f 1. 8 aperture", "st. george and the dragon"):
        assert translate(prompt).prompt == prompt


# ---- magic words

def test_magic_words_are_not_removed_from_inside_a_subject():
    assert translate("a 4k tv on a table").prompt == "a 4k tv on a table"


def test_a_replacement_that_the_prompt_already_says_is_dropped():
    t = translate("a robot, 3d render, octane render")
    assert t.prompt == "a robot, 3d render"
    t = translate("a cat, highly detailed photograph, hyper detailed")
    assert t.prompt == "a cat, highly detailed photograph"


# ---- media stay coherent

def test_a_render_tag_in_a_photo_or_a_painting_is_dropped_not_replaced():
    for prompt in ("photo of a woman, octane render", "oil painting of a ship, unreal engine"):
        t = translate(prompt)
        assert "3d render" not in t.prompt
        change = next(c for c in t.changes if c.rule.startswith("magic."))
        assert change.after == "" and "names a medium" in change.reason
    assert "3d render" in translate("a robot, octane render").prompt


# ---- negatives from the user's words

def test_the_negative_kind_comes_from_the_users_words_not_the_bridges(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[[rule]]\nid = "magic.zz"\nmatch = ["zz tag"]\naction = "replace"\n'
                    'replacement = "oil painting"\nreason = "test"\n')
    translator = RulesTranslator.for_models("sd15", "sd2", knowledge=user)
    t = translator.translate("a castle, zz tag")
    assert t.prompt == "a castle, oil painting"  # the bridge's own words name a painting...
    assert any(c.rule == "negative.default" for c in t.changes)  # ...the user's do not
    plain = translate("a castle, by greg rutkowski")  # the style's "digital painting" is the artist's medium
    assert any(c.rule == "negative.painting" for c in plain.changes)
    photo = translate("a photo of a castle, by greg rutkowski")
    assert any(c.rule == "negative.photo" for c in photo.changes)


def test_each_default_negative_phrase_left_out_is_a_change_with_its_reason():
    t = translate("a neon sign that says open")
    dropped = [c for c in t.changes if c.rule.startswith("negative.") and c.after == ""]
    assert any(c.before == "text" and "asks for it" in c.reason for c in dropped)
    assert "text" not in [p.strip() for p in t.negative_prompt.split(",")]


def test_the_merged_negative_never_spills():
    user = ", ".join(["blurry"] * 36)  # 71 tokens
    assert chunk_count(user) == 1
    t = translate("a castle", negative_prompt=user)
    assert chunk_count(t.negative_prompt) == 1 and t.negative_prompt.startswith(user)


# ---- coverage on real prompts

@pytest.fixture(scope="module")
def corpus_translations():
    prompts = [json.loads(line)["prompt"] for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    translator = RulesTranslator.for_models("sd15", "sd2")
    return [translator.translate(p) for p in prompts]


def test_nine_in_ten_prompts_that_name_a_replaced_artist_still_get_a_style(corpus_translations):
    replaced = {a.rule_id for a in KB.artists.values() if a.action == "replace"}
    naming = [t for t in corpus_translations if any(c.rule in replaced for c in t.changes)]
    styled = [t for t in naming if style_of(t)]
    assert len(naming) > 1000
    assert len(styled) >= 0.9 * len(naming)


def test_magic_word_edits_do_not_drop(corpus_translations):
    """6,070 magic-word edits on the corpus before issue 12 (measured at eb9d7ff): variants only add to them."""
    edits = sum(1 for t in corpus_translations for c in t.changes if c.rule.startswith("magic."))
    assert edits >= 6070


def test_no_spill_on_real_prompts(corpus_translations):
    spills = [t for t in corpus_translations if chunk_count(t.prompt) > chunk_count(t.original.prompt)]
    assert not spills, spills[0].prompt


@pytest.mark.parametrize(("prompt", "kept"), [
    # an unknown name and a known one with only a space between: the known one is found, the unknown one stays
    ("a girl, photorealistic painting by tran nguyen ilya kuvshinov and greg rutkowski", "painting by tran nguyen"),
    ("a knight, by tristan eaton stanley artgerm and tom bagshaw", "by tristan eaton"),
    ("a cat, art by lisa frank and jim lee character portrait artgerm and greg rutkowski", "jim lee character portrait"),
    # a surname alone after an unknown first name is one name: "jean baptiste monge" is not cut to "jean baptiste"
    ("a castle, by jean baptiste monge and greg rutkowski", "by jean baptiste monge"),
    # "and and": the list goes on past the doubled connector
    ("a warrior, in style of vincent di fate  and and greg rutkowski", "in style of vincent di fate"),
])
def test_names_written_side_by_side_are_told_apart(prompt, kept):
    out = translate(prompt).prompt
    assert kept in out
    for name in ("rutkowski", "artgerm", "kuvshinov", "bagshaw"):
        assert name not in out.lower()


@pytest.mark.parametrize("prompt", [
    "a girl, by Cédric Peyravernay",  # accents: the knowledge writes names without them
    "1girl, long_hair, by greg_rutkowski",  # underscores for spaces, as booru tags write them
    "a milkshake by _ greg rutkowski, 8k",  # "_" as a stray word
    "hoover dam'aircraft carrier tower'beeple, halo",  # a name right after a quote
])
def test_names_are_found_however_they_are_spelled_out(prompt):
    t = translate(prompt)
    assert any(c.rule.startswith("artist.") and c.after == "" for c in t.changes)
    for name in ("peyravernay", "rutkowski", "beeple"):
        assert name not in t.prompt.lower()
    assert " by _" not in t.prompt
    assert ("long_hair" in t.prompt) == ("long_hair" in prompt)  # other underscored tags stay as written


@pytest.mark.parametrize(("prompt", "expected"), [
    ("a girl. masterpiece .intricate artwork, cinematic", "a girl. intricate artwork, cinematic"),
    ("a girl, masterpiece .intricate artwork", "a girl, intricate artwork"),
    ("a girl,masterpiece,cinematic", "a girl,cinematic"),
])
def test_a_dropped_phrase_leaves_its_space_where_the_next_had_none(prompt, expected):
    assert translate(prompt).prompt == expected
