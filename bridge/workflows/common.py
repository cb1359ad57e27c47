"""What the workflow scripts (data/build_pairs.py, eval/evaluate.py) share: loading the renderer and scorer they
render and score with (real, ``--tiny`` or ``--simulated``), render cache keys, atomic files, saved images, progress.

    >>> from bridge.workflows.common import load_renderer, load_scorer
    >>> renderer = load_renderer("sd21-base", mode="tiny")          # or mode="simulated", or "real" (the default)
    >>> scorer = load_scorer(ScoreConfig(), mode="tiny")            # a CombinedScorer (or the simulated world's)

Modes: ``real`` loads the target's weights (registry key, hub id, folder or single file) and open_clip models named by
the :class:`~bridge.imaging.score.ScoreConfig`; ``tiny`` builds random tiny models from configs (:mod:`bridge.testing`: a
32 px pipeline of the target's family, a tiny open_clip), CPU, seconds, or renders with the given weights (a small
local pipeline) and scores with the tiny open_clip; ``simulated`` uses :mod:`bridge.workflows.simulated` (no torch).

Models are registry keys: ``--registry FILE`` (:func:`use_registry_file`) lays a user registry over the packaged one
first, so a model that is not packaged (the next generation) can be a source or target.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from tqdm import tqdm

    from bridge.imaging.score import ScoreConfig
    from bridge.recipe import Recipe

__all__ = ["IMAGE_FORMATS", "MODES", "RENDER_SETTINGS", "cache_key", "image_bytes", "load_renderer", "load_scorer",
           "progress_bar", "renderer_id", "requested_settings", "resolve_models_and_mode", "scorer_config",
           "use_registry_file", "write_atomic"]

MODES = ("real", "tiny", "simulated")
TINY_RENDERER_ID = "tiny-{kind}-seed0"
RENDER_SETTINGS = ("width", "height", "steps", "cfg_scale", "sampler", "clip_skip")  # Recipe fields that change pixels
IMAGE_FORMATS = {"png": {}, "webp": {"quality": 92, "method": 6}}


def use_registry_file(path: str | Path | None, usage_error: type[Exception]) -> None:
    """``--registry FILE``: lay a user registry file (the layout of bridge/data/models.toml) over the packaged registry for
    every lookup that follows (:func:`bridge.models.use_registry`); ``usage_error`` when it is missing or malformed.
    None leaves the registry as it is."""
    if path is None:
        return
    from bridge.models import RegistryError, use_registry

    if not os.path.isfile(path):
        raise usage_error(f"--registry: no such registry file: {path}")
    try:
        use_registry(path)
    except RegistryError as exc:
        raise usage_error(f"--registry: {exc}") from None


def resolve_models_and_mode(args: Any, usage_error: type[Exception]) -> None:
    """The scripts' shared flags: ``args.registry`` (when the script has it) is laid over the packaged registry,
    ``args.source``/``args.target`` become registry keys (``usage_error`` naming the flag otherwise) and ``args.mode``
    is set from ``--tiny``/``--simulated``."""
    from bridge.models import UnknownModelError, get_model

    use_registry_file(getattr(args, "registry", None), usage_error)
    for flag in ("source", "target"):
        try:
            setattr(args, flag, get_model(getattr(args, flag)).key)
        except UnknownModelError as exc:
            raise usage_error(f"--{flag}: {exc}") from None
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
    """The tiny pipeline of the target's family: "sd1" or "sd2"."""
    from bridge.models import get_model

    return "sd1" if get_model(target).family == "sd1" else "sd2"


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


# ---------------------------------------------------------------- render cache keys, files, images


def requested_settings(recipe: Recipe) -> dict[str, Any]:
    return {name: getattr(recipe, name) for name in RENDER_SETTINGS}


def cache_key(model: str, recipe: Recipe, seed: int) -> str:
    """A render's identity: a hash of the model, prompt, negative prompt, seed and settings."""
    blob = json.dumps({"model": model, "prompt": recipe.prompt, "negative_prompt": recipe.negative_prompt,
                       "seed": seed, "settings": requested_settings(recipe)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name, flush it to disk, then rename: a killed run never leaves a half-written file under
    its real name (the temporary name starts with a dot and ends in .tmp)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def image_bytes(image: Any, image_format: str) -> bytes:
    """A PIL image encoded as ``image_format`` (one of ``IMAGE_FORMATS``)."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format.upper(), **IMAGE_FORMATS[image_format])
    return buffer.getvalue()


def progress_bar(total: int, desc: str, unit: str = "img", *, disable: bool = False) -> tqdm:
    """A tqdm bar on stderr (stdout stays for results) showing the rate in ``unit``/s and the ETA."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=disable)
