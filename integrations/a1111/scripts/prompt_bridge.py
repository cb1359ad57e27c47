"""prompt-bridge as an AUTOMATIC1111 extension: translate an SD1.x prompt (and its size) for the checkpoint you run.

Install from a clone (no PyPI release): link ``integrations/a1111`` into ``stable-diffusion-webui/extensions`` and
restart; ``integrations/a1111/README.md`` gives the steps. This file sits at ``<clone>/integrations/a1111/scripts``;
with links resolved, the clone root holds the ``bridge`` package, which goes on ``sys.path`` when it is not installed
(the core needs only the standard library, and ``tomli`` on Python 3.10, which ``install.py`` installs). A copied
folder with no clone behind it prints one line saying what to do and shows no UI.

Where each step runs, in A1111's order (``modules/processing.py``; the stand-in in ``tests/a1111_standin`` describes
it with the sources read):

- ``before_process`` (there since 1.4) runs before ``setup_prompts`` applies the selected styles, so a prompt
  rewritten there would miss the styles' SD1 text, embeddings and LoRAs. This extension does nothing in it.
- ``process`` runs after the styles and before ``p.init``, which fixes the hires target and the infotext's "Hires
  upscale"; the size, the hires-fix fields and a separate hires prompt are translated here. Other extensions'
  ``process`` (sd-dynamic-prompts expands ``{a|b}`` and wildcards there) may run after it, so no prompt is touched yet.
- ``before_process_batch`` sees each batch's final prompts (styles applied, templates expanded, prompt matrix
  lists): each is translated and written back into this batch's slice of ``p.all_prompts``,
  ``p.all_negative_prompts`` and ``p.all_hr_prompts`` / ``p.all_hr_negative_prompts``, which A1111 re-slices after
  ``postprocess_batch`` and writes into the infotext, and into the ``prompts`` list it encodes. This hook runs
  before A1111 strips ``<lora:...>`` tags, so removed LoRAs are never loaded.

The infotext says ``Prompt bridge: sd15->sd2, rules``; pasting such an infotext turns the checkbox off, so a
translated prompt is not translated again. Warnings go under the images (``p.comment``) and into the infotext.

A trained bridge folder (``bridge.json``, from training/train.py) in "Learned bridge folder" rewrites the prompts
instead of the rules bridge (its size and settings still come from the rules); it runs on CTranslate2 when the folder
holds its copy and ctranslate2 and tokenizers are installed in A1111's Python (no torch work), else on
transformers. It is loaded once per process (:func:`learned_bridge`) and reused by every generation.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import gradio as gr
from modules import scripts, shared

try:
    from modules.ui_components import InputAccordion  # A1111 1.6+
except ImportError:  # older: an accordion holding a checkbox
    InputAccordion = None

INFOTEXT_KEY = "Prompt bridge"
WARNINGS_KEY = "Prompt bridge warnings"
LOADED = "loaded checkpoint"  # the target choice resolved when generating
KEEP_LABEL = "Keep SD1 LoRA/hypernetwork tags and embeddings"
KEEP_HINT = f'tick "{KEEP_LABEL}" to keep it'  # in place of the rules' command-line hint
MISSING_CORE = (
    "prompt-bridge: the extension cannot find the bridge package; link integrations/a1111 from a prompt-bridge "
    "clone instead of copying it (ln -s /path/to/prompt-bridge/integrations/a1111 "
    "stable-diffusion-webui/extensions/prompt-bridge) and restart"
)


def locate_core(here: str | Path = __file__) -> str | None:
    """Make ``bridge`` importable: None when it is (installed, or the clone root added), else the message to show."""
    if importlib.util.find_spec("bridge") is not None:
        return None
    clone = Path(here).resolve().parents[3]  # <clone>/integrations/a1111/scripts/prompt_bridge.py, links resolved
    if not (clone / "bridge" / "__init__.py").is_file():
        return MISSING_CORE
    sys.path.insert(0, str(clone))
    importlib.invalidate_caches()
    return None


PROBLEM = locate_core()
if PROBLEM is None:
    from bridge.load import load_translator, make_recipe, translate
    from bridge.models import NoBridgeError, detect_model, find_path, get_model, list_bridges, list_models
    from bridge.recipe import Recipe
    from bridge.rules.stages import NETWORK_HINT
    from bridge.translation import TranslationOptions
else:
    print(PROBLEM, file=sys.stderr)

BRIDGE_FILE = "bridge.json"  # what marks a learned bridge folder (bridge/learned/bridge_info.py)
_LEARNED: dict = {}  # learned bridges loaded in this process, by (folder, backend)


def learned_bridge(folder: str, backend: str = "auto"):
    """The learned bridge in ``folder``, loaded once per process and reused (loading costs more than a generation's
    translations). Restart A1111 to load a changed folder."""
    key = (str(Path(folder).expanduser().resolve()), backend)
    if key not in _LEARNED:
        _LEARNED[key] = load_translator(key[0], backend=backend)
    return _LEARNED[key]


# routes -----------------------------------------------------------------------------------------------------------


def route(source: str, target: str) -> list | None:
    """The bridges from source to target, or None when there is no way."""
    try:
        return find_path(source, target)
    except NoBridgeError:
        return None


def source_choices() -> list[str]:
    """Models some bridge starts from, in registry order."""
    starts = {b.source for b in list_bridges()}
    return [m.key for m in list_models() if m.key in starts]


def target_choices(source: str) -> list[str]:
    """The loaded checkpoint, the source itself (passed through unchanged), then every model a route reaches."""
    reached = [m.key for m in list_models() if m.key != source and route(source, m.key)]
    return [LOADED, source, *reached]


def _update_targets(source: str, target: str):
    choices = target_choices(source)
    return gr.update(choices=choices, value=target if target in choices else LOADED)


def loaded_model(p) -> str | None:
    """The registered model of the loaded checkpoint: by its name and hash, else the family A1111 exposes."""
    model = getattr(shared, "sd_model", None)
    info = getattr(model, "sd_checkpoint_info", None)
    name = getattr(p, "sd_model_name", None) or getattr(info, "name_for_extra", None)
    digest = getattr(p, "sd_model_hash", None) or getattr(model, "sd_model_hash", None)
    found = detect_model(name, digest) if name or digest else None
    if found is not None:
        return found.key
    if getattr(model, "is_sdxl", False):
        return "sdxl"
    if getattr(model, "is_sd2", False):
        return "sd21" if getattr(model, "parameterization", "") == "v" else "sd21-base"
    if getattr(model, "is_sd1", False):
        return "sd15"
    return None


def _comment(p, text: str) -> None:
    print(f"[prompt-bridge] {text}")
    if hasattr(p, "comment"):
        p.comment(f"Prompt bridge: {text}")


def _pasted(params: dict):
    """infotext_fields: an infotext that was translated already turns the checkbox off (else leaves it)."""
    return False if INFOTEXT_KEY in params else None


# one generation ---------------------------------------------------------------------------------------------------


class Run:
    """What one generation translates with; remembers translations and the warnings already shown."""

    def __init__(self, source: str, target: str, label: str, networks: str, learned=None):
        self.source, self.target, self.label, self.networks = source, target, label, networks
        self.learned = learned  # a learned bridge for the pair, or None for the rules bridge
        self.memo: dict[tuple[str, str], tuple[str, str]] = {}
        self.warnings: list[str] = []

    def pair(self, p, prompt: str, negative: str) -> tuple[str, str]:
        key = (prompt, negative)
        if key not in self.memo:
            self.memo[key] = self._translate(p, prompt, negative)
        return self.memo[key]

    def _translate(self, p, prompt: str, negative: str) -> tuple[str, str]:
        if not prompt.strip():
            return prompt, negative  # nothing to translate (the rules bridge refuses an empty prompt)
        try:
            if self.learned is not None:
                t = self.learned.translate(make_recipe(prompt, negative or ""), TranslationOptions(networks=self.networks))
            else:
                t = translate(prompt, source=self.source, target=self.target, negative_prompt=negative or "",
                              networks=self.networks)
        except ValueError as error:
            self.warn(p, f"left as written: {error}")
            return prompt, negative
        for warning in t.warnings:  # this extension's control, not the command line's flags
            self.warn(p, warning.replace(NETWORK_HINT, KEEP_HINT))
        return t.prompt, t.negative_prompt

    def warn(self, p, text: str) -> None:
        if text in self.warnings:
            return
        self.warnings.append(text)
        _comment(p, text)
        p.extra_generation_params[WARNINGS_KEY] = " | ".join(self.warnings)


def _each(value, fn):
    return [fn(v) for v in value] if isinstance(value, list) else fn(value)


def resize(p, run: Run) -> None:
    """The target's size before ``p.init``, and the hires-fix fields so the final size stays the one asked for."""
    old = (p.width, p.height)
    extra = {}
    hires = bool(getattr(p, "enable_hr", False)) and hasattr(p, "hr_scale")
    by_scale = hires and not p.hr_resize_x and not p.hr_resize_y
    if by_scale:
        extra["Hires upscale"] = format(float(p.hr_scale), "g")
    elif hires and p.hr_resize_x and p.hr_resize_y:
        extra["Hires resize"] = f"{p.hr_resize_x}x{p.hr_resize_y}"
    t = translate(Recipe(prompt="x", width=old[0], height=old[1], extra=extra), source=run.source, target=run.target)
    new = (t.recipe.width, t.recipe.height)
    if not all(new):
        return
    p.width, p.height = new
    if not extra:
        return
    if not any(key in t.recipe.extra for key in extra):
        p.enable_hr = False  # the core's rule: the new base size already reaches the final size
        _comment(p, f"hires fix not needed: {new[0]}x{new[1]} already reaches the size it would upscale to")
    elif by_scale:
        final = (round(old[0] * p.hr_scale), round(old[1] * p.hr_scale))
        factor = float(t.recipe.extra["Hires upscale"])
        if (int(new[0] * factor), int(new[1] * factor)) == final:
            p.hr_scale = factor
        else:  # a rounded factor would miss it by a few pixels: ask for the size itself
            p.hr_resize_x, p.hr_resize_y = final


