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
from pathlib import Path

from bridge.dialects import from_a1111, from_a1111_parts, to_a1111
from bridge.load import load_translator, make_recipe
from bridge.models import NoBridgeError, find_path, get_model, list_models
from bridge.rules.stages import NETWORK_HINT
from bridge.translation import Translation, TranslationOptions, Translator, translate

MODEL_KEYS = [m.key for m in list_models()]
LOG = logging.getLogger("prompt_bridge")

_NODE_HINT = "set the node's networks input to keep to keep it"
_LOADERS = {"lora": "LoraLoader", "lyco": "LoraLoader", "hypernet": "HypernetworkLoader"}
WEIGHTS = ["as written", "rescale for ComfyUI"]
_RESCALED = ("weights rescaled for ComfyUI: each weight times A1111's mean-restoring factor for its 75-token chunk "
             "(an estimate; see the README)")
_SAME_MODEL = "the same model on both sides: the prompt passes through unchanged"
BRIDGE_FILE = "bridge.json"  # what marks a learned bridge folder (bridge/learned/bridge_info.py)
_LEARNED: dict[tuple[str, str], Translator] = {}  # learned bridges loaded in this process, by (folder, backend)


def learned_bridge(folder: str, backend: str = "auto") -> Translator:
    """The learned bridge in ``folder``, loaded once per process and reused: ComfyUI runs the node for every queued
    prompt, and loading costs more than translating. On CTranslate2 when the folder holds its copy and ctranslate2
    and tokenizers are installed (no torch), else on transformers. Restart ComfyUI to load a changed folder."""
    key = (str(Path(folder).expanduser().resolve()), backend)
    if key not in _LEARNED:
        _LEARNED[key] = load_translator(key[0], backend=backend)
    return _LEARNED[key]


def _same_model(source: str, target: str) -> str | None:
    """The model's key when ``source`` and ``target`` name one model (sd2 and sd21 are one), else None."""
    key = get_model(source).key
    return key if key == get_model(target).key else None


def _check_bridge_folder(folder: str) -> str | None:
    """None for no folder or a bridge folder, else the error to show."""
    if folder.strip() and not (Path(folder.strip()).expanduser() / BRIDGE_FILE).is_file():
        return (f"Prompt Bridge: no {BRIDGE_FILE} in bridge_folder {folder.strip()!r}: give a folder written by "
                "prompt-bridge's training/train.py, or leave it empty for the rules bridge")
    return None


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
                "weights": (WEIGHTS, {"default": WEIGHTS[0], "tooltip": (
                    "as written: the A1111 numbers; rescale for ComfyUI: weaker where much of a 75-token chunk is "
                    "weighted, as A1111 restores the mean after weighting and ComfyUI does not")}),
                "bridge_folder": ("STRING", {"default": "", "tooltip": (
                    "a trained bridge folder (bridge.json) for this source and target: the learned bridge rewrites "
                    "the prompt, on CTranslate2 when the folder holds its copy (pip install ctranslate2 tokenizers); "
                    "empty: the rules bridge")}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, source: str | None = None, target: str | None = None,  # ComfyUI calls it by this name
                        bridge_folder: str | None = None) -> bool | str:
        """True when a bridge (or a chain of them) leads from ``source`` to ``target`` and ``bridge_folder`` is empty
        or a bridge folder, else ComfyUI's error text."""
        problem = _check_bridge_folder(bridge_folder) if bridge_folder is not None else None
        if problem:
            return problem
        for name, value in (("source", source), ("target", target)):
            if value is not None and value not in MODEL_KEYS:
                return f"Prompt Bridge: unknown {name} model {value!r}; known models: {', '.join(MODEL_KEYS)}"
        if source is None or target is None:
            return True  # wired from another node: checked when it runs
        if _same_model(source, target):
            return True  # passed through unchanged
        try:
            find_path(source, target)
        except ValueError as error:
            return f"Prompt Bridge: {error}"
        return True

    def translate(self, text: str, negative: str, source: str, target: str, width: int, height: int,
                  networks: str = "remove", dialect: str = "comfyui", disable_rules: str = "",
                  weights: str = WEIGHTS[0], bridge_folder: str = "") -> tuple:
        if not text.strip():
            return (text, negative, width, height, "")  # an empty prompt stays empty: nothing to translate
        same = _same_model(source, target)
        if same:  # nothing to translate: the prompt exactly as given, not even rewritten in its dialect
            LOG.info("Prompt Bridge: %s", _SAME_MODEL)
            return (text, negative, width, height, f"Prompt Bridge {same} -> {same}: {_SAME_MODEL}")
        t, embeddings, reading = _translate(text, negative, source, target, width, height, networks, dialect,
                                            disable_rules, bridge_folder)
        rescale = _rescale(weights, dialect)
        positive_out = from_a1111(t.prompt, dialect, embeddings, rescale=rescale)
        negative_out = from_a1111(t.negative_prompt, dialect, embeddings, rescale=rescale)
        lines = _report(t, dialect, reading, [*positive_out.warnings, *negative_out.warnings], rescale)
        return (positive_out.text, negative_out.text, t.recipe.width or width, t.recipe.height or height,
                "\n".join(lines))


