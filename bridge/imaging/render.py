"""Render A1111 prompts with a diffusers Stable Diffusion pipeline: batched, one seed per image, weighted prompts.

    >>> from bridge.imaging.render import Renderer, RenderRequest
    >>> renderer = Renderer.from_pretrained("sd21-base")  # registry key, hub id, folder, .safetensors or .ckpt
    >>> [result] = renderer.render([RenderRequest("a (castle:1.3) at dusk", "blurry", seed=1)], batch_size=4)
    >>> result.settings["sampler"], result.image.size
    ('DPM++ 2M Karras', (512, 512))

What :meth:`Renderer.render` does, in order:

1. plan: fill each request's missing settings from the model's registry entry (size, steps, CFG scale, sampler) and
   resolve its prompt per step: prompt editing ``[a:b:when]`` and alternation ``[a|b]`` with
   :meth:`bridge.syntax.Clause.text_at`, extra-network tags removed.
2. group: requests that can share a batch (same size, steps, sampler, guidance and number of 77-token chunks).
3. encode, per batch, the way AUTOMATIC1111 does (:func:`encode_weighted`, the one place this happens):
   ``(word:1.3)`` / ``[word]`` emphasis scales each token's hidden state and the mean is restored
   (``z *= w; z *= old_mean / new_mean``); prompts past 75 tokens become several 77-token chunks (a chunk also breaks
   at the last comma within 20 tokens of the limit, and at ``BREAK``); prompt and negative prompt are padded to the
   same number of chunks with the empty prompt's encoding.
4. denoise: every image starts from its own noise, drawn on the CPU from ``torch.Generator().manual_seed(seed)``, and
   the same generator feeds the sampler's per-step noise, so an image does not depend on the batch size or the order
   of the requests (CPU fp32: equal to 1e-4). When editing or alternation changes a prompt's text, a
   ``callback_on_step_end`` swaps ``prompt_embeds`` before the next step.
5. decode: images come back as :class:`RenderResult` objects, in request order.

Where this differs from A1111 (the first three warn once per renderer when they apply):

- ``AND`` (composable diffusion) needs one UNet pass per clause; the diffusers pipeline makes one. Only the first
  clause is rendered, with its weight: a clause weight multiplies the CFG scale (``a cat :1.5`` at CFG 4 is ``a cat``
  at CFG 6), which is exactly what A1111 computes for a one-clause prompt.
- "Clip skip" is honoured for models that condition on the last layer (SD 1.x) and ignored for penultimate-layer
  models (SD 2.x), as A1111 ignores it there.
- Prompt schedules count model calls in A1111: one per step for first-order samplers, as here. Second-order samplers
  (Heun, DPM2, DPM2 a) call the model about twice per step and A1111's count runs past the schedule, after which it
  falls back to the first entry; here the schedule is spread over the whole run (iteration ``i`` of ``n`` uses step
  ``i * steps // n``, see :func:`schedule_step`).
- Emphasis mean: A1111 takes it over all schedule entries of one prompt, encoded as one batch, and so does this
  module; A1111's entries end at the prompt's switch points, here they are the runs of steps with the same text,
  which differ only when an inactive nested edit adds a switch point without changing the text.
- Textual-inversion embeddings are not loaded (their names are encoded as words, as in A1111 without the file);
  LoRA tags are removed from the prompt but not applied: load LoRAs on the pipeline. In the negative prompt A1111
  reads ``AND`` and tags as words, and so does this module.
- Noise is drawn on the CPU (A1111 draws on the GPU by default): the same seed gives the same image on every device,
  but not A1111's pixels. At a CFG scale of 1 or below diffusers drops the negative prompt (A1111 still mixes it in
  below 1).
- Samplers: see ``SAMPLERS``. "LMS" needs scipy and "DPM++ SDE" torchsde; diffusers draws DPM++ SDE's noise from
  one Brownian tree per batch, so those requests render one per batch. A1111's "DPM++ 2S a", "DPM fast" and
  "DPM adaptive" have no diffusers equivalent and are not offered. A1111 >= 1.9 "Schedule type: Karras" selects the
  Karras variant.

SD 2's penultimate layer: diffusers stores SD 2's OpenCLIP text tower without its last block (its converter skips
``resblocks.23``: the hub's SD 2 text encoders have 23 of ViT-H's 24 layers), so the stored encoder's
``last_hidden_state``, which includes the final layer norm, already is "penultimate layer, then final layer norm".
The layer is therefore counted on the stored encoder: clip skip 1 is ``last_hidden_state``, clip skip ``k`` is
``hidden_states[-k]`` followed by the final layer norm, as A1111 does for SD 1.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.models import ModelSpec, UnknownModelError, detect_model, get_model
from bridge.syntax import NetworkTag, Text, parse
from bridge.syntax import attention as parse_attention
from bridge.syntax import render as render_nodes

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL.Image import Image

    from bridge.recipe import Recipe

__all__ = [
    "SAMPLERS",
    "PromptChunk",
    "RenderRequest",
    "RenderResult",
    "Renderer",
    "encode_weighted",
    "make_scheduler",
    "prompt_chunks",
    "schedule_step",
]

# --------------------------------------------------------------------------------------------------------------------
# Samplers: A1111 names -> diffusers schedulers

# A1111's k-diffusion samplers space their steps evenly over the trained sigmas from the highest to 0, which is
# diffusers' "linspace" spacing; DDIM and PLMS use A1111's uniform DDIM steps, diffusers' "leading" + steps_offset 1.
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
    second_order: bool = False  # about two model calls per step (see schedule_step)


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

    >>> sampler_name("dpm++ 2m", "Karras")
    'DPM++ 2M Karras'
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


# --------------------------------------------------------------------------------------------------------------------
# Prompt conditioning, as A1111 computes it (the one place in the project)

CHUNK_TOKENS = 75  # tokens of prompt text per 77-token chunk (plus start and end)
COMMA_BACKTRACK = 20  # A1111's "comma padding backtrack": move the text after a comma this close to the limit
BREAK = ("BREAK", -1)  # how attention() marks a chunk break


@dataclass
class PromptChunk:
    """One 77-token chunk: token ids (start, 75 tokens or end-token padding, end) and a weight per token."""

    tokens: list[int]
    weights: list[float]


def prompt_chunks(tokenizer: Any, text: str, *, comma_backtrack: int = COMMA_BACKTRACK) -> list[PromptChunk]:
    """Split ``text`` (a prompt as it reaches the text encoder: no tags, editing resolved) into A1111's chunks.

    Emphasis comes from :func:`bridge.syntax.attention`. Each piece is tokenized on its own; every 75 tokens start a
    new chunk, and so does ``BREAK``; when a chunk fills up within ``comma_backtrack`` tokens after a comma, the text
    after the comma moves to the next chunk. Chunks are padded with the end token and wrapped in start/end tokens;
    the model's own pad token (SD 2: ``"!"``) is applied later, by :func:`encode_weighted`. An empty text gives one
    chunk.
    """
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    pieces = parse_attention(text)
    token_lists = tokenizer([piece for piece, _ in pieces], add_special_tokens=False, verbose=False)["input_ids"]
    chunks: list[PromptChunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close_chunk() -> None:
        nonlocal tokens, weights, last_comma
        padding = CHUNK_TOKENS - len(tokens)
        chunks.append(PromptChunk([start, *tokens, *[end] * padding, end], [1.0, *weights, *[1.0] * padding, 1.0]))
        tokens, weights, last_comma = [], [], -1

    for ids, (piece, weight) in zip(token_lists, pieces, strict=True):
        if (piece, weight) == BREAK:
            close_chunk()
            continue
        for token in ids:
            if token == comma:
                last_comma = len(tokens)
            elif comma_backtrack and len(tokens) == CHUNK_TOKENS and last_comma != -1 and (
                len(tokens) - last_comma <= comma_backtrack
            ):
                moved = slice(last_comma + 1, None)
                carried_tokens, carried_weights = tokens[moved], weights[moved]
                del tokens[moved], weights[moved]
                close_chunk()
                tokens, weights = carried_tokens, carried_weights
            if len(tokens) == CHUNK_TOKENS:
                close_chunk()
            tokens.append(token)
            weights.append(weight)
    if tokens or not chunks:
        close_chunk()
    return chunks


def _final_layer_norm(text_encoder: Any) -> Any:
    # transformers 4.x nests the CLIP text tower in `text_model`; 5.x does not
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


def _hidden_states(text_encoder: Any, tokens: torch.Tensor, clip_skip: int) -> torch.Tensor:
    """A1111's encode_with_transformers: the last layer, or ``hidden_states[-clip_skip]`` + the final layer norm."""
    if clip_skip <= 1:
        return text_encoder(tokens).last_hidden_state
    hidden = text_encoder(tokens, output_hidden_states=True).hidden_states[-clip_skip]
    return _final_layer_norm(text_encoder)(hidden)


