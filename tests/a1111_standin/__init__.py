"""A stand-in for AUTOMATIC1111's stable-diffusion-webui, enough to run an extension's script module as A1111 does.

A1111 is AGPL and cannot run here (no weights), so this is written from a reading of its source, in my own words and
code: nothing is copied. What was read (search tool, ``read_file``): ``modules/processing.py`` at commit
0027ce1f6e58c5f4279173e468a60aef420babfe (the 1.6 line: refiner, ``rng.ImageRNG``, hires checkpoint),
``modules/scripts.py`` at 036500223de0a3caaa86360a8ad3ed301e4367b0, ``modules/launch_utils.py``
(``run_extension_installer``), ``modules/ui_components.py`` (``InputAccordion``, 1.6+), and sd-dynamic-prompts'
``sd_dynamic_prompts/dynamic_prompting.py`` at 00ff3995379f27e98666c51d39b645f462fa4e12 (``Script.process``).

The call order of one generation (``process_images`` / ``process_images_inner`` in modules/processing.py):

1. ``process_images``: every always-on script's ``before_process(p, *args)`` (ScriptRunner.before_process). The
   prompts are still what the user typed; styles are not applied yet. Then settings overrides (checkpoint) load.
2. ``process_images_inner``: ``p.sd_model_name`` / ``p.sd_model_hash`` are read from the loaded checkpoint, then
   ``p.setup_prompts()`` (StableDiffusionProcessing.setup_prompts): ``all_prompts`` is ``p.prompt`` when that is a
   list (prompt matrix), else ``batch_size * n_iter`` copies; the same for the negatives; then the selected styles
   are applied to each (``shared.prompt_styles.apply_styles_to_prompt``); ``main_prompt`` = ``all_prompts[0]``. The
   txt2img override (StableDiffusionProcessingTxt2Img.setup_prompts) does the same for ``hr_prompt`` into
   ``all_hr_prompts`` / ``all_hr_negative_prompts`` when hires fix is on (an empty hr prompt means the main one).
3. Seeds (``all_seeds``), then every always-on script's ``process(p, *args)``. sd-dynamic-prompts does its work
   here: it reads ``all_prompts[0]`` (the styled template, ``get_prompts``), expands ``{a|b}`` and ``__wildcards__``
   into new ``p.all_prompts`` / ``p.all_negative_prompts`` lists, sets ``n_iter`` and ``all_seeds``, and puts the
   template back into ``p.prompt``. Scripts run in load order (extension folders sorted by name), so an extension
   named prompt-bridge runs its ``process`` before sd-dynamic-prompts does.
4. ``p.init(all_prompts, all_seeds, all_subseeds)`` (txt2img ``init``): with hires fix on it records "Hires prompt"
   when ``hr_prompt`` differs from ``prompt`` and computes the hires target in ``calculate_target_resolution``:
   "Hires upscale" (``int(width * hr_scale)``) or "Hires resize" (``hr_resize_x/y``) goes into
   ``extra_generation_params``. So size and ``hr_scale`` must be final before this step.
5. For each batch ``n``: ``p.prompts`` / ``p.negative_prompts`` / seeds are sliced from the ``all_*`` lists,
   ``p.rng`` is built from ``p.width`` / ``p.height``, then ``before_process_batch(p, batch_number=n,
   prompts=p.prompts, seeds=..., subseeds=...)``; then ``parse_extra_network_prompts`` strips ``<lora:...>`` tags
   from ``p.prompts`` (txt2img: and slices ``hr_prompts`` from ``all_hr_prompts``); then ``process_batch``; on batch
   0 params.txt is written from ``Processed(p).infotext`` (which reads ``p.all_prompts``); ``setup_conds`` encodes
   ``p.prompts`` / ``p.negative_prompts``; ``p.sample`` runs, and with hires fix the second pass
   (``sample_hr_pass``: upscale to ``hr_upscale_to_x/y``, ``before_hr``, encode ``hr_prompts``) happens inside it.
6. ``postprocess_batch(p, images, batch_number=n)``; right after it ``p.prompts`` and ``p.negative_prompts`` are
   sliced again from ``p.all_prompts`` / ``p.all_negative_prompts`` (so a change made only to the ``prompts=`` list
   is lost here), then ``postprocess_batch_list``.
7. Each image's infotext: ``create_infotext(p, p.prompts, p.seeds, p.subseeds, index=i,
   all_negative_prompts=p.negative_prompts)``: the prompt, "Negative prompt:", then "Steps", "Size", ... and every
   ``p.extra_generation_params`` entry, a value quoted (JSON) when it holds a comma, colon or newline; it becomes the
   PNG's ``parameters``. ``p.comment(text)`` collects lines shown under the images (``Processed.comments``).
8. After the loop: the grid's infotext uses ``p.main_prompt``; ``postprocess(p, processed)``.

Pasting infotext (modules/generation_parameters_copypaste, later infotext_utils): each script's
``infotext_fields`` pairs a component with a key or a callable; the callable receives the parsed parameters and its
non-None result becomes the component's value.

Extension install (modules/launch_utils.run_extension_installer): A1111 runs ``<extension>/install.py`` with its own
Python, ``PYTHONPATH`` set to the webui folder, so ``import launch`` works there and ``launch.run_pip(args, desc)``
runs ``python -m pip <args>``; ``launch.is_installed(name)`` asks whether a distribution is present.

This package provides ``gradio`` (components record their arguments), ``modules.scripts``, ``modules.shared``,
``modules.ui_components`` and ``launch``; ``install()`` puts them in ``sys.modules`` and ``load_extension`` imports
the extension's script module from its path, as A1111's ``script_loading.load_module`` does.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# gradio -----------------------------------------------------------------------------------------------------------

_UI: list = []  # every component created, in order


class Component:
    def __init__(self, value=None, **kwargs):
        self.value = value if value is not None else kwargs.get("value")
        self.kwargs = kwargs
        self.elem_id = kwargs.get("elem_id")
        self.listeners: list = []
        _UI.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def change(self, fn=None, inputs=None, outputs=None, **kwargs):
        self.listeners.append((fn, inputs or [], outputs or []))

    def fire(self, value):
        """The user changes this component: its value, then each change listener's outputs."""
        self.value = value
        for fn, inputs, outputs in self.listeners:
            if fn is None:
                continue
            result = fn(*[c.value for c in inputs])
            results = result if isinstance(result, tuple) else (result,)
            for out, res in zip(outputs, results):
                apply_update(out, res)


