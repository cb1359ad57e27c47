"""Tiny random models built from configs, for tests and ``--tiny`` runs: no hub, no download, seconds on a CPU.

    >>> from bridge.testing import clip_tokenizer, t5_from_config, tiny_open_clip, tiny_sd_pipeline, train_tokenizer
    >>> pipe = tiny_sd_pipeline("sd2")              # StableDiffusionPipeline, 32 px images, v-prediction
    >>> xl = tiny_sd_pipeline("sdxl")               # StableDiffusionXLPipeline: two text encoders, pooled output
    >>> refiner = tiny_sdxl_refiner()               # StableDiffusionXLImg2ImgPipeline, aesthetic-score conditioning
    >>> model, preprocess, tokenizer = tiny_open_clip()
    >>> clip_tokenizer()("a cat")["input_ids"]      # the real CLIP ids, from open_clip's bundled BPE vocab
    [49406, 320, 2368, 49407]
    >>> t5_tokenizer = train_tokenizer(["a cat", "a dog"], vocab_size=300)  # BPE, T5's special tokens, placeholders
    >>> t5 = t5_from_config(len(t5_tokenizer))      # a random T5, the learned bridge's model in miniature

Every builder runs under ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so the same seed gives the same
weights and the caller's random state is left untouched. The configs are module constants (below) so a test can read
the sizes instead of repeating them.

The three pipeline kinds mirror the real model families in miniature:

- ``"sd1"``: OpenAI-CLIP-style text encoder (``quick_gelu``), conditioning from its last layer, tokenizer padding with
  the end token (``<|endoftext|>``, id 49407), PNDM scheduler with SD 1.5's scheduler config, epsilon prediction.
- ``"sd2"``: OpenCLIP-style text encoder (``gelu``), padding with ``"!"`` (id 0), DDIM scheduler with SD 2.1 (768-v)'s
  config, v-prediction, linear-projection transformer blocks. SD 2 conditions on OpenCLIP's *penultimate* layer
  followed by the final layer norm. Diffusers' SD 2 checkpoints store that by dropping the tower's last block
  (``convert_open_clip_checkpoint`` skips ``resblocks.23``: the hub's text encoder has 23 of ViT-H's 24 layers), so
  the stored encoder's ``last_hidden_state`` *is* the penultimate layer + final layer norm. The tiny SD 2 encoder is
  made the same way: :func:`tiny_text_encoder` builds a full tower of ``TEXT_LAYERS + 1`` blocks and drops the last
  one; ``tiny_text_encoder("sd2", full_tower=True)`` returns the untruncated tower so a test can check the
  penultimate-layer rule independently.

- ``"sdxl"``: two text encoders as SDXL has: an OpenAI-CLIP-style one (width 32, ``quick_gelu``, pads with the end
  token) and an OpenCLIP-style one with a text projection (``CLIPTextModelWithProjection``, width 48, ``gelu``, pads
  with ``"!"``), both full towers (SDXL conditions on ``hidden_states[-2]``, no final layer norm); the UNet's
  cross-attention width is their sum (80) and its ``text_time`` embedding takes the second encoder's pooled,
  projected output and the six size numbers (``original_size``, ``crops_coords_top_left``, ``target_size``). Euler
  scheduler with SDXL's published config, epsilon prediction. :func:`tiny_sdxl_refiner` is the refiner in miniature:
  only the second encoder, and ``aesthetic_score`` in place of ``target_size`` (five numbers).

All pipelines produce 32x32 images from 16x16x4 latents (VAE scale factor 2), with no safety checker and no feature
extractor. Their text encoders' final layer norm gets random affine parameters: trained CLIP's has a clearly non-zero
bias; left at ones and zeros, every token's state would have mean 0 and A1111's emphasis mean restore would be 0 / 0.
"""

from __future__ import annotations

import atexit
import functools
import gzip
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from diffusers import (
        AutoencoderKL,
        StableDiffusionPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        PreTrainedTokenizerFast,
        T5ForConditionalGeneration,
    )

__all__ = [
    "KINDS",
    "TINY_OPEN_CLIP_CONFIG",
    "TINY_OPEN_CLIP_NAME",
    "clip_tokenizer",
    "save_tiny_pipeline",
    "t5_from_config",
    "tiny_open_clip",
    "tiny_sd_pipeline",
    "tiny_sdxl_refiner",
    "tiny_sdxl_text_encoders",
    "tiny_text_encoder",
    "train_tokenizer",
]

KINDS = ("sd1", "sd2", "sdxl")

# CLIP's BPE vocabulary: 256 byte tokens, their 256 end-of-word forms, 48,894 merges, start and end tokens.
CLIP_VOCAB_SIZE = 49408
CLIP_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2
CONTEXT_LENGTH = 77
BOS_ID, EOS_ID = 49406, 49407
SD2_PAD_TOKEN, SD2_PAD_ID = "!", 0  # SD 2's tokenizer pads with "!" (id 0), SD 1's with the end token

