"""Render and scoring throughput: our Renderer against a plain diffusers pipeline, in the same run.

What it measures, on one GPU, for each model of ``--models`` (default both):

- ``sd21-base``: a full-size Stable Diffusion 2.1-base pipeline (UNet, VAE, OpenCLIP ViT-H text encoder) at 512x512;
  ``sdxl``: a full-size SDXL 1.0 base pipeline (UNet with size conditioning, VAE, CLIP ViT-L and OpenCLIP bigG text
  encoders) at 1024x1024. Each is built from the configs the model publishes (written out below) with random
  weights: speed does not depend on the weight values. 25 steps, CFG 7, a negative prompt, bf16, at batch sizes 1, 4
  and 16, one model after the other (only one is in memory at a time).
- baseline: the diffusers pipeline's ``__call__`` (``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``) with a
  list of per-image generators, default SDPA attention, no compile, the same scheduler (DPM++ 2M Karras) and dtype.
- ours: ``bridge.imaging.render.Renderer`` on the same pipeline (A1111 emphasis and chunking, one seed per image), with
  ``--compile [MODE]`` / ``--channels-last`` when given. The baseline runs first, since those flags change the
  modules. Without flags the two do the same work, so expect a ratio near 1; the speed-up comes from the flags.
- images/s for each, their ratio, and the share of the physical limit: FLOPs per image counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (text encoders on prompt + negative, UNet x steps on the CFG batch of 2,
  VAE decode), per model, against the GPU's dense bf16 peak: H100 SXM 989 TFLOP/s, H100 PCIe 756, H100 NVL 835, H200 989,
  detected from the device name (printed), or ``--peak-tflops``.
- ViT-H-14 scoring images/s through ``bridge.imaging.score.Scorer`` (open_clip, random weights, bf16, 512 px PIL images in,
  preprocessing included).

Run on a GPU (about 5 minutes, most of it building the models and warming up)::

    python benchmarks/gpu_render.py
    python benchmarks/gpu_render.py --compile max-autotune --channels-last
    python benchmarks/gpu_render.py --compile reduce-overhead --batches 1   # CUDA graphs: launch-bound batch 1
    python benchmarks/gpu_render.py --models sdxl --batches 1 4             # SDXL only

On a CPU, as a smoke test on tiny random models (seconds; the figures mean nothing)::

    python benchmarks/gpu_render.py --tiny
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

# stabilityai/stable-diffusion-2-1-base: unet/config.json, vae/config.json, text_encoder/config.json (23 of ViT-H's
# 24 text layers: diffusers stores SD 2's penultimate-layer conditioning by dropping the last one); its scheduler
# config is bridge.testing.PNDM_SCHEDULER.
SD21_BASE_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}
SD21_BASE_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD21_BASE_TEXT_ENCODER: dict[str, Any] = {
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "max_position_embeddings": 77,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
    "vocab_size": 49408,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 0,
}

# stabilityai/stable-diffusion-xl-base-1.0: unet/config.json (the text_time embedding takes bigG's 1280-wide pooled
# output and 6 size numbers of 256 each: 2816), text_encoder (CLIP ViT-L/14) and text_encoder_2 (OpenCLIP bigG/14 with
# its projection) configs; its VAE has SD's layout at 1024 px; its scheduler config is bridge.testing.SDXL_SCHEDULER.
SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}
SDXL_VAE: dict[str, Any] = {**SD21_BASE_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
SDXL_TEXT_ENCODER: dict[str, Any] = {
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}
SDXL_TEXT_ENCODER_2: dict[str, Any] = {
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "max_position_embeddings": 77,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "vocab_size": 49408,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 0,
}
MODELS = {"sd21-base": 512, "sdxl": 1024}  # the models measured and their native sizes

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), most specific name first.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0))
PROMPTS = [
    "a (lighthouse:1.2) on a cliff at dusk, dramatic sky, highly detailed",
    "portrait of an old fisherman, oil painting, [muted] colors",
    "a cozy cabin in a snowy forest, warm light in the windows",
    "a red fox curled up on moss, macro photograph, shallow depth of field",
]
NEGATIVE = "blurry, low quality, watermark"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_render.py",
        description="Images/s of bridge.imaging.render.Renderer vs the diffusers pipeline's __call__ (SD 2.1-base, SDXL), "
                    "and of ViT-H-14 scoring.",
        epilog="example: python benchmarks/gpu_render.py --batches 1 4 16  |  smoke test: --tiny",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny random models on the CPU (a smoke test)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="models to measure, one after the other (default: all)")
    parser.add_argument("--device", default="cuda", help="torch device for the full-size run (default cuda)")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1 4 16; --tiny: 1 2)")
    parser.add_argument("--repeats", type=int, help="timed runs per batch size after one warm-up (default 3)")
    parser.add_argument("--steps", type=int, help="denoising steps (default 25; --tiny: 2)")
    parser.add_argument("--size", type=int, help="image width and height (default: the model's, 512 or 1024; "
                                                 "--tiny: 32)")
    parser.add_argument("--sampler", default="DPM++ 2M Karras", help="A1111 sampler name, for both sides")
    parser.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                        help="ours: torch.compile the UNet (optionally a mode: reduce-overhead, max-autotune)")
    parser.add_argument("--channels-last", action="store_true", help="ours: channels-last UNet and VAE")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the device, if not detected")
    parser.add_argument("--score-batch", type=int, help="images per scoring batch (default 64; --tiny: 4)")
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.batches = args.batches or ([1, 2] if tiny else [1, 4, 16])
    args.repeats = args.repeats or (1 if tiny else 3)
    args.steps = args.steps or (2 if tiny else 25)
    args.size = args.size or (32 if tiny else None)
    args.score_batch = args.score_batch or (4 if tiny else 64)
    for name in ("repeats", "steps", "score_batch") + (("size",) if args.size is not None else ()):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if min(args.batches) < 1:
        parser.error(f"--batches must all be at least 1, got {args.batches}")
    return args


def build_sd21_base(device: str, dtype: torch.dtype) -> Any:
    """SD 2.1-base from the published configs, random weights, created directly on ``device``."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bridge.testing import PNDM_SCHEDULER, SD2_PAD_TOKEN, clip_tokenizer

    with torch.device(device):
        unet = UNet2DConditionModel(**SD21_BASE_UNET).to(dtype)
        vae = AutoencoderKL(**SD21_BASE_VAE).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD21_BASE_TEXT_ENCODER)).to(dtype)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(pad_token=SD2_PAD_TOKEN),
        unet=unet,
        scheduler=PNDMScheduler(**PNDM_SCHEDULER),  # SD 2.1-base's published scheduler config
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sdxl(device: str, dtype: torch.dtype) -> Any:
    """SDXL 1.0 base from the published configs, random weights, created directly on ``device``."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from bridge.testing import SD2_PAD_TOKEN, SDXL_SCHEDULER, clip_tokenizer

    with torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET).to(dtype)
        vae = AutoencoderKL(**SDXL_VAE).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SDXL_TEXT_ENCODER)).to(dtype)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**SDXL_TEXT_ENCODER_2)).to(dtype)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token=SD2_PAD_TOKEN),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
        add_watermarker=False,
    )


def peak_flops(device: str, override_tflops: float | None) -> tuple[float | None, str]:
    """The device's dense bf16 peak in FLOP/s and a line saying where it came from."""
    import torch

    if override_tflops:
        return override_tflops * 1e12, f"{override_tflops:g} TFLOP/s (--peak-tflops)"
    if not device.startswith("cuda"):
        return None, f"no bf16 peak known for {device}; physical-limit share not computed"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            variant = key if key != "H100" else "H100 SXM"
            return tflops * 1e12, f"{name}: {variant} dense bf16 peak {tflops:g} TFLOP/s"
    return None, f"no bf16 peak known for {name!r}; pass --peak-tflops"


