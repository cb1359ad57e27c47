"""What the workflow scripts (data/build_pairs.py, eval/evaluate.py) share: :class:`UsageError` (translate-prompt
raises it too), their common flags and checks, their error lines and exit codes, loading the renderer and scorer they
render and score with (real, ``--tiny`` or ``--simulated``), render cache keys, saved images, progress. Files are
written with :func:`bridge.datafiles.atomic_write`.

    >>> from bridge.workflows.common import load_renderer, load_scorer
    >>> renderer = load_renderer("sd21-base", mode="tiny")          # or mode="simulated", or "real" (the default)
    >>> scorer = load_scorer(ScoreConfig(), mode="tiny")            # a CombinedScorer (or the simulated world's)

Modes: ``real`` loads the target's weights (registry key, hub id, folder or single file) and open_clip models named by
the :class:`~bridge.imaging.score.ScoreConfig`; ``tiny`` builds random tiny models from configs (:mod:`bridge.testing`: a
32 px pipeline of the target's family, SDXL's included, a tiny open_clip), CPU, seconds, or renders with the given weights (a small
local pipeline) and scores with the tiny open_clip; ``simulated`` uses :mod:`bridge.workflows.simulated` (no torch).

Models are registry keys: ``--registry FILE`` (:func:`use_registry_file`) lays a user registry over the packaged one
first, so a model that is not packaged (the next generation) can be a source or target.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from tqdm import tqdm

    from bridge.imaging.score import ScoreConfig
    from bridge.recipe import Recipe

__all__ = ["IMAGE_FORMATS", "MODES", "RENDER_SETTINGS", "SCRIPT_ERRORS", "UsageError", "add_mode_flags",
           "add_model_flags", "cache_key", "check_script_args", "check_seeds", "image_bytes", "load_renderer",
           "load_scorer", "progress_bar", "renderer_id", "requested_settings", "resolve_models_and_mode",
           "scorer_config", "script_error", "use_registry_file"]

MODES = ("real", "tiny", "simulated")
TINY_RENDERER_ID = "tiny-{kind}-seed0"
RENDER_SETTINGS = ("width", "height", "steps", "cfg_scale", "sampler", "clip_skip")  # Recipe fields that change pixels
IMAGE_FORMATS = {"png": {}, "webp": {"quality": 92, "method": 6}}


class UsageError(ValueError):
    """A bad command line or setting that the user can fix: translate-prompt and the scripts print its message on one
    line and exit 2."""


# What a script reports as one line (script_error): a UsageError exits 2, the others 1; any other exception is a
# bug and keeps its traceback.
SCRIPT_ERRORS = (ValueError, OSError, RuntimeError, ImportError)


def script_error(prog: str, exc: BaseException) -> int:
    """Print a script's failure as one line on stderr and return its exit code: 2 for a :class:`UsageError` (its
    message), 1 for the others (the exception's type and the first line of its message)."""
    if isinstance(exc, UsageError):
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{prog}: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------- the scripts' shared flags and checks


def add_model_flags(group: Any, *, target: str) -> None:
    """``--registry``, ``--source`` and ``--target`` (default ``target``) on an argparse parser or group."""
    group.add_argument("--registry", metavar="FILE", help="your own registry file (the layout of "
                                                          "bridge/data/models.toml): models and bridges --source and "
                                                          "--target may name")
    group.add_argument("--source", default="sd15", help="model key the prompts were written for")
    group.add_argument("--target", default=target, help="model key to render with")


def add_mode_flags(group: Any, *, tiny_help: str) -> None:
    """``--tiny`` or ``--simulated`` (one at most; :func:`resolve_models_and_mode` turns them into ``args.mode``)."""
    mode = group.add_mutually_exclusive_group()
    mode.add_argument("--tiny", action="store_true", help=tiny_help)
    mode.add_argument("--simulated", action="store_true",
                      help="the simulated world of bridge.workflows.simulated (no torch)")


def check_seeds(seeds: Sequence[int], *, least: int = 1) -> None:
    """``--seeds``: different integers >= 0, at least ``least`` of them."""
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"--seeds must be different integers >= 0 but are {seeds}")
    if len(seeds) < least:
        raise UsageError(f"--seeds needs at least {least} different seeds but got {seeds}")


def check_script_args(args: argparse.Namespace, *, at_least: Mapping[str, int], seeds: int = 1,
                      tiny: Mapping[str, Any] | None = None) -> None:
    """The checks every script makes, in this order: ``--seeds`` (:func:`check_seeds`, at least ``seeds``), each
    flag of ``at_least`` (an attribute name: its least value) when given, then :func:`resolve_models_and_mode`. With
    ``--tiny`` the flags of ``tiny`` left unset take its values, and the device is the CPU."""
    check_seeds(args.seeds, least=seeds)
    for name, least in at_least.items():
        value = getattr(args, name)
        if value is not None and value < least:
            raise UsageError(f"--{name.replace('_', '-')} has to be at least {least} but is {value}")
    resolve_models_and_mode(args)
    if args.tiny:
        for name, value in (tiny or {}).items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        args.device = "cpu"