class Script(scripts.Script):
    def title(self) -> str:
        return "Prompt bridge"

    def show(self, is_img2img: bool):
        return scripts.AlwaysVisible if PROBLEM is None else False

    def ui(self, is_img2img: bool) -> list:
        label = "Prompt bridge: translate the prompt for the target model"
        if InputAccordion is not None:
            with InputAccordion(False, label=label, elem_id=self.elem_id("enabled")) as enabled:
                controls = self._controls(is_img2img)
        else:
            with gr.Accordion(label, open=False, elem_id=self.elem_id("accordion")):
                enabled = gr.Checkbox(label="Translate the prompt for the target model", value=False,
                                      elem_id=self.elem_id("enabled"))
                controls = self._controls(is_img2img)
        self.infotext_fields = [(enabled, _pasted)]
        return [enabled, *controls]

    def _controls(self, is_img2img: bool) -> list:
        source = gr.Dropdown(label="Written for", choices=source_choices(), value="sd15", elem_id=self.elem_id("source"))
        target = gr.Dropdown(label="Generate with", choices=target_choices("sd15"), value=LOADED,
                             elem_id=self.elem_id("target"))
        source.change(fn=_update_targets, inputs=[source, target], outputs=[target])
        keep_networks = gr.Checkbox(label=KEEP_LABEL, value=False,
                                    elem_id=self.elem_id("keep_networks"))
        # img2img and inpaint: a new size would resize the init image, so it is off there unless asked for
        set_size = gr.Checkbox(label="Also set the target's size (and the hires fix)", value=not is_img2img,
                               elem_id=self.elem_id("set_size"))
        folder = gr.Textbox(label="Learned bridge folder (optional: a trained bridge for this pair)", value="",
                            placeholder="empty: the rules bridge", elem_id=self.elem_id("bridge_folder"))
        return [source, target, keep_networks, set_size, folder]

    def process(self, p, enabled: bool, source: str, target: str, keep_networks: bool, set_size: bool,
                bridge_folder: str = ""):
        """After styles, before ``p.init``: pick the route (or the learned bridge), translate the size, hires fields
        and hires prompt."""
        p._prompt_bridge = None
        if not enabled or PROBLEM is not None:
            return
        if target == LOADED:
            target = loaded_model(p)
            if target is None:
                _comment(p, "cannot tell which model the loaded checkpoint is; pick it under \"Generate with\"")
                return
        source, target = get_model(source).key, get_model(target).key
        if source == target:
            _comment(p, f"{source} -> {target} is the same model: the prompt is passed through unchanged")
            return
        hops = route(source, target)
        if hops is None:
            _comment(p, f"no bridge from {source} to {target}; the prompt is left as written")
            return
        kinds = "+".join(dict.fromkeys(hop.kind for hop in hops))
        learned = None
        if bridge_folder and bridge_folder.strip():
            learned = self._learned(p, bridge_folder.strip(), source, target)
            if learned is None:
                return
            kinds = "seq2seq"
        run = Run(source, target, f"{source}->{target}, {kinds}", "keep" if keep_networks else "remove", learned)
        p._prompt_bridge = run
        p.extra_generation_params[INFOTEXT_KEY] = run.label
        if set_size:
            resize(p, run)
        if getattr(p, "enable_hr", False) and tuple(_each(p.hr_prompt, str)) != tuple(_each(p.prompt, str)):
            # a separate hires prompt: init writes it into the infotext as "Hires prompt"
            p.hr_prompt = _each(p.hr_prompt, lambda text: run.pair(p, text, "")[0])

    def _learned(self, p, folder: str, source: str, target: str):
        """The learned bridge in ``folder`` for source -> target, or None (with a comment saying why: the prompt is
        then left as written)."""
        if not (Path(folder).expanduser() / BRIDGE_FILE).is_file():
            _comment(p, f"no {BRIDGE_FILE} in the learned bridge folder {folder!r}; the prompt is left as written")
            return None
        try:
            learned = learned_bridge(folder)
        except (ValueError, OSError, ImportError) as error:
            _comment(p, f"cannot load the learned bridge {folder!r} ({error}); the prompt is left as written")
            return None
        if (learned.source, learned.target) != (source, target):
            _comment(p, f"the learned bridge {folder!r} translates {learned.source} -> {learned.target}, not "
                        f"{source} -> {target}; the prompt is left as written")
            return None
        print(f"[prompt-bridge] learned bridge {folder} on {learned.backend}")
        return learned

    def before_process_batch(self, p, *args, batch_number: int = 0, prompts: list | None = None, **kwargs):
        """This batch's final prompts, translated and written back where A1111 reads them again."""
        run = getattr(p, "_prompt_bridge", None)
        if run is None or prompts is None:
            return
        start = batch_number * p.batch_size
        for i in range(start, min(start + len(prompts), len(p.all_prompts))):
            prompt, negative = run.pair(p, p.all_prompts[i], p.all_negative_prompts[i])
            p.all_prompts[i], p.all_negative_prompts[i] = prompt, negative
            prompts[i - start] = prompt
            if getattr(p, "negative_prompts", None) is not None and i - start < len(p.negative_prompts):
                p.negative_prompts[i - start] = negative
            if getattr(p, "enable_hr", False) and getattr(p, "all_hr_prompts", None):
                p.all_hr_prompts[i], p.all_hr_negative_prompts[i] = run.pair(p, p.all_hr_prompts[i],
                                                                             p.all_hr_negative_prompts[i])
        if batch_number == 0 and hasattr(p, "main_prompt"):
            p.main_prompt, p.main_negative_prompt = p.all_prompts[0], p.all_negative_prompts[0]
