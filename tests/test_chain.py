"""SDXL as a target and chained bridges: shortest path, explanations per hop, a user registry file."""

import io
import json

import pytest

from bridge.chain import ChainTranslator
from bridge.cli import main
from bridge.load import load_translator, translate
from bridge.models import use_registry
from bridge.rules.stages import nearest_bucket


@pytest.fixture(autouse=True)
def packaged_registry_after_each_test():
    yield
    use_registry(None)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=io.StringIO(""), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_sd15_to_sdxl_keeps_artists_and_uses_a_bucket():
    t = translate("a castle, by greg rutkowski, 8k, <lora:detail:0.6>", target="sdxl", width=512, height=768)
    assert t.prompt == "a castle, by greg rutkowski, 8k"  # SDXL knows the name again; only the LoRA goes
    assert (t.recipe.width, t.recipe.height) == (832, 1216)
    assert t.recipe.steps == 30 and t.recipe.cfg_scale == 6.0
    assert {c.rule for c in t.changes} >= {"networks", "size", "negative.default"}
    assert all(c.fact for c in t.changes)


@pytest.mark.parametrize("size,bucket", [((512, 512), (1024, 1024)), ((768, 512), (1216, 832)),
                                         ((512, 1024), (768, 1344)), ((1920, 800), (1536, 640))])
def test_nearest_bucket(size, bucket):
    buckets = [[1024, 1024], [1152, 896], [896, 1152], [1216, 832], [832, 1216], [1344, 768], [768, 1344],
               [1536, 640], [640, 1536]]
    assert nearest_bucket(*size, buckets) == bucket


def test_sd2_to_sdxl_leaves_an_sd2_prompt_alone():
    t = translate("a lighthouse on a cliff at dusk, oil painting", source="sd21", target="sdxl",
                  negative_prompt="blurry, ugly")
    assert t.prompt == "a lighthouse on a cliff at dusk, oil painting"
    assert t.negative_prompt.startswith("blurry, ugly")


def test_sd14_to_sdxl_goes_through_sd15_and_explains_each_hop():
    translator = load_translator("rules", source="sd14", target="sdxl")
    assert isinstance(translator, ChainTranslator)
    assert translator.labels == ["sd14->sd15", "sd15->sdxl"]
    t = translator.translate("a castle, <lora:detail:0.6>, 8k")
    assert (t.source, t.target) == ("sd14", "sdxl")
    assert all(c.hop in translator.labels for c in t.changes)
    assert any(c.hop == "sd15->sdxl" and c.rule == "networks" for c in t.changes)
    assert (t.recipe.steps, t.recipe.cfg_scale, t.recipe.model) == (30, 6.0, "sdxl")  # the final target's defaults
    assert all(w.startswith("[sd15->sdxl] ") for w in t.warnings)


def test_a_direct_bridge_is_not_a_chain():
    assert not isinstance(load_translator("rules", source="sd14", target="sd21"), ChainTranslator)


def test_disable_rule_in_a_chain_applies_to_the_hop_that_has_it():
    t = translate("a castle, <lora:detail:0.6>", source="sd14", target="sdxl", disable=["networks"])
    assert "<lora:detail:0.6>" in t.prompt
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        translate("a castle", source="sd14", target="sdxl", disable=["nope"])


def test_cli_two_hops_with_explanations():
    code, out, _ = cli("--from", "sd14", "--to", "sdxl", "--explain", "a castle, <lora:x:1>")
    assert code == 0
    assert "Changes (sd14 -> sdxl):" in out and "[sd15->sdxl] networks" in out and "Size: 1024x1024" in out
    code, out, _ = cli("--from", "sd14", "--to", "sdxl", "--format", "json", "a castle")
    assert {c["hop"] for c in json.loads(out)["changes"]} <= {"sd14->sd15", "sd15->sdxl"}


def test_user_registry_adds_a_model_and_a_bridge_without_code(tmp_path):
    # the knowledge file sits beside the registry and is named relative to it
    knowledge = tmp_path / "sd21_to_mine.toml"
    knowledge.write_text('[[rule]]\nid = "size"\nkind = "size"\nfact = "F-SIZE"\nreason = "my model is 640"\n'
                         '[[rule]]\nid = "settings"\nkind = "settings"\nfact = "F-SIZE"\nreason = "defaults"\n')
    registry = tmp_path / "models.toml"
    registry.write_text(f"""
[models.mine]
name = "My fine-tune of SD 2.1"
hub_id = "me/mine"
family = "sd2"
text_encoder = "OpenCLIP ViT-H/14 (LAION-2B)"
text_encoder_id = "ViT-H-14/laion2b_s32b_b79k"
clip_layer = "penultimate"
text_dim = 1024
native_size = 640
prediction_type = "v_prediction"
chunk_tokens = 75
pad_token = "!"
default_steps = 20
default_cfg_scale = 5.0
default_sampler = "Euler a"

[[bridges]]
source = "sd21"
target = "mine"
kind = "rules"
knowledge = "{knowledge.name}"
description = "SD 2.1 prompts for my model"
""")
    code, out, err = cli("--registry", str(registry), "--from", "sd15", "--to", "mine", "--format", "json",
                         "a castle, 8k")
    assert code == 0, err
    row = json.loads(out)
    assert (row["width"], row["height"], row["steps"], row["model"]) == (640, 640, 20, "mine")
    assert {c["hop"] for c in row["changes"]} == {"sd15->sd21", "sd21->mine"}
    assert row["prompt"] == "a castle"  # the sd15->sd21 hop dropped 8k
    code, _, err = cli("--registry", str(tmp_path / "missing.toml"), "a castle")
    assert code == 1 and "no such registry file" in err
