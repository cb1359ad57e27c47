"""A1111 >= 1.9 schedule types: which diffusers scheduler and options each one yields, the steps those give against
A1111's formulas (computed here independently), the errors for the ones diffusers cannot run, and an infotext's
"Schedule type" reaching the scheduler."""

import ast
import importlib.util
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from bridge.imaging import render
from bridge.imaging.render import Renderer, RenderRequest
from bridge.imaging.samplers import SAMPLERS, SCHEDULE_TYPES, make_scheduler, sampler_name
from bridge.recipe import Recipe
from bridge.testing import PNDM_SCHEDULER

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]

A1111_LABELS = ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                "Align Your Steps", "Simple", "Normal", "DDIM", "Beta", "Karras Exponential"]
STEPS = 20
HAS_SCIPY = importlib.util.find_spec("scipy") is not None

# schedule type -> (the name DPM++ 2M runs as, the options it adds to DPM++ 2M's)
SUPPORTED = {
    "Automatic": ("DPM++ 2M", {"timestep_spacing": "linspace"}),
    "Uniform": ("DPM++ 2M", {"timestep_spacing": "linspace"}),
    "Normal": ("DPM++ 2M", {"timestep_spacing": "linspace"}),
    "Karras": ("DPM++ 2M Karras", {"use_karras_sigmas": True}),
    "Exponential": ("DPM++ 2M Exponential", {"use_exponential_sigmas": True}),
    "Polyexponential": ("DPM++ 2M Exponential", {"use_exponential_sigmas": True}),
    "SGM Uniform": ("DPM++ 2M SGM Uniform", {"timestep_spacing": "trailing"}),
    "Simple": ("DPM++ 2M SGM Uniform", {"timestep_spacing": "trailing"}),
    "DDIM": ("DPM++ 2M DDIM", {"timestep_spacing": "leading", "steps_offset": 1}),
    "Beta": ("DPM++ 2M Beta", {"use_beta_sigmas": True}),
}
UNSUPPORTED = {"KL Optimal": "Uniform", "Align Your Steps": "Uniform", "Karras Exponential": "Karras"}


