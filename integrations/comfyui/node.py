"""The "Prompt Bridge" ComfyUI node: an SD1.x prompt in, a prompt for the target model out, and a report.

ComfyUI's node contract (``nodes.py`` in ComfyUI; ``execution.py`` ``validate_inputs`` and ``get_output_data``):
``INPUT_TYPES`` lists the widgets, ``RETURN_TYPES``/``RETURN_NAMES`` the outputs by position (a saved workflow links
outputs by index, so a new output goes last), ``FUNCTION`` names the method the queue calls and
``VALIDATE_INPUTS`` runs when a prompt is queued, before anything executes: it gets the constant values of the
inputs it names (None for one wired from another node), returns True or an error string, and ComfyUI skips its own
list check for those inputs.
"""

from __future__ import annotations

import logging

from bridge.dialects import from_a1111, to_a1111
from bridge.models import find_path, list_models
from bridge.translation import Translation, translate

MODEL_KEYS = [m.key for m in list_models()]
LOG = logging.getLogger("prompt_bridge")

_CLI_HINT = "map it with --network-map or keep it with --keep-networks"  # the rules' wording, for the command line
_NODE_HINT = "set the node's networks input to keep to keep it"
_LOADERS = {"lora": "LoraLoader", "lyco": "LoraLoader", "hypernet": "HypernetworkLoader"}


class PromptBridge:
    """One call of ``bridge.translate`` with ComfyUI's node contract."""

    CATEGORY = "conditioning/prompt-bridge"
    RETURN_TYPES = ("STRING", "STRING", "INT", "INT", "STRING")
    RETURN_NAMES = ("positive", "negative", "width", "height", "report")
    OUTPUT_TOOLTIPS = (
        "the prompt for the target model: wire it into CLIPTextEncode",
        "the negative prompt for the target model",
        "a width the target model renders well: wire it into EmptyLatentImage",
        "a height the target model renders well",
        "what changed, warnings and what to do in ComfyUI (LoRAs, BREAK, AND): show it with a Preview Any node",
    )
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

    @classmethod
    def VALIDATE_INPUTS(cls, source: str | None = None, target: str | None = None) -> bool | str:  # ComfyUI calls it by this name
        """True when a bridge (or a chain of them) leads from ``source`` to ``target``, else ComfyUI's error text."""
        for name, value in (("source", source), ("target", target)):
            if value is not None and value not in MODEL_KEYS:
                return f"Prompt Bridge: unknown {name} model {value!r}; known models: {', '.join(MODEL_KEYS)}"
        if source is None or target is None:
            return True  # wired from another node: checked when it runs
        try:
            find_path(source, target)
        except ValueError as error:
            return f"Prompt Bridge: {error}"
        return True

    def translate(self, text: str, negative: str, source: str, target: str, width: int, height: int,
                  networks: str = "remove", dialect: str = "comfyui", disable_rules: str = "") -> tuple:
        if not text.strip():
            return (text, negative, width, height, "")  # an empty prompt stays empty: nothing to translate
        read, read_negative = to_a1111(text, dialect), to_a1111(negative, dialect) if negative.strip() else None
        embeddings = {**(read_negative.embeddings if read_negative else {}), **read.embeddings}
        disable = tuple(r.strip() for r in disable_rules.replace(",", " ").split() if r.strip())
        t = translate(read.text, source=source, target=target,
                      negative_prompt=read_negative.text if read_negative else "", networks=networks,
                      embeddings=tuple(embeddings), disable=disable, width=width, height=height)
        positive_out, negative_out = from_a1111(t.prompt, dialect, embeddings), from_a1111(t.negative_prompt, dialect,
                                                                                          embeddings)
        lines = _report(t, dialect, [*read.warnings, *(read_negative.warnings if read_negative else [])],
                        [*positive_out.warnings, *negative_out.warnings])
        for line in lines[1:]:
            LOG.log(logging.INFO if line.startswith("changed") else logging.WARNING, "Prompt Bridge: %s", line)
        return (positive_out.text, negative_out.text, t.recipe.width or width, t.recipe.height or height,
                "\n".join(lines))


def _report(t: Translation, dialect: str, reading: list[str], writing: list[str]) -> list[str]:
    """The report: a summary line, then one line per change, warning and notice (each once)."""
    lines: list[str] = []

    def add(line: str) -> None:
        if line not in lines:
            lines.append(line)

    for change in t.changes:
        add(f"changed ({change.rule}): {change.before!r} -> {change.after!r}")
    for warning in t.warnings:
        add("warning: " + warning.replace(_CLI_HINT, _NODE_HINT))
    for change in t.changes:
        kind = change.before[1:].split(":", 1)[0].lower() if change.before.startswith("<") else ""
        if change.rule == "networks" and not change.after and kind:
            add(f"notice: {change.before} was removed; ComfyUI reads such tags as plain text anyway: load a {kind} "
                f"made for {t.target} with a {_LOADERS.get(kind, 'loader')} node")
    for warning in reading:
        add(f"warning: reading {dialect}: {warning}")
    for warning in writing:
        if warning not in reading:  # the weights warning reads the same both ways
            add(f"notice: writing {dialect}: {warning}")
    for note in t.notes:
        add(f"note: {note}")
    counts = sum(line.startswith("changed") for line in lines), sum(line.startswith("warning") for line in lines)
    return [f"Prompt Bridge {t.source} -> {t.target}: {counts[0]} changes, {counts[1]} warnings", *lines]
