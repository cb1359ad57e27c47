"""A1111's sampler names and the diffusers schedulers that run them.

    >>> sampler_name("dpm++ 2m", "Karras")
    'DPM++ 2M Karras'
    >>> SAMPLERS["Heun"].second_order
    True

A1111's k-diffusion samplers space their steps evenly over the trained sigmas from the highest to 0, which is
diffusers' "linspace" spacing; DDIM and PLMS use A1111's uniform DDIM steps, diffusers' "leading" + steps_offset 1.
"LMS" needs scipy and "DPM++ SDE" torchsde; diffusers draws DPM++ SDE's noise from one Brownian tree per batch
(``shared_noise``: the renderer renders those requests one per batch). A1111's "DPM++ 2S a", "DPM fast" and
"DPM adaptive" have no diffusers equivalent and are not offered. A1111 >= 1.9 "Schedule type: Karras" selects the
Karras variant (:func:`sampler_name`).

Nothing heavy is imported here: diffusers only inside :func:`make_scheduler`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SAMPLERS", "SamplerSpec", "make_scheduler", "sampler_name"]

_K = {"timestep_spacing": "linspace"}
_KARRAS = {"use_karras_sigmas": True}
_LEADING = {"timestep_spacing": "leading", "steps_offset": 1}


@dataclass(frozen=True)
class SamplerSpec:
    """How one A1111 sampler maps to diffusers: the scheduler class, config overrides and what it needs."""

    scheduler: str
    options: dict[str, Any] = field(default_factory=dict)
    requires: str | None = None  # an optional package the scheduler imports
    shared_noise: bool = False  # its noise is not drawn per image from the generators: render one image per batch
    second_order: bool = False  # about two model calls per step (see bridge.imaging.conditioning.schedule_step)


def _with_karras(samplers: dict[str, SamplerSpec], *names: str) -> dict[str, SamplerSpec]:
    for name in names:
        base = samplers[name]
        samplers[f"{name} Karras"] = dataclasses.replace(base, options={**base.options, **_KARRAS})
    return samplers


SAMPLERS: dict[str, SamplerSpec] = _with_karras(
    {
        "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler", _K),
        "Euler": SamplerSpec("EulerDiscreteScheduler", _K),
        "LMS": SamplerSpec("LMSDiscreteScheduler", _K, requires="scipy"),
        "Heun": SamplerSpec("HeunDiscreteScheduler", _K, second_order=True),
        "DPM2": SamplerSpec("KDPM2DiscreteScheduler", _K, second_order=True),
        "DPM2 a": SamplerSpec("KDPM2AncestralDiscreteScheduler", _K, second_order=True),
        "DPM++ 2M": SamplerSpec("DPMSolverMultistepScheduler", {**_K, "algorithm_type": "dpmsolver++", "solver_order": 2}),
        "DPM++ 2M SDE": SamplerSpec(
            "DPMSolverMultistepScheduler", {**_K, "algorithm_type": "sde-dpmsolver++", "solver_order": 2}
        ),
        "DPM++ 3M SDE": SamplerSpec(
            "DPMSolverMultistepScheduler", {**_K, "algorithm_type": "sde-dpmsolver++", "solver_order": 3}
        ),
        # diffusers draws this one's noise from one Brownian tree over the whole batch, seeded by a config value
        "DPM++ SDE": SamplerSpec("DPMSolverSDEScheduler", _K, requires="torchsde", shared_noise=True),
        "DDIM": SamplerSpec("DDIMScheduler", {**_LEADING, "clip_sample": False, "set_alpha_to_one": False}),
        "PLMS": SamplerSpec("PNDMScheduler", {**_LEADING, "skip_prk_steps": True}),
        "UniPC": SamplerSpec("UniPCMultistepScheduler", _K),
    },
    "Euler",
    "Heun",
    "DPM2",
    "DPM2 a",
    "DPM++ 2M",
    "DPM++ 2M SDE",
    "DPM++ 3M SDE",
    "DPM++ SDE",
)
_SAMPLER_NAMES = {name.lower(): name for name in SAMPLERS}
# A1111 >= 1.9 writes the schedule separately ("Sampler: DPM++ 2M, Schedule type: Karras").
_SCHEDULE_SUFFIX = {"karras": " Karras", "automatic": "", "uniform": ""}


def sampler_name(name: str, schedule_type: str | None = None) -> str:
    """The canonical A1111 sampler name for ``name`` (any case) and an optional A1111 >= 1.9 schedule type.

    >>> sampler_name("euler A")
    'Euler a'
    """
    suffix = ""
    if schedule_type is not None:
        suffix = _SCHEDULE_SUFFIX.get(schedule_type.strip().lower())
        if suffix is None:
            raise ValueError(
                f"unsupported schedule type {schedule_type!r}; valid schedule types: Automatic, Uniform, Karras"
            )
    key = name.strip().lower()
    if suffix and not key.endswith(suffix.lower()):
        key += suffix.lower()
    canonical = _SAMPLER_NAMES.get(key)
    if canonical is None:
        raise ValueError(f"unknown sampler {name + suffix!r}; valid samplers: {', '.join(SAMPLERS)}")
    return canonical


def make_scheduler(name: str, base_config: dict[str, Any], *, prediction_type: str | None = None, seed: int = 0) -> Any:
    """A fresh diffusers scheduler for A1111 sampler ``name``, keeping the model's betas from ``base_config``.

    ``prediction_type`` overrides the config's (the registry knows which models are v-prediction); ``seed`` seeds
    the Brownian noise of samplers whose noise is not drawn per image.
    """
    import diffusers

    spec = SAMPLERS[sampler_name(name)]
    if spec.requires and importlib.util.find_spec(spec.requires) is None:
        raise ImportError(f"sampler {name!r} needs the {spec.requires} package: pip install {spec.requires}")
    options = dict(spec.options)
    if prediction_type is not None:
        options["prediction_type"] = prediction_type
    if spec.shared_noise:
        options["noise_sampler_seed"] = seed
    return getattr(diffusers, spec.scheduler).from_config(base_config, **options)