def apply_update(component: Component, update) -> None:
    if isinstance(update, dict) and update.get("__type__") == "update":
        for key, value in update.items():
            if key == "value":
                component.value = value
            elif key != "__type__":
                component.kwargs[key] = value
    elif update is not None:
        component.value = update


def _gradio() -> types.ModuleType:
    gr = types.ModuleType("gradio")
    for name in ("Checkbox", "Dropdown", "Markdown", "HTML", "Textbox", "Slider"):
        setattr(gr, name, type(name, (Component,), {}))
    for name in ("Accordion", "Row", "Column", "Group", "Blocks"):
        setattr(gr, name, type(name, (Component,), {}))
    gr.update = lambda **kwargs: {"__type__": "update", **kwargs}
    gr.ui = _UI
    return gr


# modules.scripts / shared / ui_components ---------------------------------------------------------------------


class Script:
    """The base class extensions subclass (modules/scripts.py); hooks default to doing nothing."""

    infotext_fields = None
    is_img2img = False

    def title(self):
        raise NotImplementedError

    def elem_id(self, item_id):
        # script_<tab>_<title, lower case, spaces as _, other characters dropped>_<item>
        tab = ("img2img_" if self.is_img2img else "txt2img_") if self.show(True) == self.show(False) else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tab}{title}_{item_id}"

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess(self, p, processed, *args):
        pass