def encode_weighted(
    text_encoder: Any,
    tokenizer: Any,
    texts: str | Sequence[str],
    *,
    clip_skip: int = 1,
    pad_token_id: int | None = None,
    comma_backtrack: int = COMMA_BACKTRACK,
) -> torch.Tensor:
    """Encode prompt text(s) with emphasis as A1111 does: ``(len(texts), chunks * 77, width)``.

    ``texts`` are prompts as they reach the text encoder (:meth:`bridge.syntax.Clause.text_at`); several texts are one
    A1111 batch, as the schedule entries of one prompt are: all are padded to the same number of chunks with empty
    chunks, and the emphasis mean is taken over the batch, per chunk. For each chunk: tokens after the first end token
    become ``pad_token_id`` (default: the tokenizer's pad token; SD 1 pads with the end token, SD 2 with ``"!"``),
    the encoder's hidden states at layer ``clip_skip`` (see the module docstring) are multiplied by each token's
    weight, then rescaled so their mean is what it was before weighting. Chunks are concatenated along the sequence.
    """
    import torch

    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("encode_weighted needs at least one text")
    pad = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
    per_text = [prompt_chunks(tokenizer, text, comma_backtrack=comma_backtrack) for text in texts]
    count = max(len(chunks) for chunks in per_text)
    empty = prompt_chunks(tokenizer, "")[0]
    per_text = [chunks + [empty] * (count - len(chunks)) for chunks in per_text]
    device = text_encoder.device
    encoded = []
    with torch.no_grad():
        for index in range(count):
            tokens = torch.tensor([chunks[index].tokens for chunks in per_text], device=device)
            if pad != tokenizer.eos_token_id:
                is_end = (tokens == tokenizer.eos_token_id).int()
                tokens = tokens.masked_fill(is_end.cumsum(dim=1) - is_end > 0, pad)  # after the first end token
            weights = torch.tensor([chunks[index].weights for chunks in per_text], device=device)
            z = _hidden_states(text_encoder, tokens, clip_skip).float()
            original_mean = z.mean()
            z = z * weights[..., None]
            z = z * (original_mean / z.mean())
            encoded.append(z.to(text_encoder.dtype))
    return torch.cat(encoded, dim=1)


