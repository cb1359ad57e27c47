"""Loading the Stable Diffusion pipeline the renderer runs: model names, single-file checkpoints, device and dtype.

:func:`load_pipeline` takes a registry key or alias (``"sd21"``), a hub id, a local diffusers folder, or a single
``.safetensors``/``.ckpt`` file as A1111 users have; :func:`use_sdpa` puts PyTorch's scaled-dot-product attention
on a model. torch and diffusers are imported only inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.models import ModelSpec, UnknownModelError, detect_model, get_model

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

__all__ = [
    "SINGLE_FILE_SUFFIXES",
    "SUPPORTED_FAMILIES",
    "default_device",
    "default_dtype",
    "load_pipeline",
    "resolve_spec",
    "use_sdpa",
]

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
SUPPORTED_FAMILIES = ("sd1", "sd2")  # what StableDiffusionPipeline runs
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
            f"the renderer runs StableDiffusionPipeline models (families {', '.join(SUPPORTED_FAMILIES)}); "
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
) -> tuple[StableDiffusionPipeline, ModelSpec | None]:
    """Load ``model`` and return the pipeline (on the CPU, in ``dtype``) with its registry entry, if known.

    A single file gets the registry's hub id as ``config`` when its file name or ``spec`` identifies the model.
    ``spec`` defaults to what the name identifies; ``dtype`` to :func:`default_dtype` of ``device`` (default:
    :func:`default_device`). The safety checker is not loaded. ``load_kwargs`` go to diffusers (``revision``,
    ``variant``, ``cache_dir``, ``local_files_only``, …).
    """
    from diffusers import StableDiffusionPipeline

    spec = resolve_spec(spec)
    dtype = dtype or default_dtype(device or default_device())
    path = Path(model)
    options = {_dtype_keyword(): dtype, "safety_checker": None, "requires_safety_checker": False, **load_kwargs}
    if path.is_file():
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ValueError(
                f"cannot load {str(path)!r}: a single-file checkpoint must end in "
                f"{' or '.join(SINGLE_FILE_SUFFIXES)}; a diffusers model is a folder"
            )
        spec = spec or resolve_spec(detect_model(path.name))
        if spec is not None:
            options.setdefault("config", spec.hub_id)
        return StableDiffusionPipeline.from_single_file(str(path), **options), spec
    if path.is_dir():
        spec = spec or resolve_spec(detect_model(path.name))
        return StableDiffusionPipeline.from_pretrained(path, **{"local_files_only": True, **options}), spec
    source = str(model)
    try:
        known = resolve_spec(get_model(source))
    except UnknownModelError:
        if "/" not in source:  # neither a registry name nor a hub id ("owner/name")
            raise
        known = None
    pipeline = StableDiffusionPipeline.from_pretrained(known.hub_id if known else source, **options)
    return pipeline, spec or known


def use_sdpa(model: Any) -> None:
    """Put PyTorch's scaled-dot-product attention on every attention layer still using diffusers' stock processors
    (custom ones, e.g. LoRA or IP-adapter processors, are left alone)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    processors = model.attn_processors.values()
    if processors and all(type(p) in (AttnProcessor, AttnProcessor2_0) for p in processors):
        model.set_attn_processor(AttnProcessor2_0())
