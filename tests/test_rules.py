"""The rules engine and the translate() API on the shipped SD1 -> SD2 knowledge."""

import subprocess
import sys
import textwrap

import pytest

import bridge
from bridge.load import load_translator, translate
from bridge.recipe import Recipe
from bridge.rules import EmptyPromptError, KnowledgeBase, KnowledgeError, RulesTranslator, target_size
from bridge.rules.knowledge import RULES_DIR
from bridge.syntax import parse
from bridge.translation import Translation, TranslationOptions


def rules_of(t: Translation) -> list[str]:
    return [c.rule for c in t.changes]


def test_translate_returns_a_full_sd2_recipe_with_reasons():
    t = translate("a castle, by greg rutkowski, <lora:detail:0.6>, 8k")
    assert isinstance(t, Translation)
    assert (t.recipe.width, t.recipe.height) == (768, 768)
    assert t.negative_prompt.strip()
    assert "greg rutkowski" not in t.prompt.lower()
    assert "<lora:" not in t.prompt and "8k" not in t.prompt
    assert t.prompt.startswith("a castle, ")
    assert all(c.reason for c in t.changes)
    assert any("lora:detail" in w for w in t.warnings)
    assert t.recipe.model == "sd2"


def test_bridge_package_exposes_the_api():
    assert bridge.translate is translate
    assert bridge.load_translator is load_translator


@pytest.mark.parametrize("target,size", [("sd2", (768, 768)), ("sd21", (768, 768)), ("sd2-base", (512, 512)),
                                         ("sd21-base", (512, 512))])
def test_size_goes_to_the_native_area_of_each_target(target, size):
    t = translate("a red fox in the snow", target=target)
    assert (t.recipe.width, t.recipe.height) == size


def test_size_keeps_aspect_ratio_in_multiples_of_64():
    assert target_size(512, 768, 768) == (640, 960)
    assert target_size(768, 512, 768) == (960, 640)
    assert target_size(512, 512, 512) == (512, 512)
    t = translate("a red fox", width=512, height=768)
    assert (t.recipe.width, t.recipe.height) == (640, 960)
    assert any(c.rule == "size" and c.before == "512x768" and c.after == "640x960" for c in t.changes)
    for w, h in [(512, 512), (640, 384), (1024, 256), (64, 64)]:
        nw, nh = target_size(w, h, 768)
        assert nw % 64 == 0 and nh % 64 == 0
        assert abs(nw / nh - w / h) / (w / h) < 0.2


def test_clip_skip_is_dropped_for_sd2():
    t = translate("a red fox", clip_skip=2)
    assert t.recipe.clip_skip is None
    assert "clip-skip" in rules_of(t)


def test_network_tags_removed_by_default_with_a_warning_naming_each():
    t = translate("a castle <lora:detail:0.6>, <hypernet:anime:1>, <lyco:x:0.5:0.5> sky")
    assert "<" not in t.prompt
    for name in ("lora:detail", "hypernet:anime", "lyco:x"):
        assert any(name in w for w in t.warnings)
        assert any(c.rule == "networks" and name in c.before and c.after == "" for c in t.changes)
    assert t.prompt == "a castle, sky"


def test_network_tags_kept_or_mapped():
    kept = translate("a castle, <lora:detail:0.6>", networks="keep")
    assert "<lora:detail:0.6>" in kept.prompt and any("detail" in w for w in kept.warnings)
    mapped = translate("a castle, <lora:detail:0.6:0.4>", network_map={"detail": "detail_sd2"})
    assert "<lora:detail_sd2:0.6:0.4>" in mapped.prompt
    assert any(c.before == "<lora:detail:0.6:0.4>" and c.after == "<lora:detail_sd2:0.6:0.4>" for c in mapped.changes)


def test_embeddings_known_and_from_the_users_folder():
    t = translate("a castle, my_style_v2", negative_prompt="easynegative, blurry", embeddings=["my_style_v2"])
    assert "my_style_v2" not in t.prompt and "easynegative" not in t.negative_prompt.lower()
    assert any("my_style_v2" in w for w in t.warnings) and any("easynegative" in w for w in t.warnings)
    kept = translate("a castle, my_style_v2", embeddings=["my_style_v2"], networks="keep")
    assert "my_style_v2" in kept.prompt


def test_break_and_and_clauses_are_kept():
    t = translate("a castle, 8k BREAK a river, trending on artstation AND a forest :0.8")
    assert t.prompt.count("BREAK") == 1 and " AND " in t.prompt and t.prompt.endswith(":0.8")
    assert parse(t.prompt).clauses[1].weight == 0.8


def test_dropping_around_break_keeps_it_a_word():
    t = translate("a castle BREAK 8k BREAK a river")
    assert t.prompt.split().count("BREAK") == 2


