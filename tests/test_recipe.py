"""Tests for bridge.recipe: A1111 infotext in and out, dict and diffusers views."""

import sys
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.recipe import _KEY, InfotextError, Recipe

A1111_INFOTEXT = (
    "masterpiece, best quality, (portrait:1.2) of a woman in a red coat,\n"
    "city street at night, <lora:detail_tweaker:0.6>\n"
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4),\n"
    "watermark\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234567890, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, "
    'Hires upscale: 2, Lora hashes: "detail_tweaker: 1a2b3c4d5e6f", Version: v1.7.0'
)


def test_parses_every_field_of_a1111_infotext():
    recipe = Recipe.from_infotext(A1111_INFOTEXT)

    assert recipe.prompt == (
        "masterpiece, best quality, (portrait:1.2) of a woman in a red coat,\ncity street at night, "
        "<lora:detail_tweaker:0.6>"
    )
    assert recipe.negative_prompt == "lowres, bad anatomy, (worst quality:1.4),\nwatermark"
    assert (recipe.width, recipe.height) == (512, 768)
    assert recipe.steps == 28
    assert recipe.cfg_scale == 7.5
    assert recipe.sampler == "DPM++ 2M Karras"
    assert recipe.seed == 1234567890
    assert recipe.model == "v1-5-pruned-emaonly"
    assert recipe.clip_skip == 2
    assert recipe.model_hash == "6ce0161689"
    assert recipe.extra == {
        "Model hash": "6ce0161689",
        "Denoising strength": "0.45",
        "Hires upscale": "2",
        "Lora hashes": "detail_tweaker: 1a2b3c4d5e6f",
        "Version": "v1.7.0",
    }
    assert list(recipe.extra) == ["Model hash", "Denoising strength", "Hires upscale", "Lora hashes", "Version"]


def test_a1111_infotext_round_trips_exactly():
    assert Recipe.from_infotext(A1111_INFOTEXT).to_infotext() == A1111_INFOTEXT


def test_crlf_and_cr_read_like_lf():
    expected = Recipe.from_infotext(A1111_INFOTEXT)

    assert Recipe.from_infotext(A1111_INFOTEXT.replace("\n", "\r\n")) == expected
    assert Recipe.from_infotext(A1111_INFOTEXT.replace("\n", "\r")) == expected


def test_changed_value_keeps_key_order():
    recipe = Recipe.from_infotext(A1111_INFOTEXT).replace(steps=40, cfg_scale=6.0, width=768, height=512)

    assert recipe.to_infotext() == (
        A1111_INFOTEXT.replace("Steps: 28", "Steps: 40")
        .replace("CFG scale: 7.5", "CFG scale: 6")
        .replace("Size: 512x768", "Size: 768x512")
    )


def test_number_written_as_read_until_changed():
    text = "a cat\nSteps: 20, CFG scale: 7.0, Seed: 1"
    recipe = Recipe.from_infotext(text)

    assert recipe.cfg_scale == 7.0
    assert recipe.to_infotext() == text
    assert recipe.replace(cfg_scale=7.5).to_infotext() == "a cat\nSteps: 20, CFG scale: 7.5, Seed: 1"


def test_new_recipe_writes_a1111_default_order():
    recipe = Recipe(
        prompt="a cat",
        extra={"Version": "v1.7.0", "Model hash": "abc"},
        clip_skip=2,
        model="sd15",
        width=512,
        height=512,
        seed=-1,
        cfg_scale=7,
        sampler="Euler a",
        steps=20,
    )

    assert recipe.to_infotext() == (
        "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: -1, Size: 512x512, Model hash: abc, Model: sd15, "
        "Clip skip: 2, Version: v1.7.0"
    )


def test_values_needing_quotes_are_json_quoted():
    recipe = Recipe(
        steps=1, seed=2, extra={"A": "x, y", "B": "k: v", "C": 'say "hi"', "D": '"q"', "E": "l1\nl2", "F": " pad"}
    )

    assert recipe.to_infotext() == (
        'Steps: 1, Seed: 2, A: "x, y", B: "k: v", C: say "hi", D: "\\"q\\"", E: "l1\\nl2", F: " pad"'
    )


