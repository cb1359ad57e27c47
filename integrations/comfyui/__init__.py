"""prompt-bridge as a ComfyUI custom node: SD1.x prompt in, a prompt for the target model out.

Install (in ComfyUI's Python environment):

    pip install /path/to/prompt-bridge
    ln -s /path/to/prompt-bridge/integrations/comfyui ComfyUI/custom_nodes/prompt_bridge

The node "Prompt Bridge" (category conditioning/prompt-bridge) takes the prompt text, the negative prompt, the
source and target models and the size, and returns the positive prompt, the negative prompt, width and height, to
wire into CLIPTextEncode and EmptyLatentImage. Prompts are read and written in ComfyUI's own weighting syntax (inner
weights replace outer ones, ``[x]`` is plain text) unless ``dialect`` says a1111.
"""

from __future__ import annotations

from bridge.models import list_models
from bridge.translation import translate

MODEL_KEYS = [m.key for m in list_models()]


class PromptBridge:
    """The ComfyUI node: one call of ``bridge.translate`` with ComfyUI's node contract."""

    CATEGORY = "conditioning/prompt-bridge"
    RETURN_TYPES = ("STRING", "STRING", "INT", "INT")
    RETURN_NAMES = ("positive", "negative", "width", "height")
    FUNCTION = "translate"
    DESCRIPTION = "Rewrite a Stable Diffusion 1.x prompt so it works on SD 2.x or SDXL, with a fitting size."

    @classmethod
    def INPUT_TYPES(cls) -> dict:  # ComfyUI calls it by this name
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": ""}),
                "negative": ("STRING", {"multiline": True, "default": ""}),
                "source": (MODEL_KEYS, {"default": "sd15"}),
                "target": (MODEL_KEYS, {"default": "sd21"}),
                "width": ("INT", {"default": 512, "min": 64, "max": 8192, "step": 8}),
                "height": ("INT", {"default": 512, "min": 64, "max": 8192, "step": 8}),
                "networks": (["remove", "keep"], {"default": "remove"}),
            },
            "optional": {
                "dialect": (["comfyui", "a1111"], {"default": "comfyui"}),
                "disable_rules": ("STRING", {"default": ""}),
            },
        }

    def translate(self, text: str, negative: str, source: str, target: str, width: int, height: int,
                  networks: str = "remove", dialect: str = "comfyui", disable_rules: str = "") -> tuple:
        if not text.strip():
            return (text, negative, width, height)  # an empty prompt stays empty: nothing to translate
        from bridge.dialects import from_a1111, to_a1111

        prompt = to_a1111(text, dialect).text
        negative_a1111 = to_a1111(negative, dialect).text if negative.strip() else ""
        disable = tuple(r.strip() for r in disable_rules.replace(",", " ").split() if r.strip())
        t = translate(prompt, source=source, target=target, negative_prompt=negative_a1111, networks=networks,
                      disable=disable, width=width, height=height)
        positive_out = from_a1111(t.prompt, dialect).text
        negative_out = from_a1111(t.negative_prompt, dialect).text
        return (positive_out, negative_out, t.recipe.width or width, t.recipe.height or height)


NODE_CLASS_MAPPINGS = {"PromptBridge": PromptBridge}
NODE_DISPLAY_NAME_MAPPINGS = {"PromptBridge": "Prompt Bridge"}