def test_negative_prompt_merged_without_duplicates():
    t = translate("a photo of a cat", negative_prompt="(ugly:1.3), blurry", disable=["emphasis"])
    phrases = [p.strip().lower() for p in t.negative_prompt.split(",")]
    assert phrases[0] == "(ugly:1.3)"
    assert "ugly" not in phrases  # already there with a weight
    assert len(phrases) == len(set(phrases))
    assert len(phrases) > 2


def test_untouched_text_stays_byte_identical():
    prompt = "A  Castle (on a hill:1.2), [day:night:0.5], [cat|dog]"
    t = translate(prompt, disable=["emphasis"])
    assert t.prompt == prompt
    assert translate("A  Castle on a hill, [day:night:0.5], [cat|dog] BREAK x AND y").prompt == (
        "A  Castle on a hill, [day:night:0.5], [cat|dog] BREAK x AND y")


@pytest.mark.parametrize("prompt,expected", [
    ("a (((((castle)))))", "a (castle:1.4)"),  # 1.1 ** 5 = 1.61: one explicit weight, at the cap
    ("a (castle:1.5)", "a (castle:1.4)"),
    ("a ((castle:1.5))", "a (castle:1.4)"),  # A1111 reads 1.65
    ("a (castle:2.9), fog", "a (castle:1.4), fog"),
    ("a ( ( ( ( ( castle on a hill ) ) ) ) ), fog", "a (castle on a hill:1.4), fog"),  # spaced, as often written
])
def test_emphasis_over_the_cap_comes_down_to_it(prompt, expected):
    t = translate(prompt)
    assert t.prompt == expected
    change = next(c for c in t.changes if c.rule == "emphasis")
    assert change.fact == "F-EMPHASIS" and "no published rule" in change.reason


@pytest.mark.parametrize("prompt", [
    "a ((castle))", "a (((castle)))", "a (castle:1.4)", "a (castle:1.35)", "a [[castle]]", "a ([castle])",
    "a (castle:0.3)", "a (castle:1)", "a ((castle), fog)",
])
def test_emphasis_at_or_under_the_cap_is_left_as_written(prompt):
    t = translate(prompt)
    assert t.prompt == prompt and not [c for c in t.changes if c.rule == "emphasis"]


def test_emphasis_keeps_the_attention_order_and_odd_weights():
    from bridge.syntax import attention

    t = translate("a ((((((castle)))))), [[fog]], (sky:1.3), (hill:1.8)")
    weights = {text.strip(", "): w for text, w in attention(t.prompt)}
    assert weights["castle"] == weights["hill"] == 1.4 and weights["sky"] == 1.3 and weights["fog"] < 1.0
    for odd in ("(x:-3)", "(x:0)", "(x:5)", "(a", "[a:b]", "a (x)", "a [x]", "a (x:1.05)", "(cows, and pigs)"):
        assert translate(odd).prompt == odd
    assert any("outside" in w for w in translate("(x:5)").warnings)


def test_emphasis_cap_comes_from_the_knowledge_file(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[[rule]]\nid = "emphasis"\nkind = "emphasis"\nfact = "F-EMPHASIS"\ncap = 1.2\n'
                    'reason = "strict"\n')
    assert translate("a (castle:1.4), ((hill)), (sky:1.2)", knowledge=user).prompt == (
        "a (castle:1.2), (hill:1.2), (sky:1.2)")


def test_hires_fix_keeps_the_final_size():
    t = translate(Recipe.from_infotext("a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, "
                                       "Denoising strength: 0.5, Hires upscale: 2, Hires upscaler: Latent"))
    assert (t.recipe.width, t.recipe.height) == (640, 960)
    assert t.recipe.extra["Hires upscale"] == "1.6"  # 1024x1536 final, as before
    assert t.recipe.extra["Denoising strength"] == "0.5"
    small = translate(Recipe.from_infotext("a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Size: 512x512, "
                                           "Denoising strength: 0.5, Hires upscale: 1.25"))
    assert "Hires upscale" not in small.recipe.extra and "Denoising strength" not in small.recipe.extra
    assert any(c.rule == "size.hires" for c in small.changes)