def test_prompt_without_params():
    recipe = Recipe.from_infotext("a cat\non a mat")

    assert recipe == Recipe(prompt="a cat\non a mat")
    assert recipe.to_infotext() == "a cat\non a mat"


def test_last_line_with_a_colon_stays_prompt():
    recipe = Recipe.from_infotext("a photo\nportrait: a man")

    assert recipe.prompt == "a photo\nportrait: a man"
    assert recipe.extra == {}


def test_last_line_with_fewer_than_three_pairs_stays_prompt():
    assert Recipe.from_infotext("a cat\nSteps: 20, Seed: 1") == Recipe(prompt="a cat\nSteps: 20, Seed: 1")


def test_last_line_that_does_not_split_into_pairs_stays_prompt():
    text = "a cat\nmasterpiece, style: anime, mood: calm, light: soft"

    assert Recipe.from_infotext(text) == Recipe(prompt=text)


def test_negative_only():
    recipe = Recipe.from_infotext("Negative prompt: blurry, lowres")

    assert recipe == Recipe(negative_prompt="blurry, lowres")
    assert recipe.to_infotext() == "Negative prompt: blurry, lowres"
    assert Recipe.from_infotext("a cat\n  Negative prompt:  blurry ") == Recipe("a cat", "blurry")


def test_empty_text_is_empty_recipe():
    assert Recipe.from_infotext("") == Recipe()
    assert Recipe.from_infotext(" \r\n ") == Recipe()
    assert Recipe().to_infotext() == ""


@pytest.mark.parametrize(
    ("params", "key", "value"),
    [
        ("Steps: abc, Sampler: Euler, Seed: 1", "Steps", "abc"),
        ("Steps: 20, CFG scale: high, Seed: 1", "CFG scale", "high"),
        ("Steps: 20, Seed: 1, Size: 512 by 768", "Size", "512 by 768"),
        ("Steps: 20, Seed: 1, Clip skip: 2.5", "Clip skip", "2.5"),
    ],
)
def test_bad_numeric_value_names_key_and_value(params, key, value):
    with pytest.raises(InfotextError) as error:
        Recipe.from_infotext(f"a cat\n{params}")

    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert repr(key) in message and repr(value) in message
    assert "\n" not in message


def test_to_diffusers_keys():
    recipe = Recipe.from_infotext(A1111_INFOTEXT)

    assert recipe.to_diffusers() == {
        "prompt": recipe.prompt,
        "negative_prompt": recipe.negative_prompt,
        "width": 512,
        "height": 768,
        "num_inference_steps": 28,
        "guidance_scale": 7.5,
        "clip_skip": 1,
    }


def test_to_diffusers_leaves_out_unset_values():
    assert Recipe(prompt="a cat", seed=5, sampler="Euler", clip_skip=1).to_diffusers() == {"prompt": "a cat"}


def test_diffusers_warnings_one_line_per_feature(monkeypatch):
    seen = []

    def features(text):
        seen.append(text)
        return {"pos": {"emphasis", "network"}, "neg": {"emphasis", "break"}}.get(text, set())

    monkeypatch.setitem(sys.modules, "bridge.syntax", types.SimpleNamespace(features=features))

    warnings = Recipe(prompt="pos", negative_prompt="neg").diffusers_warnings()

    assert sorted(seen) == ["neg", "pos"]
    assert len(warnings) == 3
    assert any("(word:1.2)" in line for line in warnings)
    assert any("BREAK" in line for line in warnings)
    assert any("<lora:" in line for line in warnings)
    assert Recipe(prompt="plain").diffusers_warnings() == []


def test_diffusers_warnings_with_real_syntax_module():
    pytest.importorskip("bridge.syntax")

    warnings = Recipe(prompt="(cat:1.2) <lora:detail:0.5>", negative_prompt="blurry").diffusers_warnings()

    assert len(warnings) == 2
    assert Recipe(prompt="a cat on a mat").diffusers_warnings() == []