# A tiny open_clip CLIP: 32-d joint embedding, a 2-layer ViT on 32 px images (4x4 patches of 8 px), a 2-layer text
# tower with CLIP's real context length and vocabulary (so open_clip's own tokenizer works unchanged).
TINY_OPEN_CLIP_NAME = "TinyCLIP-test"
TINY_OPEN_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": CLIP_VOCAB_SIZE, "width": 32, "heads": 4, "layers": 2},
}

# Tiny Stable Diffusion parts. Text width differs between the kinds (32 vs 48, as 768 vs 1024 in the real models) so
# code that assumes one width fails on the other.
TEXT_LAYERS = 2  # layers of the stored text encoder (SD 2's full tower has one more, see the module docstring)
TEXT_WIDTH = {"sd1": 32, "sd2": 48}
TEXT_HEADS = 4
TEXT_ACT = {"sd1": "quick_gelu", "sd2": "gelu"}  # OpenAI CLIP uses quick_gelu, OpenCLIP exact gelu
FINAL_NORM_BIAS_MEAN, FINAL_NORM_STD = -0.3, 0.2  # random affine final layer norm (see tiny_text_encoder)
# SDXL's two encoders (768 and 1280 wide in the real model), the second one's projection (1280) and the size of each
# number's embedding in the UNet's text_time conditioning (256).
SDXL_TEXT_WIDTHS = (32, 48)
SDXL_TEXT_ACTS = ("quick_gelu", "gelu")
SDXL_PROJECTION = 32
SDXL_TIME_EMBED = 8
SDXL_VAE_SEED = 4  # added to the seed: the base and its refiner share one VAE
SDXL_TIME_IDS, REFINER_TIME_IDS = 6, 5  # (original_size, crop, target_size) vs (original_size, crop, aesthetic score)
IMAGE_SIZE = 32  # pixels
LATENT_CHANNELS = 4
UNET_CHANNELS = (32, 64)
VAE_CHANNELS = (32, 64)  # two blocks: one downsampling, so latents are IMAGE_SIZE // 2
# Scheduler configs as published: PNDM, epsilon with SD 1.5 and the SD 2.x 512 base models; DDIM, v-prediction with
# SD 2.1 768-v.
PNDM_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
V_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
}
# SDXL 1.0 base's published scheduler config (Euler, epsilon, "leading" timesteps).
SDXL_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}; valid kinds: {', '.join(KINDS)}")


@functools.cache
def _work_dir() -> Path:
    """One temporary folder per process for generated files (tokenizer vocab, open_clip config), removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="bridge-testing-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _seeded(seed: int, build: Callable[[], Any]) -> Any:
    """Run ``build`` under ``torch.manual_seed(seed)`` without disturbing the caller's random state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# --------------------------------------------------------------------------------------------------------------------
# Tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character table (the first 256 BPE tokens, in id order)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


