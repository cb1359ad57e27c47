"""Render A1111 prompts with a diffusers Stable Diffusion pipeline: batched, one seed per image, weighted prompts.

    >>> from bridge.imaging.render import Renderer, RenderRequest
    >>> renderer = Renderer.from_pretrained("sd21-base")  # registry key, hub id, folder, .safetensors or .ckpt
    >>> [result] = renderer.render([RenderRequest("a (castle:1.3) at dusk", "blurry", seed=1)], batch_size=4)
    >>> result.settings["sampler"], result.image.size
    ('DPM++ 2M Karras', (512, 512))
    >>> xl = Renderer.from_pretrained("sdxl", refiner="stabilityai/stable-diffusion-xl-refiner-1.0")

The sampler table lives in :mod:`bridge.imaging.samplers`, A1111's conditioning (chunks, emphasis, clip skip,
prompt schedules) in :mod:`bridge.imaging.conditioning` and pipeline loading in :mod:`bridge.imaging.pipelines`;
the names this module always offered (``SAMPLERS``, ``make_scheduler``, ``encode_weighted``, ...) are still here.

What :meth:`Renderer.render` does, in order:

1. plan: fill each request's missing settings from the model's registry entry (size, steps, CFG scale, sampler) and
   resolve its prompt per step: prompt editing ``[a:b:when]`` and alternation ``[a|b]`` with
   :meth:`bridge.syntax.Clause.text_at`, extra-network tags removed.
2. group: requests that can share a batch (same size, steps, sampler, guidance and number of 77-token chunks).
3. encode, per batch, the way AUTOMATIC1111 does (:func:`~bridge.imaging.conditioning.encode_weighted`, the one
   place this happens): ``(word:1.3)`` / ``[word]`` emphasis scales each token's hidden state and the mean is
   restored; prompts past 75 tokens become several 77-token chunks (:func:`bridge.chunks.chunk_spans` over the
   pipeline tokenizer's ids: a chunk also breaks at the last comma within 20 tokens of the limit, and at ``BREAK``);
   prompt and negative prompt are padded to the same number of chunks with the empty prompt's encoding.
4. denoise: every image starts from its own noise, drawn on the CPU from ``torch.Generator().manual_seed(seed)``, and
   the same generator feeds the sampler's per-step noise, so an image does not depend on the batch size or the order
   of the requests (CPU fp32: equal to 1e-4). When editing or alternation changes a prompt's text, a
   ``callback_on_step_end`` swaps ``prompt_embeds`` before the next step.
5. refine (SDXL, when the renderer has a refiner): the base stops at ``refiner_switch_at`` of the steps and hands its
   latents to the refiner (``StableDiffusionXLImg2ImgPipeline``), which runs the remaining steps with the same
   sampler and generators, its own text encoder and A1111's aesthetic scores (6 and 2.5).
6. decode: images come back as :class:`RenderResult` objects, in request order.

SDXL (``StableDiffusionXLPipeline``, registry family ``sdxl``): the two text encoders are weighted one by one as
A1111 does (:func:`~bridge.imaging.conditioning.encode_weighted_xl`: each encoder's penultimate layer times the token
weights, its own mean restored, the two concatenated; the pooled output unweighted, from the first chunk), an empty
negative prompt is zeros, and each request's size conditioning (``original_size``, ``target_size``: the render size
by default, as in A1111; ``crops_coords_top_left``: ``(0, 0)``) goes to the UNet and into the result's settings.
Prompt editing swaps the pooled output with the embeddings.

Where this differs from A1111 (the first three warn once per renderer when they apply):

- ``AND`` (composable diffusion) needs one UNet pass per clause; the diffusers pipeline makes one. Only the first
  clause is rendered, with its weight: a clause weight multiplies the CFG scale (``a cat :1.5`` at CFG 4 is ``a cat``
  at CFG 6), which is exactly what A1111 computes for a one-clause prompt.
- "Clip skip" is honoured for models that condition on the last layer (SD 1.x) and ignored for penultimate-layer
  models (SD 2.x), as A1111 ignores it there.
- Prompt schedules count model calls in A1111: one per step for first-order samplers, as here. Second-order samplers
  (Heun, DPM2, DPM2 a) call the model about twice per step and A1111's count runs past the schedule, after which it
  falls back to the first entry; here the schedule is spread over the whole run
  (:func:`~bridge.imaging.conditioning.schedule_step`).
- Emphasis mean: A1111 takes it over all schedule entries of one prompt, encoded as one batch, and so does this
  module; A1111's entries end at the prompt's switch points, here they are the runs of steps with the same text,
  which differ only when an inactive nested edit adds a switch point without changing the text.
- Textual-inversion embeddings are not loaded (their names are encoded as words, as in A1111 without the file);
  LoRA tags are removed from the prompt but not applied: load LoRAs on the pipeline. In the negative prompt A1111
  reads ``AND`` and tags as words, and so does this module.
- Noise is drawn on the CPU (A1111 draws on the GPU by default): the same seed gives the same image on every device,
  but not A1111's pixels. At a CFG scale of 1 or below diffusers drops the negative prompt (A1111 still mixes it in
  below 1).
- Samplers: see :mod:`bridge.imaging.samplers`; DPM++ SDE requests render one per batch (shared Brownian noise).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.imaging.conditioning import (
    PromptChunk,
    encode_weighted,
    encode_weighted_xl,
    negative_texts,
    prompt_chunks,
    schedule_callback,
    schedule_entries,
    schedule_step,
)
from bridge.imaging.pipelines import default_device, load_pipeline, load_refiner, resolve_spec, use_sdpa
from bridge.imaging.samplers import SAMPLERS, SamplerSpec, make_scheduler, sampler_name
from bridge.models import ModelSpec
from bridge.syntax import parse

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from PIL.Image import Image

    from bridge.recipe import Recipe

__all__ = [
    "SAMPLERS",
    "PromptChunk",
    "RenderRequest",
    "RenderResult",
    "Renderer",
    "SamplerSpec",
    "encode_weighted",
    "encode_weighted_xl",
    "make_scheduler",
    "prompt_chunks",
    "sampler_name",
    "schedule_step",
]

# --------------------------------------------------------------------------------------------------------------------
# Requests and results


@dataclass
class RenderRequest:
    """One image to render. Settings left as None come from the model's registry entry (or the renderer's defaults).

    ``sampler`` is an A1111 sampler name (see ``SAMPLERS``); ``clip_skip`` is A1111's "Clip skip" (1 = last layer).
    ``original_size``, ``target_size`` (``(height, width)``, default: the render's size, as A1111) and
    ``crops_coords_top_left`` (``(top, left)``, default ``(0, 0)``) are SDXL's size conditioning; other models
    refuse them.
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
    original_size: tuple[int, int] | None = None
    target_size: tuple[int, int] | None = None
    crops_coords_top_left: tuple[int, int] | None = None

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
        for name, least in (("original_size", 1), ("target_size", 1), ("crops_coords_top_left", 0)):
            value = getattr(self, name)
            if value is None:
                continue
            if (not isinstance(value, (tuple, list)) or len(value) != 2
                    or not all(isinstance(v, int) and v >= least for v in value)):
                raise ValueError(f"`{name}` must be None or two integers >= {least} (height/top first) but is {value!r}")
            setattr(self, name, tuple(value))

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
SIZE_CONDITIONING = ("original_size", "target_size", "crops_coords_top_left")  # SDXL's, (height, width) order
REFINER_SWITCH_AT = 0.8  # A1111's default "Refiner switch at": the refiner runs the last 20% of the steps
# The refiner's aesthetic-score conditioning, A1111's defaults (and diffusers')
REFINER_AESTHETIC_SCORE, REFINER_NEGATIVE_AESTHETIC_SCORE = 6.0, 2.5


@dataclass
class _Schedule:
    """One prompt's texts over a render: A1111's schedule entries, the entry each step (1-based) uses, and the
    number of 77-token chunks the entries take together."""

    entries: list[str]
    entry_of_step: tuple[int, ...]
    chunks: int


@dataclass
class _Conditioning:
    """A schedule encoded: one embedding per entry, ``(entries, tokens, width)``, and for SDXL one pooled output per
    entry, ``(entries, projection)``."""

    embeddings: torch.Tensor
    entry_of_step: tuple[int, ...]
    pooled: torch.Tensor | None = None

    def at(self, step: int) -> torch.Tensor:
        return self.embeddings[self.entry_of_step[step - 1]]

    def pooled_at(self, step: int) -> torch.Tensor:
        assert self.pooled is not None
        return self.pooled[self.entry_of_step[step - 1]]


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
        key = (s["width"], s["height"], s["steps"], s["sampler"], self.guidance, self.chunks,
               *(s.get(name) for name in SIZE_CONDITIONING))
        return (*key, self.index) if SAMPLERS[s["sampler"]].shared_noise else key


class Renderer:
    """Render :class:`RenderRequest` objects with a ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``; see
    the module docstring.

    ``spec`` (a :class:`~bridge.models.ModelSpec` or registry key) supplies defaults, the prediction type and the pad
    token; without it the pipeline's own scheduler config, size and tokenizer are used. ``device``/``dtype`` move the
    pipeline when given. ``compile`` compiles the UNet with ``torch.compile`` (a string is its ``mode``, e.g.
    ``"reduce-overhead"`` for CUDA graphs or ``"max-autotune"``); ``channels_last`` puts UNet and VAE in
    channels-last memory format; ``progress`` shows a tqdm bar on stderr. Attention uses PyTorch's SDPA (diffusers'
    ``AttnProcessor2_0``). ``model_name`` goes into each result's settings (default: the registry key).

    SDXL (a pipeline with a second text encoder): ``refiner``, a ``StableDiffusionXLImg2ImgPipeline``, runs the steps
    after ``refiner_switch_at`` (A1111's "Refiner switch at", a fraction of the steps) on the base's latents;
    ``refiner_name`` goes into the settings.
    """

    def __init__(
        self,
        pipeline: StableDiffusionPipeline | StableDiffusionXLPipeline,
        spec: ModelSpec | str | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        compile: bool | str = False,
        channels_last: bool = False,
        progress: bool = True,
        model_name: str | None = None,
        refiner: StableDiffusionXLImg2ImgPipeline | None = None,
        refiner_switch_at: float = REFINER_SWITCH_AT,
        refiner_name: str | None = None,
    ):
        import torch

        self.pipeline = pipeline
        self.spec = resolve_spec(spec)
        self.xl = getattr(pipeline, "text_encoder_2", None) is not None
        if self.spec is not None and (self.spec.family == "sdxl") != self.xl:
            raise ValueError(f"{self.spec.key!r} is a model of family {self.spec.family} but the pipeline is a "
                             f"{type(pipeline).__name__}")
        if refiner is not None and not self.xl:
            raise ValueError(f"a refiner runs after an SDXL pipeline, not after a {type(pipeline).__name__}")
        if not 0 < refiner_switch_at < 1:
            raise ValueError(f"`refiner_switch_at` must be between 0 and 1 (a fraction of the steps) but is "
                             f"{refiner_switch_at!r}")
        self.refiner = refiner
        self.refiner_switch_at = float(refiner_switch_at)
        self.refiner_name = refiner_name or (type(refiner).__name__ if refiner is not None else None)
        self.model_name = model_name or (self.spec.key if self.spec else type(pipeline).__name__)
        self.progress = progress
        for pipe in (pipeline, refiner) if refiner is not None else (pipeline,):
            if device is not None or dtype is not None:
                pipe.to(device=device, dtype=dtype)
            pipe.set_progress_bar_config(disable=True)  # one bar over all images instead, see render()
            use_sdpa(pipe.unet)
            use_sdpa(pipe.vae)
            if channels_last:
                pipe.unet.to(memory_format=torch.channels_last)
                pipe.vae.to(memory_format=torch.channels_last)
            if compile:
                pipe.unet.compile(**({"mode": compile} if isinstance(compile, str) else {}))
        self._base_scheduler_config = dict(pipeline.scheduler.config)
        self._refiner_scheduler_config = dict(refiner.scheduler.config) if refiner is not None else {}
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
        refiner: str | Path | None = None,
        refiner_switch_at: float = REFINER_SWITCH_AT,
        **load_kwargs: Any,
    ) -> Renderer:
        """A renderer for ``model``: a registry key or alias (``"sd21"``), a hub id, a local diffusers folder, or a
        single ``.safetensors``/``.ckpt`` file (:func:`bridge.imaging.pipelines.load_pipeline`, which ``spec`` and
        ``load_kwargs`` go to). Device defaults to CUDA, then MPS, then CPU; dtype to bf16 (fp16 where bf16 is
        unsupported) on CUDA, fp16 on MPS, fp32 on CPU. ``refiner`` (SDXL): the refiner's hub id, folder or single
        file (:func:`bridge.imaging.pipelines.load_refiner`)."""
        device = device or default_device()
        pipeline, spec = load_pipeline(model, spec=spec, device=device, dtype=dtype, **load_kwargs)
        refiner_pipeline = None
        if refiner is not None:
            refiner_pipeline = load_refiner(refiner, device=device, dtype=dtype, **load_kwargs)
        return cls(
            pipeline,
            spec,
            device=device,
            compile=compile,
            channels_last=channels_last,
            progress=progress,
            model_name=spec.key if spec else str(model),
            refiner=refiner_pipeline,
            refiner_switch_at=refiner_switch_at,
            refiner_name=str(refiner) if refiner is not None else None,
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
        settings.update(self._size_conditioning(request, width, height))
        positive = self._schedule([clause.text_at(step, steps) for step in range(1, steps + 1)])
        negative = self._schedule(negative_texts(request.negative_prompt, steps))
        if SAMPLERS[sampler].second_order and max(len(positive.entries), len(negative.entries)) > 1:
            self._warn_once(
                "second_order",
                f"prompt editing with the second-order sampler {sampler!r}: the schedule is spread over its model "
                "calls, where A1111 runs past it (see bridge.imaging.conditioning.schedule_step)",
            )
        return _Plan(index, request, settings, cfg_scale * clause.weight, positive, negative)

    def _size_conditioning(self, request: RenderRequest, width: int, height: int) -> dict[str, Any]:
        """SDXL's size conditioning (A1111: original and target size are the render's, the crop is (0, 0)) and the
        refiner's settings; nothing for other models, which refuse size conditioning."""
        given = [name for name in SIZE_CONDITIONING if getattr(request, name) is not None]
        if not self.xl:
            if given:
                raise ValueError(f"`{given[0]}` is SDXL's size conditioning; {self.model_name} is not an SDXL model")
            return {}
        settings: dict[str, Any] = {
            "original_size": request.original_size or (height, width),
            "target_size": request.target_size or (height, width),
            "crops_coords_top_left": request.crops_coords_top_left or (0, 0),
        }
        if self.refiner is not None:
            settings.update(refiner=self.refiner_name, refiner_switch_at=self.refiner_switch_at)
        return settings

    def _clip_skip(self, requested: int | None) -> int:
        if requested is None or requested <= 1:
            return 1
        if self.xl or (self.spec is not None and self.spec.clip_layer == "penultimate"):
            self._warn_once(
                "clip_skip",
                f"clip skip {requested} ignored: {self.model_name} already conditions on the penultimate layer "
                "(A1111 ignores clip skip for SD 2 and SDXL models too)",
            )
            return 1
        return requested

    def _schedule(self, texts_per_step: list[str]) -> _Schedule:
        entries, entry_of_step = schedule_entries(texts_per_step)
        chunks = max(len(prompt_chunks(self.pipeline.tokenizer, text)) for text in entries)
        return _Schedule(entries, entry_of_step, chunks)

    def _encode(
        self, plan: _Plan, cache: dict[tuple, Any], pipe: Any = None
    ) -> tuple[_Conditioning, _Conditioning]:
        """Encode a plan's prompt and negative prompt for ``pipe`` (default: the pipeline; SDXL: or its refiner),
        both padded to the plan's length with the empty prompt's encoding, as A1111 pads the shorter of cond and
        uncond. ``cache`` holds encodings already made for this batch (a shared negative prompt is encoded once).
        SDXL conditions on zeros for an empty negative prompt, as A1111 does."""
        import torch

        pipe = pipe or self.pipeline
        clip_skip = plan.settings["clip_skip"]

        def encoded(entries: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
            key = (id(pipe), tuple(entries), clip_skip)
            if key not in cache:
                cache[key] = self._encode_texts(pipe, entries, clip_skip)
            return cache[key]

        empty, _ = encoded([""])
        conditionings = []
        for schedule in (plan.positive, plan.negative):
            embeddings, pooled = encoded(schedule.entries)
            if self.xl and schedule is plan.negative and schedule.entries == [""]:
                embeddings, pooled = torch.zeros_like(embeddings), torch.zeros_like(pooled)
            missing = plan.chunks - schedule.chunks
            if missing:
                filler = empty.repeat(len(schedule.entries), missing, 1)
                embeddings = torch.cat([embeddings, filler], dim=1)
            conditionings.append(_Conditioning(embeddings, schedule.entry_of_step, pooled))
        return conditionings[0], conditionings[1]

    def _encode_texts(
        self, pipe: Any, texts: Sequence[str], clip_skip: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(embeddings, pooled)`` of ``texts`` (one A1111 batch): :func:`encode_weighted` with the registry's pad
        token, or for SDXL :func:`encode_weighted_xl` over the pipeline's text encoders (the refiner has one), each
        tokenizer padding with its own pad token."""
        if not self.xl:
            tokenizer = pipe.tokenizer
            pad = tokenizer.convert_tokens_to_ids(self.spec.pad_token) if self.spec else tokenizer.pad_token_id
            return encode_weighted(pipe.text_encoder, tokenizer, texts, clip_skip=clip_skip, pad_token_id=pad), None
        pairs = [(encoder, tokenizer) for encoder, tokenizer in
                 ((pipe.text_encoder, pipe.tokenizer), (pipe.text_encoder_2, pipe.tokenizer_2)) if encoder is not None]
        return encode_weighted_xl([e for e, _ in pairs], [t for _, t in pairs], texts)

    def _warn_once(self, topic: str, message: str) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            warnings.warn(message, UserWarning, stacklevel=2)

    def _render_batch(self, plans: list[_Plan], keep_pixels: bool) -> list[RenderResult]:
        """Encode, denoise (SDXL: then refine) and decode one batch of plans that share their settings; the pipeline
        is left as it was."""
        import torch

        pipe = self.pipeline
        settings = plans[0].settings
        cache: dict[tuple, Any] = {}
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
        extra: dict[str, Any] = {"output_type": "np"}
        if self.refiner is not None:
            extra = {"output_type": "latent", "denoising_end": self.refiner_switch_at}
        original_scheduler, pipe.scheduler = pipe.scheduler, scheduler
        try:
            output = pipe(
                width=settings["width"],
                height=settings["height"],
                num_inference_steps=settings["steps"],
                guidance_scale=plans[0].guidance,
                generator=generators,
                latents=latents.to(device=pipe.device, dtype=pipe.unet.dtype),
                **self._conditioning_kwargs(plans, conditionings, 1),
                **extra,
            ).images
        finally:
            pipe.scheduler = original_scheduler
        pixels = output if self.refiner is None else self._refine(plans, output, scheduler, generators)
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

    def _conditioning_kwargs(
        self, plans: list[_Plan], conditionings: list[tuple[_Conditioning, _Conditioning]], step: int
    ) -> dict[str, Any]:
        """The pipeline's conditioning arguments at A1111 step ``step`` and the callback that swaps them when a
        prompt schedule moves on: embeddings, SDXL's pooled outputs and size conditioning."""
        import torch

        def embeddings(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            return (
                torch.stack([positive.at(step) for positive, _ in conditionings]),
                torch.stack([negative.at(step) for _, negative in conditionings]),
            )

        def pooled(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            return (
                torch.stack([positive.pooled_at(step) for positive, _ in conditionings]),
                torch.stack([negative.pooled_at(step) for _, negative in conditionings]),
            )

        settings = plans[0].settings
        schedules = [s.entry_of_step for plan in plans for s in (plan.positive, plan.negative)]
        positive, negative = embeddings(step)
        kwargs: dict[str, Any] = {"prompt_embeds": positive, "negative_prompt_embeds": negative}
        if not self.xl:
            return {**kwargs, "callback_on_step_end": schedule_callback(schedules, settings["steps"], embeddings),
                    "callback_on_step_end_tensor_inputs": ["prompt_embeds"]}
        positive_pooled, negative_pooled = pooled(step)
        return {
            **kwargs,
            "pooled_prompt_embeds": positive_pooled,
            "negative_pooled_prompt_embeds": negative_pooled,
            "original_size": settings["original_size"],
            "crops_coords_top_left": settings["crops_coords_top_left"],
            "target_size": settings["target_size"],
            "callback_on_step_end": schedule_callback(schedules, settings["steps"], embeddings, pooled=pooled),
            "callback_on_step_end_tensor_inputs": ["prompt_embeds", "add_text_embeds"],
        }

    def _refine(self, plans: list[_Plan], latents: torch.Tensor, base_scheduler: Any, generators: list) -> np.ndarray:
        """The refiner step (SDXL): the steps after ``refiner_switch_at`` on the base's latents, the same sampler
        and generators, the prompts encoded by the refiner's own text encoder (A1111's weighting on it), and
        A1111's aesthetic-score conditioning (6 positive, 2.5 negative). Returns decoded pixels."""
        refiner = self.refiner
        settings = plans[0].settings
        cache: dict[tuple, Any] = {}
        conditionings = [self._encode(plan, cache, refiner) for plan in plans]
        scheduler = make_scheduler(
            settings["sampler"],
            self._refiner_scheduler_config,
            prediction_type=settings["prediction_type"],
            seed=plans[0].request.seed,
        )
        # The refiner starts with the text of the step the base stopped at; the callback follows the schedule on.
        iterations = len(base_scheduler.timesteps)
        done = getattr(base_scheduler, "step_index", None) or round(self.refiner_switch_at * iterations)
        kwargs = self._conditioning_kwargs(plans, conditionings, schedule_step(done, iterations, settings["steps"]))
        del kwargs["target_size"]  # the refiner is conditioned on an aesthetic score in its place
        original_scheduler, refiner.scheduler = refiner.scheduler, scheduler
        try:
            return refiner(
                image=latents,
                num_inference_steps=settings["steps"],
                denoising_start=self.refiner_switch_at,
                guidance_scale=plans[0].guidance,
                generator=generators,
                aesthetic_score=REFINER_AESTHETIC_SCORE,
                negative_aesthetic_score=REFINER_NEGATIVE_AESTHETIC_SCORE,
                output_type="np",
                **kwargs,
            ).images
        finally:
            refiner.scheduler = original_scheduler


def _batches(plans: list[_Plan], batch_size: int) -> Iterable[list[_Plan]]:
    """Plans that can share a batch, ``batch_size`` at a time, groups in order of first appearance."""
    groups: dict[tuple, list[_Plan]] = {}
    for plan in plans:
        groups.setdefault(plan.batch_key(), []).append(plan)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]