MAX_PARTS = 4


class PromptBridgeParts(PromptBridge):
    """The translated prompt's BREAK and AND parts, each for its own CLIPTextEncode (ComfyUI's syntax out).

    ``part_1`` … ``part_4`` in prompt order (unused ones empty), ``count`` (how many are used) and ``layout``, the
    joins: ``part_1 BREAK part_2 AND part_3`` means ConditioningConcat(conditioning_to=part_1,
    conditioning_from=part_2), then ConditioningCombine of that and part_3. Parts past the fourth are joined into
    ``part_4`` with ", ", with a warning. The negative prompt is one string, its BREAKs flattened as in Prompt Bridge.
    """

    RETURN_TYPES = (*("STRING",) * MAX_PARTS, "INT", "STRING", "STRING", "INT", "INT", "STRING")
    RETURN_NAMES = (*(f"part_{n}" for n in range(1, MAX_PARTS + 1)), "count", "layout", "negative", "width",
                    "height", "report")
    OUTPUT_TOOLTIPS = (
        *(f"part {n} of the translated prompt: encode it with its own CLIPTextEncode" for n in range(1, MAX_PARTS + 1)),
        "how many parts are used (the rest are empty: leave them unwired)",
        "how to join the encoded parts: BREAK = ConditioningConcat, AND = ConditioningCombine",
        "the negative prompt for the target model",
        "a width the target model renders well",
        "a height the target model renders well",
        "what changed, warnings and what to do in ComfyUI: show it with a Preview Any node",
    )
    FUNCTION = "translate_parts"

    @classmethod
    def INPUT_TYPES(cls) -> dict:  # ComfyUI calls it by this name
        inputs = super().INPUT_TYPES()
        # BREAK and AND are A1111's: ComfyUI's syntax has no such operators, so the prompt is read as A1111 by default
        inputs["optional"]["dialect"] = (["a1111", "comfyui"], {"default": "a1111", "tooltip": (
            "how the prompt is written; the parts come out in ComfyUI's syntax either way")})
        return inputs
    DESCRIPTION = ("Like Prompt Bridge, with the translated prompt's BREAK and AND parts apart, for ConditioningConcat "
                   "and ConditioningCombine.")

    def translate_parts(self, text: str, negative: str, source: str, target: str, width: int, height: int,
                        networks: str = "remove", dialect: str = "a1111", disable_rules: str = "",
                        weights: str = WEIGHTS[0], bridge_folder: str = "") -> tuple:
        empty = ("",) * (MAX_PARTS - 1)
        if not text.strip():
            return (text, *empty, 0, "", negative, width, height, "")  # nothing to translate, no part to encode
        t, embeddings, reading = _translate(text, negative, source, target, width, height, networks, dialect,
                                            disable_rules, bridge_folder)
        rescale = _rescale(weights, "comfyui")
        clauses, writing = from_a1111_parts(t.prompt, embeddings, rescale=rescale)
        negative_out = from_a1111(t.negative_prompt, "comfyui", embeddings, rescale=rescale)
        slots = [(number, part) for number, parts in enumerate(clauses) for part in parts]
        if len(slots) > MAX_PARTS:
            writing.append(f"{len(slots)} parts: this node has {MAX_PARTS} outputs, parts {MAX_PARTS}-{len(slots)} "
                           f"are joined into part_{MAX_PARTS} with ', '")
            slots[MAX_PARTS - 1:] = [(slots[MAX_PARTS - 1][0], ", ".join(part for _, part in slots[MAX_PARTS - 1:]))]
        layout = " ".join(("" if i == 0 else "AND " if slots[i - 1][0] != number else "BREAK ") + f"part_{i + 1}"
                          for i, (number, _) in enumerate(slots))
        lines = _report(t, "comfyui", reading, [*writing, *negative_out.warnings], rescale)
        lines.insert(1, f"layout: {layout}")
        texts = [part for _, part in slots] + [""] * (MAX_PARTS - len(slots))
        return (*texts, len(slots), layout, negative_out.text, t.recipe.width or width, t.recipe.height or height,
                "\n".join(lines))