def init_parameters(class_name: str) -> set[str]:
    """The ``__init__`` parameters of diffusers scheduler ``class_name``, read from the installed diffusers' source
    (so schedulers whose optional package is missing, which diffusers replaces by a placeholder, are checked too)."""
    folder = Path(importlib.util.find_spec("diffusers.schedulers").submodule_search_locations[0])
    for path in sorted(folder.glob("scheduling_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name == class_name:
                init = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
                return {a.arg for a in [*init.args.args, *init.args.kwonlyargs]}
    raise AssertionError(f"no scheduler class {class_name} in {folder}")


def train_sigmas() -> np.ndarray:
    """SD's trained sigmas (scaled_linear betas 0.00085-0.012 over 1000 steps), t = 0 first."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    alphas_cumprod = np.cumprod(1 - betas)
    return np.sqrt((1 - alphas_cumprod) / alphas_cumprod)


def scheduler_for(name: str):
    scheduler = make_scheduler(name, dict(PNDM_SCHEDULER))
    scheduler.set_timesteps(STEPS)
    return scheduler


def test_the_table_covers_a1111s_schedule_types():
    assert list(SCHEDULE_TYPES) == A1111_LABELS
    assert set(SUPPORTED) | set(UNSUPPORTED) == set(A1111_LABELS)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_option_exists_on_its_scheduler_class(name):
    spec = SAMPLERS[name]
    extra = {"prediction_type"} | ({"noise_sampler_seed"} if spec.shared_noise else set())
    assert set(spec.options) | extra <= init_parameters(spec.scheduler)


@pytest.mark.parametrize("label", list(SUPPORTED))
def test_schedule_type_maps_to_the_scheduler_and_options(label):
    canonical, options = SUPPORTED[label]
    assert sampler_name("DPM++ 2M", label) == canonical
    expected = {"algorithm_type": "dpmsolver++", "solver_order": 2, **options}
    if label == "Beta" and not HAS_SCIPY:
        with pytest.raises(ImportError, match="needs the scipy package: pip install scipy"):
            make_scheduler(canonical, dict(PNDM_SCHEDULER))
        return
    scheduler = make_scheduler(canonical, dict(PNDM_SCHEDULER))
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert {key: scheduler.config[key] for key in expected} == expected
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's betas are kept
    others = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"} - set(options)
    assert not any(scheduler.config[key] for key in others)


def test_every_k_diffusion_sampler_takes_the_spacing_schedules_and_all_but_euler_a_the_sigma_ones():
    k_samplers = ["Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 3M SDE",
                  "DPM++ SDE"]
    for base in k_samplers:
        for label in ("SGM Uniform", "Simple", "DDIM"):
            assert SAMPLERS[sampler_name(base, label)].scheduler == SAMPLERS[base].scheduler
        for label, option in (("Karras", "use_karras_sigmas"), ("Exponential", "use_exponential_sigmas"),
                              ("Beta", "use_beta_sigmas")):
            if base == "Euler a":
                assert "use_karras_sigmas" not in init_parameters(SAMPLERS[base].scheduler)
                with pytest.raises(ValueError, match=f"schedule type '{label}' is not supported with sampler 'Euler a'"
                                   r" \(diffusers' EulerAncestralDiscreteScheduler has no option for it\); "
                                   "the nearest supported one is 'Uniform'"):
                    sampler_name(base, label)
            else:
                assert SAMPLERS[sampler_name(base, label)].options[option] is True
    assert SAMPLERS["Euler Beta"].requires == "scipy" and SAMPLERS["LMS Beta"].requires == "scipy"
    assert SAMPLERS["DPM++ SDE Beta"].requires == "torchsde"  # which depends on scipy


# A1111's steps, computed from its schedule functions' behaviour (t from 999 down, sigma_min/max the trained ends).
def a1111_timesteps(label: str, n: int) -> np.ndarray:
    if label in ("Uniform", "Normal"):
        return np.linspace(999, 0, n)
    if label == "SGM Uniform":
        return np.linspace(999, 0, n + 1)[:-1]
    if label == "Simple":
        return np.array([999 - int(x * 1000 / n) for x in range(n)], dtype=float)
    if label == "DDIM":
        return np.arange(1, 1000, 1000 // n)[::-1].astype(float)
    raise AssertionError(label)


def a1111_sigmas(label: str, n: int) -> np.ndarray:
    sigma_min, sigma_max = train_sigmas()[0], train_sigmas()[-1]
    ramp = np.linspace(0, 1, n)
    if label == "Karras":
        rho = 7.0
        return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    if label in ("Exponential", "Polyexponential"):  # polyexponential at its default rho 1
        return np.exp((1 - ramp) ** 1.0 * (np.log(sigma_max) - np.log(sigma_min)) + np.log(sigma_min))
    if label == "Beta":
        from scipy import stats

        return sigma_min + stats.beta.ppf(1 - ramp, 0.6, 0.6) * (sigma_max - sigma_min)
    raise AssertionError(label)


@pytest.mark.parametrize("label", ["Uniform", "Normal", "SGM Uniform", "Simple", "DDIM"])
def test_spacing_schedules_step_where_a1111_steps(label):
    scheduler = scheduler_for(sampler_name("Euler", label))
    # diffusers rounds trailing and leading timesteps to whole steps; A1111's SGM Uniform keeps fractions
    np.testing.assert_allclose(scheduler.timesteps.numpy(), a1111_timesteps(label, STEPS), atol=1.0)
    assert scheduler.sigmas[-1] == 0


@pytest.mark.parametrize("label", ["Karras", "Exponential", "Polyexponential", "Beta"])
def test_sigma_schedules_give_a1111s_sigmas(label):
    if label == "Beta" and not HAS_SCIPY:
        pytest.skip("beta sigmas need scipy")
    scheduler = scheduler_for(sampler_name("Euler", label))
    np.testing.assert_allclose(scheduler.sigmas[:-1].numpy(), a1111_sigmas(label, STEPS), rtol=1e-4)
    assert scheduler.sigmas[-1] == 0


def test_schedules_differ_from_each_other():
    steps = {label: scheduler_for(sampler_name("Euler", label)).sigmas[:-1].numpy()
             for label in ("Uniform", "Karras", "Exponential", "SGM Uniform", "DDIM")}
    labels = list(steps)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert not np.allclose(steps[a], steps[b], rtol=1e-3), (a, b)


@pytest.mark.parametrize(("label", "nearest"), list(UNSUPPORTED.items()))
def test_schedule_types_diffusers_cannot_run_name_the_nearest(label, nearest):
    with pytest.raises(ValueError) as error:
        sampler_name("DPM++ 2M", label)
    message = str(error.value)
    assert message == (f"schedule type {label!r} is not supported with sampler 'DPM++ 2M' "
                       f"(diffusers has no scheduler option for it); the nearest supported one is {nearest!r}")
    assert sampler_name("DPM++ 2M", nearest)  # and the one it names is supported


def test_unknown_schedule_type_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown schedule type 'Cosine'; valid schedule types: Automatic, Uniform, "
                                         "Karras, Exponential, Polyexponential, SGM Uniform, KL Optimal") as error:
        sampler_name("Euler", "Cosine")
    assert "\n" not in str(error.value)


def test_a1111_names_aliases_and_case_are_read():
    assert sampler_name("Euler", "sgm_uniform") == sampler_name("Euler", "SGMUniform") == "Euler SGM Uniform"
    assert sampler_name("EULER", "KARRAS") == sampler_name("euler karras") == "Euler Karras"
    with pytest.raises(ValueError, match="'Align Your Steps' is not supported"):
        sampler_name("Euler", "align_your_steps")


def test_schedule_in_the_sampler_name_wins_as_in_a1111():
    assert sampler_name("DPM++ 2M Karras", "Exponential") == "DPM++ 2M Karras"
    assert sampler_name("DPM++ 2M SDE Exponential") == "DPM++ 2M SDE Exponential"
    assert sampler_name("Euler SGM Uniform", "Automatic") == "Euler SGM Uniform"


def test_timestep_samplers_ignore_the_schedule_type_as_in_a1111():
    for base in ("DDIM", "PLMS", "UniPC"):
        for label in A1111_LABELS:
            assert sampler_name(base, label) == base
        assert sampler_name(f"{base} Karras") == base
    with pytest.raises(ValueError, match="unknown schedule type 'Cosine'"):
        sampler_name("DDIM", "Cosine")


def test_infotext_schedule_type_reaches_the_scheduler(tiny_sd1, monkeypatch):
    recipe = Recipe.from_infotext("a cat\nSteps: 2, Sampler: Euler, Schedule type: SGM Uniform, Seed: 3, Size: 16x16")
    request = RenderRequest.from_recipe(recipe)
    assert request.sampler == "Euler SGM Uniform"
    made = []

    def spy(*args, **kwargs):
        made.append(make_scheduler(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(render, "make_scheduler", spy)
    [result] = Renderer(tiny_sd1, progress=False).render(request)
    assert result.settings["sampler"] == "Euler SGM Uniform"
    assert type(made[0]).__name__ == "EulerDiscreteScheduler"
    assert made[0].config.timestep_spacing == "trailing"
    assert made[0].timesteps.tolist() == [999.0, 499.0]  # A1111's SGM Uniform over 2 steps: t = 999, 499.5


def test_infotext_schedule_type_diffusers_cannot_run_is_a_one_line_error():
    recipe = Recipe.from_infotext("a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Align Your Steps, Seed: 3")
    with pytest.raises(ValueError, match="nearest supported one is 'Uniform'") as error:
        RenderRequest.from_recipe(recipe)
    assert "\n" not in str(error.value)
