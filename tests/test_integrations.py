"""The ComfyUI node and the A1111 extension, tested against their hosts' contracts without the hosts installed."""

import sys
import types
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
    positive, *_ = node.translate("a ((castle:1.5)) on a hill", "", "sd15", "sd21", 512, 512)
    assert positive == "a (castle:1.4) on a hill"  # ComfyUI reads 1.5 (inner weight alone), moved toward 1.0
    as_a1111, *_ = node.translate("a ((castle:1.5)) on a hill", "", "sd15", "sd21", 512, 512, dialect="a1111")
    assert as_a1111 == "a (castle:1.52) on a hill"  # A1111 reads 1.65
    empty = node.translate("  ", "", "sd15", "sd21", 512, 512)
    assert empty == ("  ", "", 512, 512, "")


# AUTOMATIC1111 -------------------------------------------------------------------------------------------------------


class FakeProcessing:
    """The parts of A1111's StableDiffusionProcessing the extension touches."""

    def __init__(self, prompt: str, negative: str, width: int, height: int, batch: int = 1):
        self.prompt, self.negative_prompt, self.width, self.height = prompt, negative, width, height
        self.all_prompts = [prompt] * batch
        self.all_negative_prompts = [negative] * batch
        self.extra_generation_params: dict = {}


@pytest.fixture(scope="module")
def a1111(tmp_path_factory):
    """A minimal stand-in of A1111's script interface (modules.scripts) and of gradio's components."""
    components: list = []

    class Component:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            components.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    fake_gradio = types.ModuleType("gradio")
    fake_gradio.Checkbox = fake_gradio.Dropdown = type("C", (Component,), {})
    fake_gradio.Accordion = lambda *a, **k: Component(**k)
    fake_scripts = types.ModuleType("modules.scripts")
    fake_scripts.AlwaysVisible = object()
    fake_scripts.Script = type("Script", (), {})
    fake_modules = types.ModuleType("modules")
    fake_modules.scripts = fake_scripts
    saved = {k: sys.modules.get(k) for k in ("gradio", "modules", "modules.scripts")}
    sys.modules.update({"gradio": fake_gradio, "modules": fake_modules, "modules.scripts": fake_scripts})
    try:
        module = load_script("prompt_bridge_a1111", INTEGRATIONS / "a1111" / "scripts" / "prompt_bridge.py")
        yield module, fake_scripts, components
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def test_a1111_extension_contract(a1111):
    module, fake_scripts, components = a1111
    script = module.Script()
    assert isinstance(script, fake_scripts.Script)
    assert script.title() == "Prompt bridge"
    assert script.show(False) is fake_scripts.AlwaysVisible
    controls = script.ui(False)
    assert len(controls) == 5 and all(c in components for c in controls)


def test_a1111_before_process_rewrites_prompt_negative_and_size(a1111):
    module, *_ = a1111
    p = FakeProcessing("a castle, by greg rutkowski, <lora:detail:0.6>, 8k", "easynegative, blurry", 512, 768)
    module.Script().before_process(p, True, "sd15", "sd21", False, True)
    expected = translate("a castle, by greg rutkowski, <lora:detail:0.6>, 8k", source="sd15", target="sd21",
                         negative_prompt="easynegative, blurry", width=512, height=768)
    assert (p.prompt, p.negative_prompt, p.width, p.height) == (expected.prompt, expected.negative_prompt, 640, 960)
    assert "sd15->sd21" in p.extra_generation_params["Prompt bridge"]
    module.Script().process(p, True, "sd15", "sd21", False, True)  # already done: nothing happens twice
    assert p.all_prompts == ["a castle, by greg rutkowski, <lora:detail:0.6>, 8k"]


def test_a1111_disabled_changes_nothing_and_process_handles_old_versions(a1111):
    module, *_ = a1111
    p = FakeProcessing("a castle, 8k", "", 512, 512, batch=2)
    module.Script().before_process(p, False, "sd15", "sd21", False, True)
    assert (p.prompt, p.width) == ("a castle, 8k", 512)
    module.Script().process(p, True, "sd15", "sd2-base", False, False)
    assert p.all_prompts == ["a castle", "a castle"] and p.width == 512
