"""The SDXL family in the renderer, on tiny random models (bridge.testing): two text encoders weighted one by one as
A1111 does, the pooled output unweighted, size conditioning, the refiner step, loading from a folder and a single
file offline."""

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from bridge.imaging.conditioning import encode_weighted_xl
from bridge.imaging.render import Renderer, RenderRequest
from bridge.testing import (
    SDXL_PROJECTION,
    SDXL_TEXT_WIDTHS,
    save_tiny_pipeline,
    tiny_sd_pipeline,
    tiny_sdxl_refiner,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]

SIZE = 32
STEPS = 3
PIXEL_TOLERANCE = 1e-4
EOS, BANG = 49407, 0


@pytest.fixture(scope="module")
def tiny_xl(torch_one_thread):
    return tiny_sd_pipeline("sdxl")


@pytest.fixture(scope="module")
def tiny_refiner(torch_one_thread):
    return tiny_sdxl_refiner()


def request(prompt="a (red:1.4) cat", negative="", seed=0, **settings):
    return RenderRequest(prompt, negative, seed=seed, **{"width": SIZE, "height": SIZE, "steps": STEPS, **settings})


def spy_calls(monkeypatch, pipeline_class):
    """Record the keyword arguments of every call of ``pipeline_class``."""
    calls = []
    original = pipeline_class.__call__

    def spy(pipe, *args, **kwargs):
        calls.append(kwargs)
        return original(pipe, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", spy)
    return calls


def by_hand(pipe, words, weights):
    """SDXL's A1111 conditioning for one short prompt, written out independently: each encoder's penultimate hidden
    states (no final layer norm), weighted and its own mean restored, the two concatenated; the pooled output from
    the unweighted tokens. ``weights`` has one weight per token of ``words``."""
    parts = []
    pooled = None
    for encoder, tokenizer in ((pipe.text_encoder, pipe.tokenizer), (pipe.text_encoder_2, pipe.tokenizer_2)):
        ids = tokenizer(words, padding="max_length", max_length=77)["input_ids"]  # pads with its own pad token
        token_weights = torch.tensor([1.0, *weights] + [1.0] * (76 - len(weights)))
        with torch.no_grad():
            outputs = encoder(torch.tensor([ids]), output_hidden_states=True)
        z = outputs.hidden_states[-2][0]
        weighted = z * token_weights[:, None]
        parts.append(weighted * (z.mean() / weighted.mean()))
        pooled = getattr(outputs, "text_embeds", None)
    return torch.cat(parts, dim=-1), pooled[0]


def test_tiny_sdxl_mirrors_the_real_family(tiny_xl, tiny_refiner):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    assert isinstance(tiny_xl, StableDiffusionXLPipeline) and isinstance(tiny_refiner, StableDiffusionXLImg2ImgPipeline)
    assert (tiny_xl.tokenizer.pad_token_id, tiny_xl.tokenizer_2.pad_token_id) == (EOS, BANG)
    assert (tiny_xl.text_encoder.config.hidden_act, tiny_xl.text_encoder_2.config.hidden_act) == ("quick_gelu", "gelu")
    assert tiny_xl.unet.config.cross_attention_dim == sum(SDXL_TEXT_WIDTHS)
    assert tiny_xl.unet.config.addition_embed_type == "text_time"
    assert tiny_xl.text_encoder_2.config.projection_dim == SDXL_PROJECTION
    assert tiny_refiner.text_encoder is None and tiny_refiner.config.requires_aesthetics_score
    assert tiny_refiner.unet.config.cross_attention_dim == SDXL_TEXT_WIDTHS[1]
    base_vae, refiner_vae = tiny_xl.vae.state_dict(), tiny_refiner.vae.state_dict()
    assert all(torch.equal(base_vae[k], v) for k, v in refiner_vae.items())  # a refiner decodes the base's latents


def test_weighting_is_per_encoder_and_the_pooled_output_is_unweighted(tiny_xl):
    got, pooled = encode_weighted_xl([tiny_xl.text_encoder, tiny_xl.text_encoder_2],
                                     [tiny_xl.tokenizer, tiny_xl.tokenizer_2], "a (red:1.5) cat")
    want, want_pooled = by_hand(tiny_xl, "a red cat", [1.0, 1.5, 1.0])
    assert got.shape == (1, 77, sum(SDXL_TEXT_WIDTHS)) and pooled.shape == (1, SDXL_PROJECTION)
    assert torch.allclose(got[0], want, atol=1e-5)
    assert torch.allclose(pooled[0], want_pooled, atol=1e-6)
    # one mean over both encoders would differ: each encoder restores its own
    plain, _ = by_hand(tiny_xl, "a red cat", [1.0, 1.0, 1.0])
    weighted = plain * torch.tensor([1.0, 1.0, 1.5] + [1.0] * 74)[:, None]
    assert not torch.allclose(got[0], weighted * (plain.mean() / weighted.mean()), atol=1e-5)


def test_the_renderer_passes_a1111s_conditioning_and_zeros_for_an_empty_negative(tiny_xl, monkeypatch):
    from diffusers import StableDiffusionXLPipeline

    calls = spy_calls(monkeypatch, StableDiffusionXLPipeline)
    renderer = Renderer(tiny_xl, "sdxl", progress=False)
    renderer.render([request("a (red:1.5) cat"), request("a (red:1.5) cat", "ugly")], batch_size=1)
    want, want_pooled = by_hand(tiny_xl, "a red cat", [1.0, 1.5, 1.0])
    empty_negative, negative = calls
    assert torch.allclose(empty_negative["prompt_embeds"][0], want, atol=1e-5)
    assert torch.allclose(empty_negative["pooled_prompt_embeds"][0], want_pooled, atol=1e-6)
    assert not empty_negative["negative_prompt_embeds"].any() and not empty_negative["negative_pooled_prompt_embeds"].any()
    ugly, ugly_pooled = by_hand(tiny_xl, "ugly", [1.0])
    assert torch.allclose(negative["negative_prompt_embeds"][0], ugly, atol=1e-5)
    assert torch.allclose(negative["negative_pooled_prompt_embeds"][0], ugly_pooled, atol=1e-6)
    assert (negative["original_size"], negative["target_size"], negative["crops_coords_top_left"]) == (
        (SIZE, SIZE), (SIZE, SIZE), (0, 0))


def test_sdxl_images_do_not_depend_on_batch_size_or_order(tiny_xl):
    renderer = Renderer(tiny_xl, "sdxl", progress=False)
    requests = [request(seed=3), request("a dog, (sunset:0.8)", "blurry", seed=1), request(seed=9),
                request("[a dog:a cat:2]", seed=4)]
    together = renderer.render(requests, batch_size=4, keep_pixels=True)
    alone = renderer.render(requests[::-1], batch_size=1, keep_pixels=True)[::-1]
    for a, b in zip(together, alone, strict=True):
        assert np.abs(a.pixels - b.pixels).max() <= PIXEL_TOLERANCE
    assert np.abs(together[0].pixels - together[2].pixels).max() > 1e-3  # seeds matter
    assert together[0].settings["model"] == "sdxl" and together[0].settings["clip_skip"] == 1


def test_prompt_editing_swaps_the_pooled_output_too(tiny_xl, monkeypatch):
    from diffusers import StableDiffusionXLPipeline

    swapped = []
    original = StableDiffusionXLPipeline.__call__

    def spy(pipe, *args, callback_on_step_end=None, **kwargs):
        def record(pipe, iteration, timestep, tensors):
            out = callback_on_step_end(pipe, iteration, timestep, tensors)
            swapped.append(sorted(out))
            return out

        return original(pipe, *args, callback_on_step_end=record if callback_on_step_end else None, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "__call__", spy)
    Renderer(tiny_xl, "sdxl", progress=False).render(request("[a dog:a cat:2]", steps=4))
    assert ["add_text_embeds", "prompt_embeds"] in swapped


def test_size_conditioning_changes_the_image_and_only_sdxl_takes_it(tiny_xl, tiny_sd1):
    renderer = Renderer(tiny_xl, "sdxl", progress=False)
    plain, low, cropped = renderer.render(
        [request(), request(original_size=(8, 8)), request(crops_coords_top_left=(16, 0))], keep_pixels=True)
    assert low.settings["original_size"] == (8, 8) and cropped.settings["crops_coords_top_left"] == (16, 0)
    assert np.abs(plain.pixels - low.pixels).max() > 1e-4 and np.abs(plain.pixels - cropped.pixels).max() > 1e-4
    with pytest.raises(ValueError, match="`original_size` is SDXL's size conditioning"):
        Renderer(tiny_sd1, progress=False).render(request(original_size=(64, 64)))
    with pytest.raises(ValueError, match=r"`target_size` must be None or two integers >= 1 .* but is \(0, 5\)"):
        request(target_size=(0, 5))


def test_clip_skip_is_ignored_for_sdxl_with_a_warning(tiny_xl):
    renderer = Renderer(tiny_xl, progress=False)  # no registry entry: the pipeline says SDXL
    with pytest.warns(UserWarning, match="clip skip 2 ignored"):
        [result] = renderer.render(request(clip_skip=2))
    assert result.settings["clip_skip"] == 1 and "original_size" in result.settings


def test_the_refiner_is_a_step_after_the_switch(tiny_xl, tiny_refiner, monkeypatch):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    base_calls = spy_calls(monkeypatch, StableDiffusionXLPipeline)
    refiner_calls = spy_calls(monkeypatch, StableDiffusionXLImg2ImgPipeline)
    refined = Renderer(tiny_xl, "sdxl", progress=False, refiner=tiny_refiner, refiner_switch_at=0.5,
                       refiner_name="tiny-refiner")
    requests = [request(seed=1), request("a dog", "blurry", seed=2), request(seed=5)]
    together = refined.render(requests, batch_size=3, keep_pixels=True)
    assert base_calls[0]["denoising_end"] == 0.5 and base_calls[0]["output_type"] == "latent"
    call = refiner_calls[0]
    assert call["denoising_start"] == 0.5 and (call["aesthetic_score"], call["negative_aesthetic_score"]) == (6.0, 2.5)
    assert call["prompt_embeds"].shape[-1] == SDXL_TEXT_WIDTHS[1]  # the refiner's own encoder (bigG) only
    assert together[0].settings["refiner"] == "tiny-refiner" and together[0].settings["refiner_switch_at"] == 0.5
    alone = refined.render(requests, batch_size=1, keep_pixels=True)
    for a, b in zip(together, alone, strict=True):
        assert np.abs(a.pixels - b.pixels).max() <= PIXEL_TOLERANCE
    base_only = Renderer(tiny_xl, "sdxl", progress=False).render(requests[0], keep_pixels=True)[0]
    assert np.abs(base_only.pixels - together[0].pixels).max() > 1e-3
    with pytest.raises(ValueError, match="`refiner_switch_at` must be between 0 and 1"):
        Renderer(tiny_xl, refiner=tiny_refiner, refiner_switch_at=1.0)


def test_a_refiner_needs_an_sdxl_base(tiny_sd1, tiny_refiner):
    with pytest.raises(ValueError, match="a refiner runs after an SDXL pipeline, not after a StableDiffusionPipeline"):
        Renderer(tiny_sd1, refiner=tiny_refiner)


def test_loads_a_saved_sdxl_folder_and_its_refiner(tiny_xl, tiny_refiner, tmp_path):
    folder = save_tiny_pipeline("sdxl", tmp_path / "tiny-sdxl")
    tiny_refiner.save_pretrained(tmp_path / "tiny-refiner")
    loaded = Renderer.from_pretrained(folder, device="cpu", progress=False, refiner=tmp_path / "tiny-refiner")
    assert loaded.xl and loaded.spec is None and loaded.refiner is not None
    got = loaded.render(request(), keep_pixels=True)[0].pixels
    want = Renderer(tiny_xl, progress=False, refiner=tiny_refiner).render(request(), keep_pixels=True)[0].pixels
    assert np.abs(got - want).max() <= PIXEL_TOLERANCE


def test_a_single_sdxl_file_loads_with_a_local_config_folder_offline(tiny_xl, tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    calls = []

    def fake(source, **kwargs):
        calls.append((str(source), kwargs))
        return tiny_xl

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_single_file", fake)
    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file", lambda *a, **k: pytest.fail("SD loader used"))
    config = save_tiny_pipeline("sdxl", tmp_path / "sdxl-config")
    checkpoint = tmp_path / "sd_xl_base_1.0.safetensors"  # the file name identifies the model
    checkpoint.write_bytes(b"")
    renderer = Renderer.from_pretrained(checkpoint, device="cpu", progress=False, config=str(config))
    assert renderer.spec.key == "sdxl" and renderer.xl
    source, kwargs = calls[-1]
    assert (source, kwargs["config"], kwargs["local_files_only"]) == (str(checkpoint), str(config), True)
    assert "safety_checker" not in kwargs
    Renderer.from_pretrained(checkpoint, device="cpu", progress=False)  # no config: the registry's hub id
    assert calls[-1][1]["config"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert "local_files_only" not in calls[-1][1]