class StyleDatabase:
    """shared.prompt_styles: a style's text replaces "{prompt}" with the prompt, or is appended after a comma."""

    def __init__(self, styles: dict[str, tuple[str, str]] | None = None):
        self.styles = dict(styles or {})

    @staticmethod
    def _apply(text: str, prompt: str) -> str:
        if "{prompt}" in text:
            return text.replace("{prompt}", prompt)
        return ", ".join(part for part in (prompt, text) if part)

    def apply_styles_to_prompt(self, prompt, styles):
        for name in styles:
            prompt = self._apply(self.styles[name][0], prompt)
        return prompt

    def apply_negative_styles_to_prompt(self, prompt, styles):
        for name in styles:
            prompt = self._apply(self.styles[name][1], prompt)
        return prompt


@dataclass
class CheckpointInfo:
    name_for_extra: str


@dataclass
class SdModel:
    """shared.sd_model: what the extension may read (checkpoint info, hash, the family flags of 1.5+)."""

    name: str = "v1-5-pruned-emaonly"
    sd_model_hash: str | None = None
    is_sd1: bool = True
    is_sd2: bool = False
    is_sdxl: bool = False
    parameterization: str = "eps"

    @property
    def sd_checkpoint_info(self):
        return CheckpointInfo(self.name)


def _modules(with_input_accordion: bool) -> dict[str, types.ModuleType]:
    gr = sys.modules["gradio"]
    modules = types.ModuleType("modules")
    modules.__path__ = []
    scripts = types.ModuleType("modules.scripts")
    scripts.Script, scripts.AlwaysVisible = Script, object()
    scripts.basedir = lambda: ""
    shared = types.ModuleType("modules.shared")
    shared.opts = types.SimpleNamespace()
    shared.sd_model = SdModel()
    shared.prompt_styles = StyleDatabase()
    ui_components = types.ModuleType("modules.ui_components")
    if with_input_accordion:
        class InputAccordion(gr.Checkbox):
            """1.6+: a checkbox whose value is whether its accordion is open; used as a context manager."""

        ui_components.InputAccordion = InputAccordion
    modules.scripts, modules.shared, modules.ui_components = scripts, shared, ui_components
    launch = types.ModuleType("launch")
    launch.pip_calls, launch.installed = [], set()
    launch.run_pip = lambda command, desc=None, live=False: launch.pip_calls.append((command, desc))
    launch.is_installed = lambda name: name in launch.installed
    return {"modules": modules, "modules.scripts": scripts, "modules.shared": shared,
            "modules.ui_components": ui_components, "launch": launch}