def test_source_model_detected_from_infotext():
    t = translate(Recipe.from_infotext("a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
                                       "Size: 512x512, Model hash: fe4efff1e1, Model: sd-v1-4"))
    assert t.source == "sd14" and any("sd14" in n for n in t.notes)
    assert "Model hash" not in t.recipe.extra
    other = translate(Recipe.from_infotext("a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                                           "Model: v2-1_768-ema-pruned"))
    assert any("not an SD1.x model" in w for w in other.warnings)
    finetune = translate(Recipe.from_infotext("a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Model: anything-v3"))
    assert any("fine-tune" in n for n in finetune.notes)


def test_emphasized_magic_word_is_dropped_whole():
    t = translate("a castle, (8k:1.2), ((masterpiece)), a moat")
    assert "8k" not in t.prompt and "()" not in t.prompt and "(:" not in t.prompt


def test_artist_phrases_become_sd2_phrases():
    t = translate("portrait of a knight, by greg rutkowski and alphonse mucha")
    assert "rutkowski" not in t.prompt.lower()
    assert " and ," not in t.prompt and not t.prompt.rstrip().endswith((",", "and", "by"))
    assert any(c.rule == "artist.greg-rutkowski" for c in t.changes)


def test_disable_rule_by_id_and_pattern():
    t = translate("a castle, by greg rutkowski, 8k", disable=["artist.*", "size"])
    assert "greg rutkowski" in t.prompt
    assert (t.recipe.width, t.recipe.height) == (512, 512) or t.recipe.width is None
    with pytest.raises(KnowledgeError, match="unknown rule 'no-such-rule'"):
        translate("a castle", disable=["no-such-rule"])


def test_user_knowledge_file_overrides_a_shipped_rule(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text(textwrap.dedent("""
        [[rule]]
        id = "magic.8k"
        match = ["8k"]
        action = "replace"
        replacement = "high resolution"
        fact = "F-QUALITY-TAGS"
        reason = "I like it"
    """))
    t = translate("a castle, 8k", knowledge=user)
    assert t.prompt == "a castle, high resolution"
    assert any(c.rule == "magic.8k" and c.reason == "I like it" for c in t.changes)


def test_malformed_user_knowledge_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nid = "x"\naction = "explode"\nmatch = ["a"]\n')
    with pytest.raises(KnowledgeError, match="action must be keep, drop or replace"):
        translate("a castle", knowledge=bad)
    with pytest.raises(KnowledgeError, match="not found"):
        translate("a castle", knowledge=tmp_path / "missing.toml")


@pytest.mark.parametrize(("rule", "message"), [
    ('kind = "emphasis"\ncap = "much"', r"'cap' must be a number, got 'much'"),
    ('kind = "emphasis"\ncap = 0.8', r"'cap' must be a weight of at least 1.0, got 0.8"),
    ('kind = "emphasis"\ntoward_one = 0.5', r"'emphasis' rules take no 'toward_one' \(their parameters: cap, "),
    ('kind = "size"\nbuckets = [[1024, 0]]', r"'buckets' must be a list of \[width, height\] pairs"),
    ('kind = "weak-concept"\nnames = "beyonce"', r"'names' must be a list of strings, got 'beyonce'"),
    ('kind = "artist"\nstyle_budget = true', r"'style_budget' must be a whole number, got True"),
    ('kind = "magic"\nmatch = ["8k"]', r"kind 'magic' is not one of phrase, weak-concept, "),
    ('action = "drop"', r"'match' is missing"),
])
def test_rule_parameters_are_typed_and_checked(tmp_path, rule, message):
    """Each kind of rule takes its own parameters (knowledge.RULE_PARAMS): a wrong type or a key the kind does not
    take names the rule and the key."""
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[[rule]]\nid = "mine"\n{rule}\n')
    with pytest.raises(KnowledgeError, match=r"bad\.toml: rule #1 \(mine\): " + message):
        translate("a castle", knowledge=bad)


def test_rule_parameter_defaults_are_those_of_the_knowledge_format(tmp_path):
    from bridge.rules.knowledge import EmphasisParams

    user = tmp_path / "mine.toml"
    user.write_text('[[rule]]\nid = "emphasis"\nkind = "emphasis"\nfact = "F-EMPHASIS"\nreason = "mine"\n')
    rule = KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml", user=user).rules["emphasis"]
    assert rule.params == EmphasisParams() and rule.params.cap == 1.4
    assert translate("a ((castle)), (hill:1.5)", knowledge=user).prompt == "a ((castle)), (hill:1.4)"


def test_every_shipped_rule_cites_a_fact_that_exists():
    notes = (RULES_DIR / "NOTES.md").read_text()
    kb = KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml")
    cited = {r.fact for r in kb.rules.values()} | {a.fact for a in kb.artists.values()}
    cited |= {n.fact for n in kb.negatives.values()}
    assert None not in cited
    for fact in cited:
        assert f"## {fact}:" in notes, fact


def test_unknown_model_and_missing_bridge_are_clear_errors():
    from bridge.models import NoBridgeError, UnknownModelError

    with pytest.raises(UnknownModelError, match="known models: sd14, sd15"):
        translate("a cat", target="sd3")
    with pytest.raises(NoBridgeError):
        translate("a cat", source="sd2", target="sd15")


def test_empty_and_whitespace_prompts_are_errors():
    for prompt in ("", "   \n\t"):
        with pytest.raises(EmptyPromptError, match="empty prompt"):
            translate(prompt)


@pytest.mark.parametrize("prompt", ["(x:nan)", "(x:inf)", "(x:1e309)", "(x:-3)", "((a", "a))", "[[x", "a \\",
                                    "a|b [x:y:3]"])
def test_odd_prompts_pass_through(prompt):
    t = translate(prompt)
    assert t.prompt == prompt


def test_malformed_weight_passes_through_with_a_warning():
    t = translate("((a:1.2.3))")
    assert t.prompt == "((a:1.2.3))"
    assert any("1.2.3" in w for w in t.warnings)


def test_control_characters_warned_and_kept():
    t = translate("a cat\x00 on a mat\x07")
    assert t.prompt == "a cat\x00 on a mat\x07"
    assert any("U+0000" in w for w in t.warnings)


def test_deep_nesting_and_huge_prompts_translate():
    deep = "(" * 10_000 + "a cat" + ")" * 10_000
    assert translate(deep).prompt == deep
    big = "a castle on a hill, highly detailed, " * 30_000
    t = translate(big)
    assert len(t.prompt) > 100_000


def test_translator_interface_and_batch():
    translator = load_translator("rules", source="sd15", target="sd21")
    assert isinstance(translator, RulesTranslator)
    assert (translator.source, translator.target) == ("sd15", "sd21")
    out = translator.translate_batch([Recipe(prompt="a cat, 8k"), Recipe(prompt="a dog")], TranslationOptions())
    assert [o.prompt for o in out] == ["a cat", "a dog"]


def test_load_translator_rejects_unknown_things(tmp_path):
    with pytest.raises(ValueError, match="cannot load translator"):
        load_translator(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_translator(tmp_path / "nope.toml")


def test_unknown_setting_is_an_error_listing_valid_ones():
    with pytest.raises(TypeError, match="unknown setting 'widht'.*width"):
        translate("a cat", widht=512)


def test_sd14_to_sd15_is_near_identity():
    t = translate("a castle, by greg rutkowski, <lora:detail:0.6>, 8k", source="sd14", target="sd15")
    assert t.prompt == "a castle, by greg rutkowski, <lora:detail:0.6>, 8k"
    assert (t.recipe.width, t.recipe.height) == (None, None) or (t.recipe.width, t.recipe.height) == (512, 512)


def test_rules_path_imports_no_heavy_libraries():
    code = ("import sys, bridge; bridge.translate('a castle, by greg rutkowski, 8k'); "
            "from bridge.cli import main; main(['a cat']); "
            "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'open_clip', 'numpy') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_replacements_do_not_repeat_a_phrase():
    t = translate("a lighthouse, octane render, unreal engine, 4k")
    assert t.prompt == "a lighthouse, 3d render"
    assert translate("a robot, 3d render, octane render").prompt == "a robot, 3d render"


def test_user_weak_concept_patterns_fire_with_or_without_a_literal_prefilter(tmp_path):
    """A pattern with upper-case letters is searched case-insensitively with no prefilter, in every prompt."""
    user = tmp_path / "mine.toml"
    user.write_text(textwrap.dedent("""
        [[rule]]
        id = "weak.dragons"
        kind = "weak-concept"
        patterns = ['''\\bWYRMS?\\b''', '''\\bdrakes?\\b''']
        warning = "dragons are hard"
        fact = "F-LITERAL"
        reason = "test"
    """))
    for prompt, fires in [("a wyrm over hills", True), ("a drake, 8k", True), ("a castle", False),
                          ("wyrmling", False)]:
        t = translate(prompt, knowledge=user)
        assert any("rule weak.dragons" in w for w in t.warnings) == fires, prompt


def test_emphasis_is_idempotent_on_its_own_output(real_prompts):
    """A prompt translated twice (a pasted infotext, a library migrated again) keeps its weights: the rule's output is
    its own fixed point. (A factor toward 1.0 shrank them on every pass: 1.5 -> 1.4 -> 1.32.)"""
    prompts = ["a ((castle)), (hill:1.5)", "a (((((((castle))))))), [[[fog]]]", "(a:2.9) (b:1.41) ((c:1.3))",
               "((masterpiece)), (((best quality))), ((((ultra detailed)))), (x:1.5) AND (y:1.9)"]
    changed = 0
    for prompt in prompts + real_prompts:
        first = translate(prompt, source="sd15", target="sd2")
        if any(c.rule == "emphasis" for c in first.changes):
            changed += 1
            again = translate(first.prompt, source="sd15", target="sd2")
            assert not [c for c in again.changes if c.rule == "emphasis"], prompt
    assert changed > len(prompts) + 10  # the corpora have weights over the cap