def test_dict_round_trip_and_replace():
    recipe = Recipe.from_infotext(A1111_INFOTEXT)
    data = recipe.to_dict()

    assert list(data) == [
        "prompt",
        "negative_prompt",
        "width",
        "height",
        "steps",
        "cfg_scale",
        "sampler",
        "seed",
        "model",
        "clip_skip",
        "extra",
    ]
    assert Recipe.from_dict(data) == recipe
    assert Recipe.from_dict({"prompt": "a cat"}) == Recipe(prompt="a cat")

    changed = recipe.replace(seed=7)
    changed.extra["Version"] = "v2"
    assert changed.seed == 7 and recipe.seed == 1234567890
    assert recipe.extra["Version"] == "v1.7.0"


def test_invalid_recipes_are_refused():
    with pytest.raises(ValueError, match="unknown Recipe keys"):
        Recipe.from_dict({"prompt": "a", "steps_count": 3})
    with pytest.raises(ValueError, match="width and height"):
        Recipe(width=512)
    with pytest.raises(ValueError, match="belongs in its Recipe field"):
        Recipe(extra={"Steps": "20"})
    with pytest.raises(ValueError, match="cannot be written"):
        Recipe(extra={"a: b": "c"})


# Text full of the characters the format treats specially. "\r" is left out: it reads as a newline.
_TRICKY_TEXT = st.text(
    st.one_of(
        st.sampled_from(list(',:"\\\n ()[]<>|')), st.characters(exclude_categories=["Cs"], exclude_characters="\r")
    )
)
_PROMPT = _TRICKY_TEXT.map(str.strip).filter(
    lambda text: not any(line.lstrip().startswith("Negative prompt:") for line in text.split("\n"))
)
_ANY_TEXT = st.text(st.one_of(st.sampled_from(list(',:"\\\n\r ')), st.characters(exclude_categories=["Cs"])))
_FIELD_KEYS = {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Clip skip"}
_EXTRA = st.dictionaries(st.from_regex(_KEY, fullmatch=True).filter(lambda key: key not in _FIELD_KEYS), _ANY_TEXT)


@st.composite
def recipes(draw) -> Recipe:
    size = draw(st.none() | st.tuples(st.integers(0, 4096), st.integers(0, 4096)))
    return Recipe(
        prompt=draw(_PROMPT),
        negative_prompt=draw(_TRICKY_TEXT.map(str.strip)),
        width=size and size[0],
        height=size and size[1],
        steps=draw(st.none() | st.integers()),
        cfg_scale=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        sampler=draw(st.none() | _ANY_TEXT),
        seed=draw(st.none() | st.integers()),
        model=draw(st.none() | _ANY_TEXT),
        clip_skip=draw(st.none() | st.integers()),
        extra=draw(_EXTRA),
    )


def _param_count(recipe: Recipe) -> int:
    fields = [recipe.width, recipe.steps, recipe.cfg_scale, recipe.sampler, recipe.seed, recipe.model, recipe.clip_skip]
    return sum(value is not None for value in fields) + len(recipe.extra)


@given(recipes().filter(lambda recipe: _param_count(recipe) >= 3))
def test_infotext_round_trip(recipe):
    text = recipe.to_infotext()
    again = Recipe.from_infotext(text)

    assert again == recipe
    assert again.to_infotext() == text


def test_replace_checks_what_the_constructor_checks():
    import dataclasses

    from bridge import recipe as recipe_module

    assert recipe_module._INIT_FIELDS == {f.name for f in dataclasses.fields(Recipe) if f.init}
    base = Recipe(prompt="a cat", width=512, height=512, extra={"Version": "v1"})
    with pytest.raises(ValueError, match="width and height must be set together"):
        base.replace(width=None)
    with pytest.raises(ValueError, match="belongs in its Recipe field"):
        base.replace(extra={"Steps": "20"})
    with pytest.raises(TypeError, match="no field 'steps_count'"):
        base.replace(steps_count=3)
    wider = base.replace(width=768, height=768)
    assert (wider.width, wider.height, wider.extra, wider.prompt) == (768, 768, {"Version": "v1"}, "a cat")
    assert wider.extra is not base.extra and wider == dataclasses.replace(base, width=768, height=768)