def schedule_step(iteration: int, iterations: int, steps: int) -> int:
    """The A1111 step (1-based) whose prompt text applies at pipeline iteration ``iteration`` (0-based).

    A1111's denoiser counts from 0 and picks the first schedule entry ending at or after its count, so its step 0
    uses step 1's text and step ``i`` uses step ``i``'s. Second-order samplers run more iterations than steps; the
    schedule is spread over them (see the module docstring).

    >>> [schedule_step(i, 4, 4) for i in range(4)]
    [1, 1, 2, 3]
    """
    return max(1, min(steps, iteration * steps // iterations))


def _runs(texts: list[str]) -> tuple[list[str], tuple[int, ...]]:
    """Schedule entries (runs of equal consecutive texts) and the entry index of each step."""
    entries: list[str] = []
    entry_of_step: list[int] = []
    for text in texts:
        if not entries or entries[-1] != text:
            entries.append(text)
        entry_of_step.append(len(entries) - 1)
    return entries, tuple(entry_of_step)


def _negative_texts(negative_prompt: str, steps: int) -> list[str]:
    """The negative prompt's text at steps 1..steps: A1111 schedules it, but reads ``AND`` and tags as words."""
    prompt = parse(negative_prompt)
    for node, container, _ in list(prompt.walk()):
        if isinstance(node, NetworkTag):
            container[container.index(node)] = Text(node.text)
    texts = []
    for step in range(1, steps + 1):
        parts = [render_nodes(prompt.clauses[0].children, step=step, steps=steps) + prompt.clauses[0].weight_text]
        for separator, clause in zip(prompt.separators, prompt.clauses[1:], strict=True):
            parts += [separator, render_nodes(clause.children, step=step, steps=steps) + clause.weight_text]
        texts.append("".join(parts))
    return texts


# --------------------------------------------------------------------------------------------------------------------
# Requests and results


@dataclass
class RenderRequest:
    """One image to render. Settings left as None come from the model's registry entry (or the renderer's defaults).

    ``sampler`` is an A1111 sampler name (see ``SAMPLERS``); ``clip_skip`` is A1111's "Clip skip" (1 = last layer).
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    clip_skip: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be an integer >= 0 (A1111's -1 means random, which is not reproducible) "
                             f"but is {self.seed!r}")
        for name in ("width", "height", "steps", "clip_skip"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None but is {value!r}")
        if self.cfg_scale is not None and not math.isfinite(self.cfg_scale):
            raise ValueError(f"`cfg_scale` must be a finite number or None but is {self.cfg_scale!r}")
        if self.sampler is not None:
            self.sampler = sampler_name(self.sampler)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> RenderRequest:
        """The request for an A1111 recipe (a missing seed is 0; "Schedule type: Karras" joins the sampler name).

        >>> from bridge.recipe import Recipe
        >>> RenderRequest.from_recipe(Recipe.from_infotext(
        ...     "a cat\\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, Seed: 7, Size: 512x768")).sampler
        'DPM++ 2M Karras'
        """
        sampler = recipe.sampler
        if sampler is not None:
            sampler = sampler_name(sampler, recipe.extra.get("Schedule type"))
        return cls(
            prompt=recipe.prompt,
            negative_prompt=recipe.negative_prompt,
            seed=recipe.seed if recipe.seed is not None else 0,
            width=recipe.width,
            height=recipe.height,
            steps=recipe.steps,
            cfg_scale=recipe.cfg_scale,
            sampler=sampler,
            clip_skip=recipe.clip_skip,
        )


@dataclass
class RenderResult:
    """A rendered image with what made it: ``settings`` holds the model, size, steps, CFG scale, sampler, clip skip,
    prediction type and dtype actually used (JSON-ready). ``pixels`` (float32, HxWx3 in [0, 1], before rounding to
    8 bits) is kept only when ``render(..., keep_pixels=True)``."""

    image: Image
    seed: int
    prompt: str
    negative_prompt: str
    settings: dict[str, Any]
    pixels: np.ndarray | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------------------------------
# The renderer

DEFAULT_STEPS = 25
DEFAULT_CFG_SCALE = 7.0
DEFAULT_SAMPLER = "DPM++ 2M Karras"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
SUPPORTED_FAMILIES = ("sd1", "sd2")  # what StableDiffusionPipeline runs


@dataclass
class _Schedule:
    """One prompt's texts over a render: A1111's schedule entries, the entry each step (1-based) uses, and the
    number of 77-token chunks the entries take together."""

    entries: list[str]
    entry_of_step: tuple[int, ...]
    chunks: int


@dataclass
class _Conditioning:
    """A schedule encoded: one embedding per entry, ``(entries, tokens, width)``."""

    embeddings: torch.Tensor
    entry_of_step: tuple[int, ...]

    def at(self, step: int) -> torch.Tensor:
        return self.embeddings[self.entry_of_step[step - 1]]


@dataclass
class _Plan:
    """A request with every setting resolved and its prompt texts scheduled (encoding waits for its batch)."""

    index: int
    request: RenderRequest
    settings: dict[str, Any]
    guidance: float  # CFG scale x the clause weight
    positive: _Schedule
    negative: _Schedule

    @property
    def chunks(self) -> int:
        return max(self.positive.chunks, self.negative.chunks)

    def batch_key(self) -> tuple:
        s = self.settings
        key = (s["width"], s["height"], s["steps"], s["sampler"], self.guidance, self.chunks)
        return (*key, self.index) if SAMPLERS[s["sampler"]].shared_noise else key


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _default_dtype(device: str) -> torch.dtype:
    """CUDA: bf16 where supported, else fp16; MPS: fp16; CPU: fp32."""
    import torch

    kind = str(device).split(":")[0]
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "mps":
        return torch.float16
    return torch.float32


def _dtype_keyword() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (the old name now warns); older versions know only the old."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _resolve_spec(spec: ModelSpec | str | None) -> ModelSpec | None:
    spec = get_model(spec) if isinstance(spec, str) else spec
    if spec is not None and spec.family not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"the renderer runs StableDiffusionPipeline models (families {', '.join(SUPPORTED_FAMILIES)}); "
            f"{spec.key!r} is {spec.family}"
        )
    return spec


class Renderer:
    """Render :class:`RenderRequest` objects with a ``StableDiffusionPipeline``; see the module docstring.

    ``spec`` (a :class:`~bridge.models.ModelSpec` or registry key) supplies defaults, the prediction type and the pad
    token; without it the pipeline's own scheduler config, size and tokenizer are used. ``device``/``dtype`` move the
    pipeline when given. ``compile`` compiles the UNet with ``torch.compile`` (a string is its ``mode``, e.g.
    ``"reduce-overhead"`` for CUDA graphs or ``"max-autotune"``); ``channels_last`` puts UNet and VAE in
    channels-last memory format; ``progress`` shows a tqdm bar on stderr. Attention uses PyTorch's SDPA (diffusers'
    ``AttnProcessor2_0``). ``model_name`` goes into each result's settings (default: the registry key).
    """

    def __init__(
        self,
        pipeline: StableDiffusionPipeline,
        spec: ModelSpec | str | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        compile: bool | str = False,
        channels_last: bool = False,
        progress: bool = True,
        model_name: str | None = None,
    ):
        import torch

        self.pipeline = pipeline
        self.spec = _resolve_spec(spec)
        self.model_name = model_name or (self.spec.key if self.spec else type(pipeline).__name__)
        self.progress = progress
        if device is not None or dtype is not None:
            pipeline.to(device=device, dtype=dtype)
        pipeline.set_progress_bar_config(disable=True)  # one bar over all images instead, see render()
        _use_sdpa(pipeline.unet)
        _use_sdpa(pipeline.vae)
        if channels_last:
            pipeline.unet.to(memory_format=torch.channels_last)
            pipeline.vae.to(memory_format=torch.channels_last)
        if compile:
            pipeline.unet.compile(**({"mode": compile} if isinstance(compile, str) else {}))
        self._base_scheduler_config = dict(pipeline.scheduler.config)
        self._warned: set[str] = set()

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        *,
        spec: ModelSpec | str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        compile: bool | str = False,
        channels_last: bool = False,
        progress: bool = True,
        **load_kwargs: Any,
    ) -> Renderer:
        """Load a pipeline: a registry key or alias (``"sd21"``), a hub id, a local diffusers folder, or a single
        ``.safetensors``/``.ckpt`` file as A1111 users have (the registry's hub id is passed as ``config`` when the
        file name or ``spec`` identifies the model). ``spec`` defaults to what the name identifies.

        Device defaults to CUDA, then MPS, then CPU; dtype to bf16 (fp16 where bf16 is unsupported) on CUDA, fp16 on
        MPS, fp32 on CPU. The safety checker is not loaded. ``load_kwargs`` go to diffusers (``revision``,
        ``variant``, ``cache_dir``, ``local_files_only``, …).
        """
        from diffusers import StableDiffusionPipeline

        spec = _resolve_spec(spec)
        device = device or _default_device()
        dtype = dtype or _default_dtype(str(device))
        path = Path(model)
        options = {_dtype_keyword(): dtype, "safety_checker": None, "requires_safety_checker": False, **load_kwargs}
        if path.is_file():
            if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
                raise ValueError(
                    f"cannot load {str(path)!r}: a single-file checkpoint must end in "
                    f"{' or '.join(SINGLE_FILE_SUFFIXES)}; a diffusers model is a folder"
                )
            spec = spec or _resolve_spec(detect_model(path.name))
            if spec is not None:
                options.setdefault("config", spec.hub_id)
            pipeline = StableDiffusionPipeline.from_single_file(str(path), **options)
        elif path.is_dir():
            spec = spec or _resolve_spec(detect_model(path.name))
            pipeline = StableDiffusionPipeline.from_pretrained(path, **{"local_files_only": True, **options})
        else:
            source = str(model)
            try:
                known = _resolve_spec(get_model(source))
            except UnknownModelError:
                if "/" not in source:  # neither a registry name nor a hub id ("owner/name")
                    raise
                known = None
            spec = spec or known
            pipeline = StableDiffusionPipeline.from_pretrained(known.hub_id if known else source, **options)
        return cls(
            pipeline,
            spec,
            device=device,
            compile=compile,
            channels_last=channels_last,
            progress=progress,
            model_name=spec.key if spec else str(model),
        )

    # ---------------------------------------------------------------------------------------------------------------

    def render(
        self,
        requests: RenderRequest | str | Iterable[RenderRequest | str],
        batch_size: int = 4,
        *,
        keep_pixels: bool = False,
    ) -> list[RenderResult]:
        """Render ``requests`` (a prompt string is a request with default settings), up to ``batch_size`` images at a
        time, and return the results in request order: plan, group, then encode, denoise and decode each batch."""
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise ValueError(f"`batch_size` must be at least 1 but is {batch_size}")
        if isinstance(requests, (RenderRequest, str)):
            requests = [requests]
        plans = []
        for index, request in enumerate(requests):
            plans.append(self._plan(index, request if isinstance(request, RenderRequest) else RenderRequest(request)))
        results: list[RenderResult | None] = [None] * len(plans)
        with tqdm(total=len(plans), desc="render", unit="image", file=sys.stderr, disable=not self.progress) as bar:
            for batch in _batches(plans, batch_size):
                for plan, result in zip(batch, self._render_batch(batch, keep_pixels), strict=True):
                    results[plan.index] = result
                bar.update(len(batch))
        return results  # type: ignore[return-value]

    def _plan(self, index: int, request: RenderRequest) -> _Plan:
        """Resolve the request's settings and schedule its prompt texts per step."""
        spec = self.spec
        size = spec.native_size if spec else self.pipeline.unet.config.sample_size * self.pipeline.vae_scale_factor
        width, height = request.width or size, request.height or size
        multiple = self.pipeline.vae_scale_factor
        for name, value in (("width", width), ("height", height)):
            if value % multiple:
                raise ValueError(f"`{name}` has to be divisible by {multiple} but is {value}")
        steps = request.steps or (spec.default_steps if spec else DEFAULT_STEPS)
        if request.cfg_scale is not None:
            cfg_scale = request.cfg_scale
        else:
            cfg_scale = spec.default_cfg_scale if spec else DEFAULT_CFG_SCALE
        sampler = request.sampler or sampler_name(spec.default_sampler if spec else DEFAULT_SAMPLER)

        prompt = parse(request.prompt)
        if len(prompt.clauses) > 1:
            self._warn_once(
                "and",
                f"AND (composable diffusion) is not supported: only the first clause of {request.prompt!r} is rendered",
            )
        clause = prompt.clauses[0]
        settings = {
            "model": self.model_name,
            "width": width,
            "height": height,
            "steps": steps,
            "cfg_scale": float(cfg_scale),
            "sampler": sampler,
            "clip_skip": self._clip_skip(request.clip_skip),
            "prediction_type": self.spec.prediction_type if self.spec else self._base_scheduler_config["prediction_type"],
            "dtype": str(self.pipeline.unet.dtype).removeprefix("torch."),
        }
        positive = self._schedule([clause.text_at(step, steps) for step in range(1, steps + 1)])
        negative = self._schedule(_negative_texts(request.negative_prompt, steps))
        if SAMPLERS[sampler].second_order and max(len(positive.entries), len(negative.entries)) > 1:
            self._warn_once(
                "second_order",
                f"prompt editing with the second-order sampler {sampler!r}: the schedule is spread over its model "
                "calls, where A1111 runs past it (see bridge.imaging.render)",
            )
        return _Plan(index, request, settings, cfg_scale * clause.weight, positive, negative)

    def _clip_skip(self, requested: int | None) -> int:
        if requested is None or requested <= 1:
            return 1
        if self.spec is not None and self.spec.clip_layer == "penultimate":
            self._warn_once(
                "clip_skip",
                f"clip skip {requested} ignored: {self.spec.key} already conditions on the penultimate layer "
                "(A1111 ignores clip skip for SD 2 models too)",
            )
            return 1
        return requested

    def _schedule(self, texts_per_step: list[str]) -> _Schedule:
        entries, entry_of_step = _runs(texts_per_step)
        chunks = max(len(prompt_chunks(self.pipeline.tokenizer, text)) for text in entries)
        return _Schedule(entries, entry_of_step, chunks)

    def _encode(self, plan: _Plan, cache: dict[tuple, torch.Tensor]) -> tuple[_Conditioning, _Conditioning]:
        """Encode a plan's prompt and negative prompt (:func:`encode_weighted`), both padded to the plan's length
        with the empty prompt's encoding, as A1111 pads the shorter of cond and uncond. ``cache`` holds encodings
        already made for this batch (a shared negative prompt is encoded once)."""
        import torch

        tokenizer = self.pipeline.tokenizer
        pad = tokenizer.convert_tokens_to_ids(self.spec.pad_token) if self.spec else tokenizer.pad_token_id
        clip_skip = plan.settings["clip_skip"]

        def encoded(entries: Sequence[str]) -> torch.Tensor:
            key = (tuple(entries), clip_skip)
            if key not in cache:
                cache[key] = encode_weighted(
                    self.pipeline.text_encoder, tokenizer, entries, clip_skip=clip_skip, pad_token_id=pad
                )
            return cache[key]

        empty = encoded([""])
        conditionings = []
        for schedule in (plan.positive, plan.negative):
            embeddings = encoded(schedule.entries)
            missing = plan.chunks - schedule.chunks
            if missing:
                filler = empty.repeat(len(schedule.entries), missing, 1)
                embeddings = torch.cat([embeddings, filler], dim=1)
            conditionings.append(_Conditioning(embeddings, schedule.entry_of_step))
        return conditionings[0], conditionings[1]

    def _warn_once(self, topic: str, message: str) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            warnings.warn(message, UserWarning, stacklevel=2)

    def _render_batch(self, plans: list[_Plan], keep_pixels: bool) -> list[RenderResult]:
        """Encode, denoise and decode one batch of plans that share their settings; the pipeline is left as it was."""
        import torch

        pipe = self.pipeline
        settings = plans[0].settings
        cache: dict[tuple, torch.Tensor] = {}
        conditionings = [self._encode(plan, cache) for plan in plans]
        scheduler = make_scheduler(
            settings["sampler"],
            self._base_scheduler_config,
            prediction_type=settings["prediction_type"],
            seed=plans[0].request.seed,
        )
        # Each image's noise comes from its own generator: first its initial latents, then the sampler's noise.
        generators = [torch.Generator("cpu").manual_seed(plan.request.seed) for plan in plans]
        factor = pipe.vae_scale_factor
        shape = (1, pipe.unet.config.in_channels, settings["height"] // factor, settings["width"] // factor)
        latents = torch.cat([torch.randn(shape, generator=g) for g in generators])

        def embeddings(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            return (
                torch.stack([positive.at(step) for positive, _ in conditionings]),
                torch.stack([negative.at(step) for _, negative in conditionings]),
            )

        positive, negative = embeddings(1)
        original_scheduler, pipe.scheduler = pipe.scheduler, scheduler
        try:
            pixels = pipe(
                prompt_embeds=positive,
                negative_prompt_embeds=negative,
                width=settings["width"],
                height=settings["height"],
                num_inference_steps=settings["steps"],
                guidance_scale=plans[0].guidance,
                generator=generators,
                latents=latents.to(device=pipe.device, dtype=pipe.unet.dtype),
                output_type="np",
                callback_on_step_end=_schedule_callback(plans, settings["steps"], embeddings),
                callback_on_step_end_tensor_inputs=["prompt_embeds"],
            ).images
        finally:
            pipe.scheduler = original_scheduler
        images = pipe.numpy_to_pil(pixels)
        return [
            RenderResult(
                image=image,
                seed=plan.request.seed,
                prompt=plan.request.prompt,
                negative_prompt=plan.request.negative_prompt,
                settings=dict(plan.settings),
                pixels=array if keep_pixels else None,
            )
            for plan, image, array in zip(plans, images, pixels, strict=True)
        ]


def _schedule_callback(
    plans: list[_Plan], steps: int, embeddings: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
) -> Callable | None:
    """A ``callback_on_step_end`` that swaps ``prompt_embeds`` when prompt editing or alternation changes a prompt's
    text at the next iteration; None when no prompt in the batch changes."""
    if all(len(schedule.entries) == 1 for plan in plans for schedule in (plan.positive, plan.negative)):
        return None

    def entries(step: int) -> tuple[int, ...]:
        return tuple(s.entry_of_step[step - 1] for plan in plans for s in (plan.positive, plan.negative))

    def swap(pipe: Any, iteration: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        import torch

        iterations = len(pipe.scheduler.timesteps)
        if iteration + 1 >= iterations:
            return {}
        upcoming = schedule_step(iteration + 1, iterations, steps)
        if entries(upcoming) == entries(schedule_step(iteration, iterations, steps)):
            return {}
        positive, negative = embeddings(upcoming)
        current = tensors["prompt_embeds"]
        embeds = torch.cat([negative, positive]) if pipe.do_classifier_free_guidance else positive
        return {"prompt_embeds": embeds.to(device=current.device, dtype=current.dtype)}

    return swap


def _batches(plans: list[_Plan], batch_size: int) -> Iterable[list[_Plan]]:
    """Plans that can share a batch, ``batch_size`` at a time, groups in order of first appearance."""
    groups: dict[tuple, list[_Plan]] = {}
    for plan in plans:
        groups.setdefault(plan.batch_key(), []).append(plan)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def _use_sdpa(model: Any) -> None:
    """Put PyTorch's scaled-dot-product attention on every attention layer still using diffusers' stock processors
    (custom ones, e.g. LoRA or IP-adapter processors, are left alone)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    processors = model.attn_processors.values()
    if processors and all(type(p) in (AttnProcessor, AttnProcessor2_0) for p in processors):
        model.set_attn_processor(AttnProcessor2_0())
