"""Loading the Stable Diffusion pipeline the renderer runs: model names, single-file checkpoints, device and dtype.

:func:`load_pipeline` takes a registry key or alias (``"sd21"``), a hub id, a local diffusers folder, or a single
``.safetensors``/``.ckpt`` file as A1111 users have; :func:`load_refiner` loads an SDXL refiner the same ways;
:func:`use_sdpa` puts PyTorch's scaled-dot-product attention on a model. torch and diffusers are imported only inside
the functions.

The registry's family picks the pipeline class (:data:`PIPELINE_CLASSES`): ``StableDiffusionPipeline`` for SD 1 and
SD 2, ``StableDiffusionXLPipeline`` for SDXL; a folder or hub id the registry does not know gets the class its
``model_index.json`` names. A single file needs its diffusers config: the registry's hub id by default, or
``config=`` a local diffusers folder of the same model (its ``model_index.json`` and component configs, weights
not needed), which is how it loads offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.models import ModelSpec, UnknownModelError, detect_model, get_model, load_from_hub

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline, StableDiffusionXLImg2ImgPipeline

__all__ = [
    "SINGLE_FILE_SUFFIXES",
    "SUPPORTED_FAMILIES",
    "default_device",
    "default_dtype",
    "load_pipeline",
    "load_refiner",
    "resolve_spec",
    "use_sdpa",
]

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
PIPELINE_CLASSES = {"sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline",
                    "sdxl": "StableDiffusionXLPipeline"}
SUPPORTED_FAMILIES = tuple(PIPELINE_CLASSES)
REFINER_CLASS = "StableDiffusionXLImg2ImgPipeline"
DTYPE_KEYWORD_SINCE = "0.40.0"  # diffusers renamed from_pretrained's `torch_dtype` to `dtype` (the old name warns)


def default_device() -> str:
    """CUDA, then MPS, then CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """CUDA: bf16 where supported, else fp16; MPS: fp16; CPU: fp32."""
    import torch

    kind = str(device).split(":")[0]
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "mps":
        return torch.float16
    return torch.float32


def _dtype_keyword() -> str:
    """``dtype`` from diffusers 0.40 on (huggingface/diffusers#14205), ``torch_dtype`` before."""
    from importlib.metadata import version

    from packaging.version import Version  # a dependency of diffusers

    return "dtype" if Version(version("diffusers")) >= Version(DTYPE_KEYWORD_SINCE) else "torch_dtype"


def resolve_spec(spec: ModelSpec | str | None) -> ModelSpec | None:
    """The registry entry for ``spec`` (a key, alias or entry), checked to be a model the renderer runs."""
    spec = get_model(spec) if isinstance(spec, str) else spec
    if spec is not None and spec.family not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"the renderer runs the families {', '.join(SUPPORTED_FAMILIES)}; "
            f"{spec.key!r} is {spec.family}"
        )
    return spec


def load_pipeline(
    model: str | Path,
    *,
    spec: ModelSpec | str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **load_kwargs: Any,
) -> tuple[DiffusionPipeline, ModelSpec | None]:
    """Load ``model`` and return the pipeline (on the CPU, in ``dtype``) with its registry entry, if known.

    A single file gets the registry's hub id as ``config`` when its file name or ``spec`` identifies the model (pass
    ``config=`` a local diffusers folder to load it offline). A registry entry's former hub ids are tried from the
    local cache when its hub id fails (:func:`bridge.models.load_from_hub`). ``spec`` defaults to what the name identifies; ``dtype``
    to :func:`default_dtype` of ``device`` (default: :func:`default_device`). The safety checker is not loaded.
    ``load_kwargs`` go to diffusers (``revision``, ``variant``, ``cache_dir``, ``local_files_only``, ``config``, …).
    """
    spec = resolve_spec(spec)
    path = Path(model)
    if path.is_file():
        spec = spec or resolve_spec(detect_model(path.name))
        if spec is not None and "config" not in load_kwargs:
            return load_from_hub(spec, lambda hub_id, **kw: _load(path, spec.family, spec, device, dtype,
                                                                  {**kw, "config": hub_id}), **load_kwargs), spec
        return _load(path, spec.family if spec else None, spec, device, dtype, load_kwargs), spec
    if path.is_dir():
        spec = spec or resolve_spec(detect_model(path.name))
        return _load(path, spec.family if spec else None, None, device, dtype, load_kwargs), spec
    source = str(model)
    try:
        known = resolve_spec(get_model(source))
    except UnknownModelError:
        if "/" not in source:  # neither a registry name nor a hub id ("owner/name")
            raise
        known = None
    spec = spec or known
    if known is not None:
        return load_from_hub(known, lambda hub_id, **kw: _load(hub_id, spec.family, None, device, dtype, kw),
                             **load_kwargs), spec
    return _load(source, spec.family if spec else None, None, device, dtype, load_kwargs), spec


def load_refiner(
    model: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **load_kwargs: Any,
) -> StableDiffusionXLImg2ImgPipeline:
    """An SDXL refiner (``StableDiffusionXLImg2ImgPipeline``) from a hub id, a local diffusers folder or a single
    file (which needs ``config=``: the refiner's hub id or a local diffusers folder)."""
    return _load(Path(model) if Path(model).exists() else str(model), "refiner", None, device, dtype, load_kwargs)


def _load(
    source: str | Path,
    family: str | None,
    spec: ModelSpec | None,
    device: str | torch.device | None,
    dtype: torch.dtype | None,
    load_kwargs: dict[str, Any],
) -> Any:
    """Load a pipeline of ``family`` ("refiner": the SDXL refiner; None: what the folder's model_index.json names)
    from a hub id, a folder, or a single file (configured by ``spec``'s hub id unless ``config`` is given)."""
    import diffusers

    dtype = dtype or default_dtype(device or default_device())
    options: dict[str, Any] = {_dtype_keyword(): dtype, **load_kwargs}
    name = REFINER_CLASS if family == "refiner" else PIPELINE_CLASSES.get(family or "")
    if name in (None, "StableDiffusionPipeline"):
        options.update(safety_checker=None, requires_safety_checker=False)
    if isinstance(source, Path) and source.is_file():
        if source.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ValueError(
                f"cannot load {str(source)!r}: a single-file checkpoint must end in "
                f"{' or '.join(SINGLE_FILE_SUFFIXES)}; a diffusers model is a folder"
            )
        if spec is not None:
            options.setdefault("config", spec.hub_id)
        if Path(str(options.get("config", ""))).is_dir():
            options.setdefault("local_files_only", True)
        return getattr(diffusers, name or "StableDiffusionPipeline").from_single_file(str(source), **options)
    if isinstance(source, Path):
        options = {"local_files_only": True, **options}
    pipeline_class = getattr(diffusers, name) if name else diffusers.DiffusionPipeline
    return pipeline_class.from_pretrained(source, **options)


def use_sdpa(model: Any) -> None:
    """Put PyTorch's scaled-dot-product attention on every attention layer still using diffusers' stock processors
    (custom ones, e.g. LoRA or IP-adapter processors, are left alone)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    processors = model.attn_processors.values()
    if processors and all(type(p) in (AttnProcessor, AttnProcessor2_0) for p in processors):
        model.set_attn_processor(AttnProcessor2_0())
