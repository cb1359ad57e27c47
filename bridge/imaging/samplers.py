"""A1111's sampler names, its schedule types, and the diffusers schedulers that run them.

    >>> sampler_name("dpm++ 2m", "Karras")
    'DPM++ 2M Karras'
    >>> sampler_name("Euler", "SGM Uniform")
    'Euler SGM Uniform'
    >>> SAMPLERS["Heun"].second_order
    True

A1111's k-diffusion samplers space their steps evenly over the trained sigmas from the highest to 0, which is
diffusers' "linspace" spacing; DDIM and PLMS use A1111's uniform DDIM steps, diffusers' "leading" + steps_offset 1.
"LMS" needs scipy and "DPM++ SDE" torchsde; diffusers draws DPM++ SDE's noise from one Brownian tree per batch
(``shared_noise``: the renderer renders those requests one per batch). A1111's "DPM++ 2S a", "DPM fast" and
"DPM adaptive" have no diffusers equivalent and are not offered.

Schedule types (A1111 >= 1.9 writes "Sampler: DPM++ 2M, Schedule type: Karras"; older versions wrote the schedule into
the sampler name, "DPM++ 2M Karras", and a schedule in the name wins over the field, as in A1111). A sampler with a
schedule is one name here, the sampler's followed by the schedule's (``SAMPLERS`` holds every one diffusers runs):

==================  ==================================  =====================================================
A1111 schedule      runs as                             diffusers option (sigmas are A1111's to within
                                                        rounding of the timesteps)
==================  ==================================  =====================================================
Automatic           the sampler's own                   the sampler's spacing: A1111's default is Uniform
Uniform             the sampler's own                   ``timestep_spacing="linspace"``
Normal              the sampler's own                   the same steps as Uniform (t from 999 to 0 in n)
Karras              "<sampler> Karras"                  ``use_karras_sigmas=True`` (rho 7)
Exponential         "<sampler> Exponential"             ``use_exponential_sigmas=True``
Polyexponential     "<sampler> Exponential"             at A1111's default rho 1 it is the exponential schedule
SGM Uniform         "<sampler> SGM Uniform"             ``timestep_spacing="trailing"``
Simple              "<sampler> SGM Uniform"             the same steps as trailing (999, 999 - 1000/n, ...)
DDIM                "<sampler> DDIM"                    ``timestep_spacing="leading", steps_offset=1``
Beta                "<sampler> Beta"                    ``use_beta_sigmas=True`` (alpha = beta = 0.6, A1111's
                                                        defaults; needs scipy)
KL Optimal          error: nearest is Uniform           no diffusers option
Align Your Steps    error: nearest is Uniform           diffusers has its timesteps (``AysSchedules``) but no
                                                        config option; the renderer passes none
Karras Exponential  error: nearest is Karras            no diffusers option (newest A1111 code only)
==================  ==================================  =====================================================

"Nearest" is the supported schedule with the smallest mean |log sigma| difference on SD's betas over 10-50 steps
(Uniform: 0.23-0.51 from KL Optimal and Align Your Steps, with DDIM within 0.1 of it; Karras: 0.02 from Karras
Exponential). Karras, Exponential and Beta need the k-diffusion sigma options, which diffusers' Euler a lacks: for it
those three are errors naming Uniform. A1111's timestep samplers (DDIM, PLMS, UniPC) ignore the schedule type, and
so does this. A1111's "Schedule rho", "Schedule min sigma" and "Schedule max sigma" overrides are not applied.
Schedule types are read by label, by A1111's name (``sgm_uniform``) or alias (``SGMUniform``), in any case.

Nothing heavy is imported here: diffusers only inside :func:`make_scheduler`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SAMPLERS", "SCHEDULE_TYPES", "SamplerSpec", "make_scheduler", "sampler_name"]

_K = {"timestep_spacing": "linspace"}
_LEADING = {"timestep_spacing": "leading", "steps_offset": 1}


@dataclass(frozen=True)
class SamplerSpec:
    """How one A1111 sampler maps to diffusers: the scheduler class, config overrides and what it needs."""

    scheduler: str
    options: dict[str, Any] = field(default_factory=dict)
    requires: str | None = None  # an optional package the scheduler imports
    shared_noise: bool = False  # its noise is not drawn per image from the generators: render one image per batch
    second_order: bool = False  # about two model calls per step (see bridge.imaging.conditioning.schedule_step)


_BASE_SAMPLERS: dict[str, SamplerSpec] = {
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
}
# A1111 runs these without k-diffusion and ignores their schedule type.
_TIMESTEP_SAMPLERS = ("DDIM", "PLMS", "UniPC")
# diffusers' k-diffusion-style schedulers take these; EulerAncestralDiscreteScheduler has none of them.
_SIGMA_SCHEDULES = {
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
}
_SIGMA_SAMPLERS = ("Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 3M SDE", "DPM++ SDE")
# Every diffusers scheduler takes these.
_SPACING_SCHEDULES = {"SGM Uniform": {"timestep_spacing": "trailing"}, "DDIM": _LEADING}


def _with_schedules(samplers: dict[str, SamplerSpec]) -> dict[str, SamplerSpec]:
    """The base samplers, then each k-diffusion one with every schedule type diffusers can give it."""
    result = dict(samplers)
    for schedule, options in (*_SIGMA_SCHEDULES.items(), *_SPACING_SCHEDULES.items()):
        for name, base in samplers.items():
            if name in _TIMESTEP_SAMPLERS or (schedule in _SIGMA_SCHEDULES and name not in _SIGMA_SAMPLERS):
                continue
            # beta sigmas are scipy's ppf (LMS needs scipy anyway, and torchsde depends on it)
            requires = (base.requires or "scipy") if schedule == "Beta" else base.requires
            result[f"{name} {schedule}"] = dataclasses.replace(
                base, options={**base.options, **options}, requires=requires
            )
    return result


SAMPLERS: dict[str, SamplerSpec] = _with_schedules(_BASE_SAMPLERS)
_SAMPLER_NAMES = {name.lower(): name for name in SAMPLERS}

# A1111's schedule types (its labels, in its order) -> the schedule in the sampler name that runs it: "" for the
# sampler's own, None where diffusers has no equivalent.
SCHEDULE_TYPES: dict[str, str | None] = {
    "Automatic": "",
    "Uniform": "",
    "Karras": "Karras",
    "Exponential": "Exponential",
    "Polyexponential": "Exponential",
    "SGM Uniform": "SGM Uniform",
    "KL Optimal": None,
    "Align Your Steps": None,
    "Simple": "SGM Uniform",
    "Normal": "",
    "DDIM": "DDIM",
    "Beta": "Beta",
    "Karras Exponential": None,
}
# The nearest supported schedule types, nearest first; "Uniform" runs with every sampler (see the module docstring).
_NEAREST = {
    "Karras": ("Exponential", "Uniform"),
    "Exponential": ("Karras", "Uniform"),
    "Polyexponential": ("Karras", "Uniform"),
    "Beta": ("Uniform",),
    "KL Optimal": ("Uniform",),
    "Align Your Steps": ("Uniform",),
    "Karras Exponential": ("Karras", "Uniform"),
}
# Lower case, "_" as " ": A1111's labels, its names (sgm_uniform) and its alias SGMUniform.
_SCHEDULE_KEYS = {**{label.lower(): label for label in SCHEDULE_TYPES}, "sgmuniform": "SGM Uniform"}


def _schedule_key(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def _split_schedule(key: str) -> tuple[str, str | None]:
    """``key`` (a lower-case sampler name) as (sampler, schedule type in its name or None)."""
    if key in _SAMPLER_NAMES and _SAMPLER_NAMES[key] in _BASE_SAMPLERS:
        return key, None
    for schedule_key, label in sorted(_SCHEDULE_KEYS.items(), key=lambda item: -len(item[0])):
        if key.endswith(" " + schedule_key):
            return key[: -len(schedule_key) - 1].rstrip(), label
    return key, None


def _schedule_label(schedule_type: str) -> str:
    label = _SCHEDULE_KEYS.get(_schedule_key(schedule_type))
    if label is None:
        raise ValueError(
            f"unknown schedule type {schedule_type!r}; valid schedule types: {', '.join(SCHEDULE_TYPES)}"
        )
    return label


def sampler_name(name: str, schedule_type: str | None = None) -> str:
    """The canonical sampler name for A1111 sampler ``name`` (any case) and an optional A1111 >= 1.9 schedule type.

    A schedule type in ``name`` ("DPM++ 2M Karras") wins over ``schedule_type``, as in A1111. A schedule type
    diffusers cannot run is a one-line ``ValueError`` naming the nearest supported one.

    >>> sampler_name("euler A")
    'Euler a'
    >>> sampler_name("DPM++ 2M SDE", "Polyexponential")
    'DPM++ 2M SDE Exponential'
    """
    base_key, label = _split_schedule(_schedule_key(name))
    base = _SAMPLER_NAMES.get(base_key)
    if base is None or base not in _BASE_SAMPLERS:
        raise ValueError(
            f"unknown sampler {name!r}; valid samplers: {', '.join(_BASE_SAMPLERS)}, each but DDIM, PLMS and UniPC "
            f"optionally followed by a schedule type, as in DPM++ 2M Karras"
        )
    if label is None:
        label = _schedule_label(schedule_type) if schedule_type is not None else "Automatic"
    if base in _TIMESTEP_SAMPLERS:
        return base
    canonical = _with_schedule(base, label)
    if canonical is None:
        nearest = next(n for n in _NEAREST[label] if _with_schedule(base, n) is not None)
        if SCHEDULE_TYPES[label] is None:
            why = "diffusers has no scheduler option for it"
        else:
            why = f"diffusers' {SAMPLERS[base].scheduler} has no option for it"
        raise ValueError(
            f"schedule type {label!r} is not supported with sampler {base!r} ({why}); "
            f"the nearest supported one is {nearest!r}"
        )
    return canonical


def _with_schedule(base: str, label: str) -> str | None:
    """The name in ``SAMPLERS`` that runs k-diffusion sampler ``base`` with schedule type ``label``, or None."""
    schedule = SCHEDULE_TYPES[label]
    if schedule is None:
        return None
    canonical = f"{base} {schedule}" if schedule else base
    return canonical if canonical in SAMPLERS else None


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
