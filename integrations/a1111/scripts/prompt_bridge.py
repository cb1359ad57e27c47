"""prompt-bridge as an AUTOMATIC1111 extension: "Translate for SD2" rewrites the prompt, the negative prompt and the
size before generation, so an SD1.x prompt library keeps working on an SD 2.x (or SDXL) checkpoint.

Install: `pip install /path/to/prompt-bridge` in A1111's venv, then copy or link `integrations/a1111` into
`stable-diffusion-webui/extensions/prompt-bridge` and restart. A "Prompt bridge" section appears under txt2img and
img2img; tick it, pick the source and target models, generate. The infotext records what was done.
"""

from __future__ import annotations

import gradio as gr
from modules import scripts

from bridge.models import list_models
from bridge.translation import translate

MODEL_KEYS = [m.key for m in list_models()]


class Script(scripts.Script):
    def title(self) -> str:
        return "Prompt bridge"

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list:
        with gr.Accordion("Prompt bridge: translate for SD2", open=False):
            enabled = gr.Checkbox(label="Translate the prompt for the target model", value=False)
            source = gr.Dropdown(label="Written for", choices=MODEL_KEYS, value="sd15")
            target = gr.Dropdown(label="Generate with", choices=MODEL_KEYS, value="sd21")
            keep_networks = gr.Checkbox(label="Keep SD1 LoRA/hypernetwork tags and embeddings", value=False)
            set_size = gr.Checkbox(label="Also set the target's size", value=True)
        return [enabled, source, target, keep_networks, set_size]

    def before_process(self, p, enabled: bool, source: str, target: str, keep_networks: bool, set_size: bool):
        """Rewrite before A1111 expands the prompts (batch, styles): prompt, negative prompt, size."""
        if not enabled or getattr(p, "_prompt_bridge_done", False):
            return
        t = _translate(p.prompt, p.negative_prompt, source, target, keep_networks, p.width, p.height)
        p.prompt, p.negative_prompt = t.prompt, t.negative_prompt
        if set_size and t.recipe.width and t.recipe.height:
            p.width, p.height = t.recipe.width, t.recipe.height
        p.extra_generation_params["Prompt bridge"] = f"{t.source}->{t.target}, {len(t.changes)} changes"
        p._prompt_bridge_done = True

    def process(self, p, enabled: bool, source: str, target: str, keep_networks: bool, set_size: bool):
        """Older A1111 versions have no before_process: translate each already expanded prompt here."""
        if not enabled or getattr(p, "_prompt_bridge_done", False):
            return
        pairs = list(zip(p.all_prompts, p.all_negative_prompts))
        done = [_translate(prompt, negative, source, target, keep_networks, p.width, p.height)
                for prompt, negative in pairs]
        p.all_prompts = [t.prompt for t in done]
        p.all_negative_prompts = [t.negative_prompt for t in done]
        p.prompt, p.negative_prompt = p.all_prompts[0], p.all_negative_prompts[0]
        if set_size and done and done[0].recipe.width:
            p.width, p.height = done[0].recipe.width, done[0].recipe.height
        p.extra_generation_params["Prompt bridge"] = f"{source}->{target}"
        p._prompt_bridge_done = True


def _translate(prompt: str, negative: str | None, source: str, target: str, keep_networks: bool, width: int,
               height: int):
    t = translate(prompt, source=source, target=target, negative_prompt=negative or "",
                  networks="keep" if keep_networks else "remove", width=width, height=height)
    for warning in t.warnings:
        print(f"[prompt-bridge] {warning}")
    return t