@functools.cache
def _clip_tokenizer_dir() -> Path:
    """vocab.json + merges.txt with the ids of openai/clip-vit-*, written from open_clip's bundled BPE merges.

    ``find_spec`` locates open_clip without importing it (and torchvision with it).
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("bridge.testing needs open_clip_torch for its BPE vocabulary: pip install open_clip_torch")
    bpe = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "rt", encoding="utf-8") as file:
        merges = file.read().split("\n")[1 : CLIP_MERGES + 1]
    byte_tokens = list(_bytes_to_unicode().values())
    vocab = [*byte_tokens, *(t + "</w>" for t in byte_tokens), *(m.replace(" ", "") for m in merges)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder = _work_dir() / "clip_tokenizer"
    folder.mkdir(exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    return folder


def clip_tokenizer(max_length: int = CONTEXT_LENGTH, pad_token: str | None = None) -> CLIPTokenizer:
    """An HF ``CLIPTokenizer`` with CLIP's real vocabulary (ids equal openai/clip-vit-large-patch14's), no download.

    ``pad_token`` defaults to the end token, as SD 1's tokenizer; SD 2's pads with ``"!"``. ``model_max_length`` must be
    set: without a tokenizer_config.json it defaults to a huge number and ``padding="max_length"`` would explode.
    """
    from transformers import CLIPTokenizer

    kwargs = {"pad_token": pad_token} if pad_token is not None else {}
    return CLIPTokenizer.from_pretrained(str(_clip_tokenizer_dir()), model_max_length=max_length, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# open_clip


@functools.cache
def _register_tiny_open_clip() -> str:
    import open_clip

    folder = _work_dir() / "open_clip_configs"
    folder.mkdir(exist_ok=True)
    (folder / f"{TINY_OPEN_CLIP_NAME}.json").write_text(json.dumps(TINY_OPEN_CLIP_CONFIG), "utf-8")
    open_clip.add_model_config(folder)  # open_clip's registry is keyed by the file stem
    return TINY_OPEN_CLIP_NAME


def tiny_open_clip(seed: int = 0) -> tuple[Any, Any, Any]:
    """A tiny random open_clip CLIP in eval mode: ``(model, preprocess, tokenizer)``, as open_clip returns them.

    ``preprocess`` is open_clip's evaluation transform (PIL image -> 3x32x32 tensor); ``tokenizer`` is open_clip's
    SimpleTokenizer for the bundled BPE (texts -> ``(n, 77)`` ids). The model is registered with open_clip as
    ``TINY_OPEN_CLIP_NAME``, so ``open_clip.create_model_and_transforms(TINY_OPEN_CLIP_NAME)`` works after this call.
    """
    import open_clip

    name = _register_tiny_open_clip()
    model, _, preprocess = _seeded(seed, lambda: open_clip.create_model_and_transforms(name, pretrained=None))
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


# --------------------------------------------------------------------------------------------------------------------
# Stable Diffusion


def _clip_text_config(width: int, act: str, layers: int, pad_token_id: int, projection_dim: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=width,
        intermediate_size=4 * width,
        num_attention_heads=TEXT_HEADS,
        num_hidden_layers=layers,
        max_position_embeddings=CONTEXT_LENGTH,
        hidden_act=act,
        projection_dim=projection_dim or width,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=pad_token_id,
    )


def _with_random_final_norm(model: Any) -> Any:
    """Trained CLIP's final layer norm has a clearly non-zero bias, so its hidden states have a non-zero mean. Left
    at ones/zeros, every token's state would have mean 0 and A1111's emphasis mean restore would be 0 / 0."""
    import torch

    norm = getattr(model, "text_model", model).final_layer_norm
    with torch.no_grad():
        norm.weight.normal_(1.0, FINAL_NORM_STD)
        norm.bias.normal_(FINAL_NORM_BIAS_MEAN, FINAL_NORM_STD)
    return model


def tiny_text_encoder(kind: str = "sd1", seed: int = 0, *, full_tower: bool = False) -> CLIPTextModel:
    """The tiny text encoder of :func:`tiny_sd_pipeline` for ``"sd1"`` or ``"sd2"`` (same seed, same weights; SDXL's
    two are :func:`tiny_sdxl_text_encoders`).

    For ``"sd2"`` the full OpenCLIP-style tower has ``TEXT_LAYERS + 1`` blocks; the pipeline's encoder is that tower
    without its last block, as diffusers stores SD 2 (see the module docstring). ``full_tower=True`` returns the tower.
    """
    from transformers import CLIPTextModel

    if kind not in ("sd1", "sd2"):
        raise ValueError(f"unknown text encoder kind {kind!r}; valid kinds: sd1, sd2 (SDXL: tiny_sdxl_text_encoders)")
    tower_layers = TEXT_LAYERS + (1 if kind == "sd2" else 0)
    config = _clip_text_config(TEXT_WIDTH[kind], TEXT_ACT[kind], tower_layers, SD2_PAD_ID if kind == "sd2" else EOS_ID)
    model = _seeded(seed, lambda: _with_random_final_norm(CLIPTextModel(config))).eval()
    if kind == "sd2" and not full_tower:
        transformer = getattr(model, "text_model", model)  # transformers 4.x nests the tower in `text_model`
        del transformer.encoder.layers[-1]
        model.config.num_hidden_layers = TEXT_LAYERS
    return model


def tiny_sdxl_text_encoders(seed: int = 0) -> tuple[CLIPTextModel, CLIPTextModelWithProjection]:
    """The tiny SDXL pipeline's two text encoders (same seed, same weights): the OpenAI-CLIP-style one and the
    OpenCLIP-style one with its text projection (the pooled output SDXL's UNet takes)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    (width_1, width_2), (act_1, act_2) = SDXL_TEXT_WIDTHS, SDXL_TEXT_ACTS
    first = _clip_text_config(width_1, act_1, TEXT_LAYERS, EOS_ID)
    second = _clip_text_config(width_2, act_2, TEXT_LAYERS, SD2_PAD_ID, projection_dim=SDXL_PROJECTION)
    return (
        _seeded(seed, lambda: _with_random_final_norm(CLIPTextModel(first))).eval(),
        _seeded(seed + 2, lambda: _with_random_final_norm(CLIPTextModelWithProjection(second))).eval(),
    )


def _tiny_vae() -> AutoencoderKL:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=VAE_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        sample_size=IMAGE_SIZE,
    )