@contextmanager
def install(with_input_accordion: bool = True):
    """gradio, modules.* and launch in sys.modules for the duration; what was there before comes back after."""
    names = ("gradio", "modules", "modules.scripts", "modules.shared", "modules.ui_components", "launch")
    saved = {name: sys.modules.get(name) for name in names}
    _UI.clear()
    sys.modules["gradio"] = _gradio()
    sys.modules.update(_modules(with_input_accordion))
    try:
        yield types.SimpleNamespace(**{n.split(".")[-1]: sys.modules[n] for n in names})
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_extension(path: Path, name: str = "prompt_bridge_a1111_script") -> types.ModuleType:
    """Import a script file by its path, as modules/script_loading.load_module does."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# processing -------------------------------------------------------------------------------------------------------

_NETWORK = re.compile(r"<(\w+):([^>]+)>")


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",\n:") else text


@dataclass
class Processing:
    """The StableDiffusionProcessing fields the hooks and the loop touch (txt2img when ``img2img`` is False)."""

    prompt: str | list = ""
    negative_prompt: str | list = ""
    width: int = 512
    height: int = 512
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 20
    seed: int = 1
    styles: list = field(default_factory=list)
    img2img: bool = False
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_prompt: str | list = ""
    hr_negative_prompt: str | list = ""
    extra_generation_params: dict = field(default_factory=dict)
    comments: dict = field(default_factory=dict)

    def comment(self, text):
        self.comments[text] = 1

    def setup_prompts(self):
        styles = sys.modules["modules.shared"].prompt_styles
        if isinstance(self.prompt, list):
            self.all_prompts = list(self.prompt)
        elif isinstance(self.negative_prompt, list):
            self.all_prompts = [self.prompt] * len(self.negative_prompt)
        else:
            self.all_prompts = [self.prompt] * (self.batch_size * self.n_iter)
        negative = self.negative_prompt
        self.all_negative_prompts = list(negative) if isinstance(negative, list) else [negative] * len(self.all_prompts)
        self.all_prompts = [styles.apply_styles_to_prompt(x, self.styles) for x in self.all_prompts]
        self.all_negative_prompts = [styles.apply_negative_styles_to_prompt(x, self.styles)
                                     for x in self.all_negative_prompts]
        self.main_prompt, self.main_negative_prompt = self.all_prompts[0], self.all_negative_prompts[0]
        self.all_hr_prompts = self.all_hr_negative_prompts = None
        if self.img2img or not self.enable_hr:
            return
        if self.hr_prompt == "":
            self.hr_prompt = self.prompt
        if self.hr_negative_prompt == "":
            self.hr_negative_prompt = self.negative_prompt
        count = self.batch_size * self.n_iter
        hr, hr_neg = self.hr_prompt, self.hr_negative_prompt
        self.all_hr_prompts = [styles.apply_styles_to_prompt(x, self.styles)
                               for x in (hr if isinstance(hr, list) else [hr] * count)]
        self.all_hr_negative_prompts = [styles.apply_negative_styles_to_prompt(x, self.styles)
                                        for x in (hr_neg if isinstance(hr_neg, list) else [hr_neg] * count)]

    def init(self):
        if self.img2img or not self.enable_hr:
            return
        if tuple(self.hr_prompt) != tuple(self.prompt):
            self.extra_generation_params["Hires prompt"] = self.hr_prompt
        if self.hr_resize_x == 0 and self.hr_resize_y == 0:
            self.extra_generation_params["Hires upscale"] = self.hr_scale
            self.hr_upscale_to = (int(self.width * self.hr_scale), int(self.height * self.hr_scale))
        else:
            self.extra_generation_params["Hires resize"] = f"{self.hr_resize_x}x{self.hr_resize_y}"
            self.hr_upscale_to = (self.hr_resize_x, self.hr_resize_y)  # both given in these tests


def create_infotext(p: Processing, prompts, negatives, index: int) -> str:
    params = {"Steps": p.steps, "Seed": p.seeds[index], "Size": f"{p.width}x{p.height}",
              "Model hash": p.sd_model_hash, "Model": p.sd_model_name, **p.extra_generation_params}
    line = ", ".join(f"{k}: {_quote(v)}" for k, v in params.items() if v is not None)
    negative = f"\nNegative prompt: {negatives[index]}" if negatives[index] else ""
    return f"{prompts[index]}{negative}\n{line}"


def parse_infotext(text: str) -> dict[str, str]:
    """The parameters line of an infotext as a dict (what a script's infotext_fields callables receive)."""
    *_, line = text.strip().split("\n")
    return {k: json.loads(v) if v.startswith('"') else v
            for k, v in re.findall(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)', line)}


def paste(script: Script, text: str) -> None:
    """Paste infotext into the UI: each infotext_fields entry sets its component when it has a value."""
    params = parse_infotext(text)
    for component, key in script.infotext_fields or []:
        value = key(params) if callable(key) else params.get(key)
        if value is not None:
            apply_update(component, value)


@dataclass
class Processed:
    images: list
    infotexts: list
    comments: str
    params_txt: str


def process_images(p: Processing, scripts: list[tuple[Script, list]], model: SdModel | None = None) -> Processed:
    """One generation, the hooks called in A1111's order (see the module docstring); images are dicts saying what
    was encoded at which size."""
    for script, args in scripts:
        script.before_process(p, *args)
    model = model or sys.modules["modules.shared"].sd_model
    p.sd_model_name, p.sd_model_hash = model.sd_checkpoint_info.name_for_extra, model.sd_model_hash
    p.setup_prompts()
    p.all_seeds = [p.seed + i for i in range(len(p.all_prompts))]
    for script, args in scripts:
        script.process(p, *args)
    p.init()
    images, infotexts, params_txt = [], [], ""
    for n in range(p.n_iter):
        lo, hi = n * p.batch_size, (n + 1) * p.batch_size
        p.iteration = n
        p.prompts, p.negative_prompts = p.all_prompts[lo:hi], p.all_negative_prompts[lo:hi]
        p.seeds = p.all_seeds[lo:hi]
        rng_size = (p.width, p.height)
        for script, args in scripts:
            script.before_process_batch(p, *args, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.seeds)
        if not p.prompts:
            break
        p.prompts = [_NETWORK.sub("", x) for x in p.prompts]  # parse_extra_network_prompts
        hr_prompts = hr_negatives = None
        if p.all_hr_prompts is not None and p.enable_hr:
            hr_prompts = [_NETWORK.sub("", x) for x in p.all_hr_prompts[lo:hi]]
            hr_negatives = p.all_hr_negative_prompts[lo:hi]
        for script, args in scripts:
            script.process_batch(p, *args, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.seeds)
        if n == 0:
            params_txt = create_infotext(p, p.all_prompts, p.all_negative_prompts, 0)
        batch = []
        for i, prompt in enumerate(p.prompts):
            image = {"prompt": prompt, "negative": p.negative_prompts[i], "size": rng_size}
            if hr_prompts is not None and p.enable_hr:
                image.update(hr_prompt=hr_prompts[i], hr_negative=hr_negatives[i], final_size=p.hr_upscale_to)
            batch.append(image)
        for script, args in scripts:
            script.postprocess_batch(p, *args, images=batch, batch_number=n)
        p.prompts, p.negative_prompts = p.all_prompts[lo:hi], p.all_negative_prompts[lo:hi]
        for i, image in enumerate(batch):
            image["infotext"] = create_infotext(p, p.prompts, p.negative_prompts, i)
            infotexts.append(image["infotext"])
        images += batch
    processed = Processed(images, infotexts, "".join(f"{c}\n" for c in p.comments), params_txt)
    for script, args in scripts:
        script.postprocess(p, processed, *args)
    return processed


class DynamicPrompts(Script):
    """sd-dynamic-prompts' process hook, reduced: the styled template (``all_prompts[0]``) expanded per image, ``{a|b}``
    by image index and ``__name__`` from ``wildcards``; new all_prompts lists, n_iter, seeds; the template back in
    ``p.prompt``."""

    def __init__(self, wildcards: dict[str, list[str]] | None = None):
        self.wildcards = wildcards or {}

    def title(self):
        return "Dynamic Prompts"

    def _expand(self, text: str, i: int) -> str:
        text = re.sub(r"__(\w+)__", lambda m: self.wildcards[m.group(1)][i % len(self.wildcards[m.group(1)])], text)
        return re.sub(r"\{([^{}]*)\}", lambda m: m.group(1).split("|")[i % len(m.group(1).split("|"))], text)

    def process(self, p, enabled=True, *args):
        if not enabled:
            return
        template, negative = p.all_prompts[0], p.all_negative_prompts[0]
        count = p.n_iter * p.batch_size
        p.all_prompts = [self._expand(template, i) for i in range(count)]
        p.all_negative_prompts = [self._expand(negative, i) for i in range(count)]
        p.all_seeds = [p.seed + i for i in range(count)]
        p.prompt = template