def use_registry_file(path: str | Path | None) -> None:
    """``--registry FILE``: lay a user registry file (the layout of bridge/data/models.toml) over the packaged registry for
    every lookup that follows (:func:`bridge.models.use_registry`); :class:`UsageError` when it is missing or
    malformed. None leaves the registry as it is."""
    if path is None:
        return
    from bridge.models import RegistryError, use_registry

    if not os.path.isfile(path):
        raise UsageError(f"--registry: no such registry file: {path}")
    try:
        use_registry(path)
    except RegistryError as exc:
        raise UsageError(f"--registry: {exc}") from None


def resolve_models_and_mode(args: Any) -> None:
    """The scripts' shared flags: ``args.registry`` (when the script has it) is laid over the packaged registry,
    ``args.source``/``args.target`` become registry keys (:class:`UsageError` naming the flag otherwise) and
    ``args.mode`` is set from ``--tiny``/``--simulated``."""
    from bridge.models import UnknownModelError, get_model

    use_registry_file(getattr(args, "registry", None))
    for flag in ("source", "target"):
        try:
            setattr(args, flag, get_model(getattr(args, flag)).key)
        except UnknownModelError as exc:
            raise UsageError(f"--{flag}: {exc}") from None
    args.mode = "tiny" if args.tiny else "simulated" if args.simulated else "real"


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")


# ---------------------------------------------------------------- renderer and scorer


def renderer_id(target: str, weights: str | None = None, *, mode: str = "real") -> str:
    """The model id that names renders (cache keys, dataset rows): the target weights' name or path."""
    _check_mode(mode)
    if mode == "tiny" and not weights:
        return TINY_RENDERER_ID.format(kind=_tiny_kind(target))
    if mode == "simulated":
        from bridge.workflows.simulated import SIMULATED_MODEL

        return SIMULATED_MODEL
    return weights or target


def load_renderer(target: str, weights: str | None = None, *, mode: str = "real", device: str | None = None) -> Any:
    """A renderer for ``target`` (a registry key) with ``render(requests, batch_size)``: :class:`bridge.imaging.render.Renderer`
    on ``weights`` (default: the target's hub id; on the CPU in tiny mode), a tiny random one, or the simulated
    world's."""
    _check_mode(mode)
    if mode == "simulated":
        from bridge.workflows.simulated import SimulatedRenderer

        return SimulatedRenderer()
    from bridge.imaging.render import Renderer

    if mode == "tiny" and not weights:
        from bridge.testing import tiny_sd_pipeline

        return Renderer(tiny_sd_pipeline(kind=_tiny_kind(target), seed=0), spec=target, progress=False)
    if mode == "tiny":
        device = "cpu"
    return Renderer.from_pretrained(renderer_id(target, weights), spec=target, device=device, progress=False)


def _tiny_kind(target: str) -> str:
    """The tiny pipeline of the target's family: "sd1", "sd2" or "sdxl" (a family without one gets "sd2")."""
    from bridge.models import get_model
    from bridge.testing import KINDS

    family = get_model(target).family
    return family if family in KINDS else "sd2"


def scorer_config(config: ScoreConfig, *, mode: str = "real") -> ScoreConfig:
    """``config`` as the mode scores it: ``tiny`` swaps in the tiny open_clip model (random weights)."""
    _check_mode(mode)
    if mode == "tiny":
        from bridge.testing import TINY_OPEN_CLIP_NAME

        return config.replace(model=TINY_OPEN_CLIP_NAME, pretrained=None, aesthetic_weight=0.0, aesthetic_head=None)
    if mode == "simulated":
        from bridge.workflows.simulated import SimulatedScorer

        return SimulatedScorer.default_config(config)
    return config


def load_scorer(config: ScoreConfig, *, mode: str = "real", device: str | None = None) -> Any:
    """A scorer with ``score(source_prompts, images, sd1_images=None)`` and ``config``: a
    :class:`bridge.imaging.score.CombinedScorer` (models loaded on first use), or the simulated world's."""
    config = scorer_config(config, mode=mode)
    if mode == "simulated":
        from bridge.workflows.simulated import SimulatedScorer

        return SimulatedScorer(config)
    from bridge.imaging.score import CombinedScorer, Scorer

    if mode == "tiny":
        from bridge.testing import tiny_open_clip

        return CombinedScorer(config, scorers={"clip": Scorer(*tiny_open_clip(seed=0), device="cpu")})
    return CombinedScorer(config, device=device)


# ---------------------------------------------------------------- render cache keys, images


def requested_settings(recipe: Recipe) -> dict[str, Any]:
    return {name: getattr(recipe, name) for name in RENDER_SETTINGS}


def cache_key(model: str, recipe: Recipe, seed: int) -> str:
    """A render's identity: a hash of the model, prompt, negative prompt, seed and settings."""
    import hashlib  # milliseconds to import: translate-prompt imports this module for UsageError

    blob = json.dumps({"model": model, "prompt": recipe.prompt, "negative_prompt": recipe.negative_prompt,
                       "seed": seed, "settings": requested_settings(recipe)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def image_bytes(image: Any, image_format: str) -> bytes:
    """A PIL image encoded as ``image_format`` (one of ``IMAGE_FORMATS``)."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format.upper(), **IMAGE_FORMATS[image_format])
    return buffer.getvalue()


def progress_bar(total: int, desc: str, unit: str = "img", *, disable: bool = False) -> tqdm:
    """A tqdm bar on stderr (stdout stays for results) showing the rate in ``unit``/s and the ETA."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=disable)