def _translate(text: str, negative: str, source: str, target: str, width: int, height: int, networks: str,
               dialect: str, disable_rules: str, bridge_folder: str = ""
               ) -> tuple[Translation, dict[str, str], list[str]]:
    """The translation of the prompts read in ``dialect`` (by the learned bridge in ``bridge_folder``, or the rules
    bridge), the embeddings read, and the reading's warnings."""
    read, read_negative = to_a1111(text, dialect), to_a1111(negative, dialect) if negative.strip() else None
    embeddings = {**(read_negative.embeddings if read_negative else {}), **read.embeddings}
    disable = tuple(r.strip() for r in disable_rules.replace(",", " ").split() if r.strip())
    negative_text = read_negative.text if read_negative else ""
    same = _same_model(source, target)
    if same:  # (the parts node: the prompt read and split, nothing translated)
        recipe = make_recipe(read.text, negative_text, width=width, height=height)
        t = Translation(recipe, same, same, original=recipe, notes=[_SAME_MODEL])
    elif bridge_folder.strip():
        problem = _check_bridge_folder(bridge_folder)
        if problem:
            raise ValueError(problem)
        learned = learned_bridge(bridge_folder.strip())
        pair = (get_model(source).key, get_model(target).key)
        if pair != (learned.source, learned.target):
            raise ValueError(f"Prompt Bridge: the learned bridge in {bridge_folder.strip()!r} translates "
                             f"{learned.source} -> {learned.target}, not {pair[0]} -> {pair[1]}: set source and "
                             "target to its pair, or leave bridge_folder empty")
        options = TranslationOptions(networks=networks, embeddings=tuple(embeddings), disable=disable)
        t = learned.translate(make_recipe(read.text, negative_text, width=width, height=height), options)
        t.notes = [*t.notes, f"translated by the learned bridge in {bridge_folder.strip()} on {learned.backend}"]
    else:
        try:
            t = translate(read.text, source=source, target=target, negative_prompt=negative_text, networks=networks,
                          embeddings=tuple(embeddings), disable=disable, width=width, height=height)
        except NoBridgeError as error:  # source and target wired from other nodes, so VALIDATE_INPUTS let them by
            raise ValueError(f"Prompt Bridge: {error}") from None
    return t, embeddings, [*read.warnings, *(read_negative.warnings if read_negative else [])]


def _rescale(weights: str, dialect: str) -> bool:
    if weights not in WEIGHTS:
        raise ValueError(f"Prompt Bridge: unknown weights option {weights!r}; valid: {', '.join(WEIGHTS)}")
    return weights == WEIGHTS[1] and dialect == "comfyui"


def _report(t: Translation, dialect: str, reading: list[str], writing: list[str], rescale: bool = False) -> list[str]:
    """The report: a summary line, then one line per change, warning and notice (each once)."""
    lines: list[str] = []

    def add(line: str) -> None:
        if line not in lines:
            lines.append(line)

    for change in t.changes:
        add(f"changed ({change.rule}): {change.before!r} -> {change.after!r}")
    for warning in t.warnings:
        add("warning: " + warning.replace(NETWORK_HINT, _NODE_HINT))
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
    if rescale:
        add(f"notice: {_RESCALED}")
    for note in t.notes:
        add(f"note: {note}")
    counts = sum(line.startswith("changed") for line in lines), sum(line.startswith("warning") for line in lines)
    for line in lines:
        LOG.log(logging.INFO if line.startswith("changed") else logging.WARNING, "Prompt Bridge: %s", line)
    return [f"Prompt Bridge {t.source} -> {t.target}: {counts[0]} changes, {counts[1]} warnings", *lines]