def _tiny_unet(cross_attention_dim: int, *, linear_projection: bool, time_ids: int = 0) -> UNet2DConditionModel:
    """The tiny UNet; ``time_ids`` > 0 adds SDXL's ``text_time`` conditioning (pooled text + that many numbers)."""
    from diffusers import UNet2DConditionModel

    xl = {}
    if time_ids:
        xl = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": SDXL_TIME_EMBED,
            "projection_class_embeddings_input_dim": time_ids * SDXL_TIME_EMBED + SDXL_PROJECTION,
        }
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=UNET_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=(2, 4),
        use_linear_projection=linear_projection,  # SD 2 and SDXL project with Linear, SD 1 with a 1x1 Conv
        **xl,
    )


def tiny_sd_pipeline(kind: str = "sd1", seed: int = 0) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """A tiny random pipeline (32 px images), built from the configs above in about a second.

    ``kind`` is ``"sd1"`` or ``"sd2"`` (a ``StableDiffusionPipeline``) or ``"sdxl"`` (a
    ``StableDiffusionXLPipeline``); see the module docstring for what differs. The pipeline's progress bar is off.
    """
    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline

    _check_kind(kind)
    if kind == "sdxl":
        return _tiny_sdxl_pipeline(seed)
    sd2 = kind == "sd2"
    # Each part gets its own derived seed, so the text encoder equals tiny_text_encoder(kind, seed) exactly.
    unet, vae = _seeded(seed + 1, lambda: (_tiny_unet(TEXT_WIDTH[kind], linear_projection=sd2), _tiny_vae()))
    scheduler = DDIMScheduler(**V_SCHEDULER) if sd2 else PNDMScheduler(**PNDM_SCHEDULER)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=tiny_text_encoder(kind, seed),
        tokenizer=clip_tokenizer(pad_token=SD2_PAD_TOKEN if sd2 else None),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _tiny_sdxl_pipeline(seed: int) -> StableDiffusionXLPipeline:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    text_encoder, text_encoder_2 = tiny_sdxl_text_encoders(seed)
    unet = _seeded(seed + 1, lambda: _tiny_unet(sum(SDXL_TEXT_WIDTHS), linear_projection=True, time_ids=SDXL_TIME_IDS))
    vae = _seeded(seed + SDXL_VAE_SEED, _tiny_vae)  # the refiner's too
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token=SD2_PAD_TOKEN),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_refiner(seed: int = 0) -> StableDiffusionXLImg2ImgPipeline:
    """A tiny random SDXL refiner (``StableDiffusionXLImg2ImgPipeline``) for :func:`tiny_sd_pipeline` ``("sdxl")``:
    the same VAE (a refiner takes the base's latents), only the OpenCLIP-style encoder (the base's, as the real
    refiner shares bigG with the base), and a UNet conditioned on ``aesthetic_score`` instead of ``target_size``."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline

    _, text_encoder_2 = tiny_sdxl_text_encoders(seed)
    vae = _seeded(seed + SDXL_VAE_SEED, _tiny_vae)
    unet = _seeded(seed + 3, lambda: _tiny_unet(SDXL_TEXT_WIDTHS[1], linear_projection=True, time_ids=REFINER_TIME_IDS))
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
        tokenizer_2=clip_tokenizer(pad_token=SD2_PAD_TOKEN),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(kind: str, path: str | Path, seed: int = 0) -> Path:
    """Write :func:`tiny_sd_pipeline` as a diffusers folder (safetensors) at ``path``, so loaders can be tested."""
    path = Path(path)
    tiny_sd_pipeline(kind, seed).save_pretrained(path)
    return path


# --------------------------------------------------------------------------------------------------------------------
# The learned bridge's model and tokenizer (real runs load a pretrained T5 and its own tokenizer)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` (a transformers fast tokenizer, T5's special tokens:
    ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, the placeholders ``<extra_id_N>`` as single tokens). Decoding is exact."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from bridge.learned.placeholders import MAX_SLOTS, placeholder

    sentinels = [placeholder(i) for i in range(MAX_SLOTS)]
    special = ["<pad>", "</s>", "<unk>", *sentinels]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   additional_special_tokens=sentinels, model_input_names=["input_ids", "attention_mask"])


def t5_from_config(vocab_size: int, *, d_model: int = 64, layers: int = 2, heads: int = 4, d_ff: int = 256,
                   seed: int = 0) -> T5ForConditionalGeneration:
    """A randomly initialised T5 (``T5ForConditionalGeneration``) of the given size: no download. t5-small is
    ``d_model=512, layers=6, heads=8, d_ff=2048`` with vocab 32128."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
                      num_decoder_layers=layers, num_heads=heads, dropout_rate=0.0, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1)
    return _seeded(seed, lambda: T5ForConditionalGeneration(config))