def flops_per_image(pipe: Any, size: int, steps: int) -> float:
    """FLOPs to make one image with CFG: the text encoders on 2 prompts, UNet x steps on a batch of 2 (SDXL: with its
    pooled text and size conditioning), VAE decode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device, dtype = pipe.device, pipe.unet.dtype
    latent = size // pipe.vae_scale_factor
    channels = pipe.unet.config.in_channels
    tokens = torch.full((2, 77), pipe.tokenizer.eos_token_id, device=device)
    encoders = [e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None]
    width = pipe.unet.config.cross_attention_dim
    states = torch.randn(2, 77, width, device=device, dtype=dtype)
    added = None
    if pipe.unet.config.addition_embed_type == "text_time":  # SDXL: pooled text + 6 size numbers
        pooled = encoders[-1].config.projection_dim
        added = {"text_embeds": torch.randn(2, pooled, device=device, dtype=dtype),
                 "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, device=device, dtype=dtype)}
    counts = {}
    with torch.no_grad():
        for name, run in (
            ("text", lambda: [encoder(tokens) for encoder in encoders]),
            ("unet", lambda: pipe.unet(torch.randn(2, channels, latent, latent, device=device, dtype=dtype), 500,
                                       encoder_hidden_states=states, added_cond_kwargs=added)),
            ("vae", lambda: pipe.vae.decode(torch.randn(1, channels, latent, latent, device=device, dtype=dtype))),
        ):
            with FlopCounterMode(display=False) as counter:
                run()
            counts[name] = counter.get_total_flops()
    return counts["text"] + steps * counts["unet"] + counts["vae"]


def images_per_second(run: Callable[[int], Any], batch: int, repeats: int, synchronize: Callable[[], None]) -> float:
    run(batch)  # warm-up: allocations, kernel selection, compilation
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        run(batch)
    synchronize()
    return batch * repeats / (time.perf_counter() - start)


def measure_model(model: str, args: argparse.Namespace, device: str, dtype: torch.dtype, peak: float | None,
                  prompts: list[str], synchronize: Callable[[], None]) -> None:
    """Build ``model`` (tiny with --tiny), count its FLOPs per image, time the baseline then ours, print the lines."""
    import torch

    from bridge.imaging.render import Renderer, RenderRequest, make_scheduler
    from bridge.testing import tiny_sd_pipeline

    size = args.size or MODELS[model]
    if args.tiny:
        pipe = tiny_sd_pipeline("sdxl" if model == "sdxl" else "sd2")
    else:
        pipe = (build_sdxl if model == "sdxl" else build_sd21_base)(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    flops = flops_per_image(pipe, size, args.steps)
    limit = peak / flops if peak else None
    print(f"{model} ({type(pipe).__name__}, {size}x{size}): FLOPs per image (FlopCounterMode) "
          f"{flops / 1e9:,.1f} GFLOP" + (f"; physical limit {limit:.2f} images/s" if limit else ""))

    # baseline first: ours may change the modules in place (channels-last, compile)
    pipe.scheduler = make_scheduler(args.sampler, dict(pipe.scheduler.config))

    def baseline(batch: int) -> Any:
        return pipe(
            prompt=prompts[:batch],
            negative_prompt=[NEGATIVE] * batch,
            height=size,
            width=size,
            num_inference_steps=args.steps,
            guidance_scale=7.0,
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in range(batch)],
        ).images

    baseline_ips = {batch: images_per_second(baseline, batch, args.repeats, synchronize) for batch in args.batches}
    renderer = Renderer(pipe, progress=False, compile=args.compile, channels_last=args.channels_last)

    def ours(batch: int) -> Any:
        requests = [
            RenderRequest(prompt, NEGATIVE, seed=seed, width=size, height=size, steps=args.steps, cfg_scale=7.0,
                          sampler=args.sampler)
            for seed, prompt in enumerate(prompts[:batch])
        ]
        return renderer.render(requests, batch_size=batch)

    compiled = f"compile {args.compile}" if isinstance(args.compile, str) else "compile"
    flags = ", ".join(f for f, on in ((compiled, args.compile), ("channels-last", args.channels_last)) if on)
    print(f"{model} ours: bridge.imaging.render.Renderer ({flags or 'no compile, default memory format'}); "
          f"baseline: {type(pipe).__name__}.__call__")
    for batch in args.batches:
        ours_ips = images_per_second(ours, batch, args.repeats, synchronize)
        line = (f"{model} batch {batch:>2}: ours {ours_ips:8.3f} images/s, baseline {baseline_ips[batch]:8.3f} "
                f"images/s, ratio {ours_ips / baseline_ips[batch]:.2f}x")
        if limit:
            line += f", {100 * ours_ips / limit:.1f}% of physical limit (baseline {100 * baseline_ips[batch] / limit:.1f}%)"
        print(line)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from bridge.imaging.score import Scorer
    from bridge.testing import tiny_open_clip

    if args.tiny:
        device, dtype = "cpu", torch.float32
    else:
        device, dtype = args.device, torch.bfloat16
        if device.startswith("cuda") and not torch.cuda.is_available():
            print("gpu_render.py: no CUDA device; use --tiny for a CPU smoke test", file=sys.stderr)
            return 2

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(max(args.batches))]
    peak, peak_line = peak_flops(device, args.peak_tflops)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.startswith('cuda') else 'CPU'}), dtype "
          f"{str(dtype).removeprefix('torch.')}, {args.steps} steps, CFG 7, {args.sampler}")
    print(f"peak: {peak_line}")
    for model in args.models:
        measure_model(model, args, device, dtype, peak, prompts, synchronize)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    if args.tiny:
        model, preprocess, tokenizer = tiny_open_clip()
        scorer, scorer_name = Scorer(model, preprocess, tokenizer, device=device, batch_size=args.score_batch), "tiny"
    else:
        precision = "bf16" if device.startswith("cuda") else "fp32"  # bridge.imaging.score: half precision on accelerators
        scorer = Scorer.from_pretrained("ViT-H-14", None, device=device, precision=precision, batch_size=args.score_batch)
        scorer_name = "ViT-H-14"
    from PIL import Image

    side = args.size or MODELS["sd21-base"]
    images = [Image.new("RGB", (side, side), (i * 40 % 256, 90, 160)) for i in range(args.score_batch)]
    texts = [prompts[i % len(prompts)] for i in range(args.score_batch)]

    def score(batch: int) -> Any:
        return scorer.text_image(texts[:batch], images[:batch])

    score_ips = images_per_second(score, args.score_batch, args.repeats, synchronize)
    print(f"scoring ({scorer_name}, batch {args.score_batch}, text features cached): {score_ips:.1f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
