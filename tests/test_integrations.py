"""The ComfyUI node, tested against its host's contract without the host installed (the A1111 extension: see
test_a1111_extension.py)."""

from pathlib import Path

import pytest
from script_loader import load_script

from bridge.translation import translate

INTEGRATIONS = Path(__file__).resolve().parent.parent / "integrations"


# ComfyUI -------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comfy():
    return load_script("prompt_bridge_comfyui", INTEGRATIONS / "comfyui" / "__init__.py")


def test_comfyui_node_contract(comfy):
    node_cls = comfy.NODE_CLASS_MAPPINGS["PromptBridge"]
    assert comfy.NODE_DISPLAY_NAME_MAPPINGS["PromptBridge"] == "Prompt Bridge"
    inputs = node_cls.INPUT_TYPES()
    required = inputs["required"]
    assert required["text"][0] == "STRING" and required["text"][1]["multiline"]
    assert "sd15" in required["source"][0] and "sdxl" in required["target"][0]
    assert required["width"][0] == "INT"
    assert node_cls.RETURN_TYPES == ("STRING", "STRING", "INT", "INT", "STRING")  # report last: old links hold
    assert node_cls.RETURN_NAMES[:4] == ("positive", "negative", "width", "height")
    assert len(node_cls.RETURN_NAMES) == len(node_cls.RETURN_TYPES)
    function = getattr(node_cls(), node_cls.FUNCTION)
    params = function.__code__.co_varnames[1:function.__code__.co_argcount]
    assert set(required) | set(inputs["optional"]) == set(params)  # every input reaches the function


def test_comfyui_node_matches_bridge_translate(comfy):
    node = comfy.PromptBridge()
    prompt = "a castle on a hill, by greg rutkowski, 8k, <lora:detail:0.6>"
    positive, negative, width, height, _ = node.translate(prompt, "blurry", "sd15", "sd21", 512, 768,
                                                          dialect="a1111")
    expected = translate(prompt, source="sd15", target="sd21", negative_prompt="blurry", width=512, height=768)
    assert (positive, negative, width, height) == (expected.prompt, expected.negative_prompt, 640, 960)


def test_comfyui_node_speaks_comfyui_weights(comfy):
    node = comfy.PromptBridge()
    positive, *_ = node.translate("a ((castle:1.3)) on a hill", "", "sd15", "sd21", 512, 512)
    assert positive == "a (castle:1.3) on a hill"  # ComfyUI reads 1.3 (the inner weight alone): under the cap
    as_a1111, *_ = node.translate("a ((castle:1.3)) on a hill", "", "sd15", "sd21", 512, 512, dialect="a1111")
    assert as_a1111 == "a (castle:1.4) on a hill"  # A1111 reads 1.43: capped
    empty = node.translate("  ", "", "sd15", "sd21", 512, 512)
    assert empty == ("  ", "", 512, 512, "")
