"""Scoring: how well an SD2 image shows what an SD1.x prompt meant (see "Scoring" in DESIGN.md).

:class:`Scorer` wraps one open_clip model and gives cosine similarities, batched, under ``torch.no_grad``:

    scorer = Scorer.from_pretrained("ViT-L-14", "openai")            # or a local checkpoint path as `pretrained`
    scorer.text_image(["a castle on a hill"], [image])               # -> [0.31]
    scorer.image_image([sd2_image], [sd1_image])                     # -> [0.87]

:class:`CombinedScorer` turns the signals into one number, in the one place the formula lives
(:meth:`CombinedScorer.combine`)::

    total = sum(weight[s] * value[s] for s in available) / sum(weight[s] for s in available)

over the signals with a weight above zero whose inputs were given:

- ``source_text_image``: the *source* SD1 prompt ↔ the SD2 image (OpenAI ViT-L/14 by default, the encoder family SD1
  was trained with, so it still knows the SD1 vocabulary);
- ``sd1_image``: the SD2 image ↔ the SD1.5 image of the source prompt, only when SD1.5 images are passed;
- ``aesthetic``: an aesthetic head (linear layers on normalised image embeddings, as the LAION predictors) read from a
  path. Its raw output is on the head's own scale (LAION heads: about 1 to 10), so give it a small weight.

A weighted mean rather than a sum keeps totals comparable whether or not the optional signals are present.
Data building scores with :meth:`ScoreConfig` defaults (ViT-L-14/openai); evaluation uses the held-out
:meth:`ScoreConfig.evaluation` (ViT-bigG-14/laion2b_s39b_b160k), so a bridge cannot win by gaming its own reward.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import torch
    from PIL import Image

__all__ = ["AestheticHead", "CombinedScorer", "ScoreBreakdown", "ScoreConfig", "Scorer", "pick_device"]

SIGNALS = ("source_text_image", "sd1_image", "aesthetic")
PRECISIONS = ("fp32", "fp16", "bf16")
DATA_SCORER = ("ViT-L-14", "openai")  # SD1's own text-encoder family
EVAL_SCORER = ("ViT-bigG-14", "laion2b_s39b_b160k")  # held out: neither bridge training nor data building sees it


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else the best available: CUDA, then Apple MPS, then CPU."""
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Scorer:
    """One open_clip model: normalised text and image features and their cosine similarities.

    Build it from open_clip's registry (:meth:`from_pretrained`) or from parts already in memory (tests, tiny runs).
    Text features are cached by text, so scoring many images against the same prompts encodes each prompt once.
    """

    def __init__(self, model: Any, preprocess: Callable[[Image.Image], torch.Tensor], tokenizer: Callable,
                 *, device: str | None = None, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"`batch_size` has to be at least 1 but is {batch_size}")
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._text_features: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, model_name: str, pretrained: str | os.PathLike | None = None, *, device: str | None = None,
                        precision: str = "fp32", batch_size: int = 32) -> Scorer:
        """An open_clip model by name and pretrained tag (``"ViT-L-14", "openai"``) or local checkpoint file.

        ``precision`` is one of fp32, fp16, bf16 (half precision only on an accelerator).
        """
        import open_clip

        if precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)} but is {precision!r}")
        if model_name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model_name!r}; e.g. {', '.join(DATA_SCORER[:1] + EVAL_SCORER[:1])}"
                             " (open_clip.list_models() lists all)")
        device = pick_device(device)
        tag = os.fspath(pretrained) if pretrained is not None else None
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=tag, precision=precision, device=device)
        return cls(model, preprocess, open_clip.get_tokenizer(model_name), device=device, batch_size=batch_size)

    # ---- features
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length text features, one row per text; texts not seen before are encoded in batches, then cached."""
        import torch

        missing = list(dict.fromkeys(t for t in texts if t not in self._text_features))
        with torch.no_grad():
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                features = self.model.encode_text(self.tokenizer(chunk).to(self.device))
                for text, row in zip(chunk, _normalise(features.float()).cpu()):
                    self._text_features[text] = row
        if not texts:
            return torch.empty(0)
        return torch.stack([self._text_features[t] for t in texts])

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-length image features, one row per image, encoded in batches of ``batch_size``."""
        import torch

        rows = []
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images[start:start + self.batch_size]])
                rows.append(_normalise(self.model.encode_image(pixels.to(self.device, dtype)).float()).cpu())
        return torch.cat(rows) if rows else torch.empty(0)

    # ---- similarities
    def text_image(self, texts: Sequence[str], images: Sequence[Image.Image]) -> list[float]:
        """Cosine similarity of each text with the image at the same position."""
        _check_pairs("texts", texts, "images", images)
        if not texts:
            return []
        return (self.encode_texts(texts) * self.encode_images(images)).sum(-1).tolist()

    def image_image(self, images_a: Sequence[Image.Image], images_b: Sequence[Image.Image]) -> list[float]:
        """Cosine similarity of each image in ``images_a`` with the image at the same position in ``images_b``."""
        _check_pairs("images_a", images_a, "images_b", images_b)
        if not images_a:
            return []
        return (self.encode_images(images_a) * self.encode_images(images_b)).sum(-1).tolist()


def _normalise(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=-1, keepdim=True)


def _check_pairs(name_a: str, a: Sequence, name_b: str, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"`{name_a}` and `{name_b}` have to be the same length but have {len(a)} and {len(b)} items")


class AestheticHead:
    """An aesthetic predictor on unit-length image embeddings: linear layers applied in order, no activations.

    That is the shape of both LAION heads (the linear ``sa_0_4_vit_l_14_linear.pth`` and the "improved aesthetic
    predictor" MLP, whose dropouts are identity at inference): a state dict whose 2-D ``*.weight`` tensors, in key
    order, chain from the embedding width to one output.
    """

    def __init__(self, layers: Sequence[tuple[torch.Tensor, torch.Tensor | None]]):
        if not layers:
            raise ValueError("an aesthetic head needs at least one linear layer")
        for i, ((weight, _), (next_weight, _)) in enumerate(itertools.pairwise(layers)):
            if next_weight.shape[1] != weight.shape[0]:
                raise ValueError(f"aesthetic head layer {i + 1} takes {next_weight.shape[1]} inputs but layer {i} "
                                 f"gives {weight.shape[0]}")
        if layers[-1][0].shape[0] != 1:
            raise ValueError(f"an aesthetic head must end in one output but ends in {layers[-1][0].shape[0]}")
        self.layers = [(w.float(), None if b is None else b.float()) for w, b in layers]

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> AestheticHead:
        """Read a ``torch.save``d state dict (or a safetensors file) of linear layers."""
        import torch

        text = os.fspath(path)
        if not os.path.isfile(text):
            raise FileNotFoundError(f"aesthetic head not found: {text}")
        if text.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(text)
        else:
            state = torch.load(text, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        layers = []
        for key, weight in state.items():
            if key.endswith("weight") and weight.ndim == 2:
                layers.append((weight, state.get(key[: -len("weight")] + "bias")))
        if not layers:
            raise ValueError(f"{text}: no linear layers (2-D `*.weight` tensors) found; keys: {', '.join(state)[:200]}")
        return cls(layers)

    @property
    def in_features(self) -> int:
        return self.layers[0][0].shape[1]

    def __call__(self, embeddings: torch.Tensor) -> list[float]:
        """One score per row of unit-length image embeddings."""
        if embeddings.shape[-1] != self.in_features:
            raise ValueError(f"aesthetic head expects {self.in_features}-d image embeddings but got "
                             f"{embeddings.shape[-1]}-d; set `aesthetic_model` to the CLIP model it was trained on")
        x = embeddings.float()
        for weight, bias in self.layers:
            x = x @ weight.T + (0 if bias is None else bias)
        return x[:, 0].tolist()


@dataclass
class ScoreConfig:
    """Which signals make up a score, their weights and the open_clip models that compute them."""

    model: str = field(default=DATA_SCORER[0], metadata={
        "help": "open_clip model for the text-image and image-image signals"})
    pretrained: str | None = field(default=DATA_SCORER[1], metadata={
        "help": "open_clip pretrained tag or a local checkpoint path for `model` (None: random weights, tests only)"})
    source_text_image_weight: float = field(default=1.0, metadata={
        "help": "weight of source SD1 prompt <-> target image similarity"})
    sd1_image_weight: float = field(default=1.0, metadata={
        "help": "weight of target image <-> SD1.5 image similarity; used only when SD1.5 images are given"})
    aesthetic_weight: float = field(default=0.0, metadata={
        "help": "weight of the aesthetic head's raw output (LAION heads: about 1-10); needs `aesthetic_head`"})
    aesthetic_head: str | None = field(default=None, metadata={
        "help": "path of an aesthetic head: a state dict of linear layers on image embeddings"})
    aesthetic_model: str = field(default=DATA_SCORER[0], metadata={
        "help": "open_clip model whose image embeddings the aesthetic head reads"})
    aesthetic_pretrained: str | None = field(default=DATA_SCORER[1], metadata={
        "help": "pretrained tag or checkpoint path for `aesthetic_model`"})
    precision: str = field(default="fp32", metadata={"help": "fp32, fp16 or bf16 (half precision on accelerators)"})
    batch_size: int = field(default=32, metadata={"help": "images or texts per forward pass"})

    def __post_init__(self) -> None:
        for name in ("source_text_image_weight", "sd1_image_weight", "aesthetic_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"ScoreConfig.{name} has to be a finite number >= 0 but is {value!r}")
        if self.source_text_image_weight == 0 and self.sd1_image_weight == 0 and self.aesthetic_weight == 0:
            raise ValueError("ScoreConfig needs at least one weight above 0 (source_text_image_weight, "
                             "sd1_image_weight, aesthetic_weight) but all are 0")
        if self.aesthetic_weight > 0 and not self.aesthetic_head:
            raise ValueError(f"ScoreConfig.aesthetic_weight is {self.aesthetic_weight} but no `aesthetic_head` path "
                             "is set; give the head's path or set the weight to 0")
        for name in ("model", "aesthetic_model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"ScoreConfig.{name} has to name an open_clip model (e.g. 'ViT-L-14') but is "
                                 f"{getattr(self, name)!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"ScoreConfig.precision must be one of {', '.join(PRECISIONS)} but is {self.precision!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"ScoreConfig.batch_size has to be an integer >= 1 but is {self.batch_size!r}")

    @classmethod
    def evaluation(cls, **overrides: Any) -> ScoreConfig:
        """The held-out evaluation scorer: ViT-bigG-14 (LAION-2B), source prompt <-> image only."""
        return cls(**{"model": EVAL_SCORER[0], "pretrained": EVAL_SCORER[1], "sd1_image_weight": 0.0, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error that lists the valid ones."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown ScoreConfig key {unknown[0]!r}; valid keys: {', '.join(names)}")
        return cls(**data)

    def replace(self, **changes: Any) -> ScoreConfig:
        return replace(self, **changes)


@dataclass
class ScoreBreakdown:
    """One image's score: the combined ``total`` and each signal (None where it was not computed)."""

    total: float
    source_text_image: float | None = None
    sd1_image: float | None = None
    aesthetic: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


class CombinedScorer:
    """Scores SD2 images against their source SD1 prompts with the signals and weights of a :class:`ScoreConfig`.

    ``scorers`` supplies models already in memory by role: ``"clip"`` (text-image and image-image signals) and
    ``"aesthetic"`` (the embeddings the aesthetic head reads; defaults to the ``"clip"`` scorer when the config names
    the same model). Roles not supplied are loaded from the config on first use.

    >>> CombinedScorer.combine(ScoreConfig(), {"source_text_image": 0.3, "sd1_image": 0.9, "aesthetic": None})
    0.6
    """

    ROLES = ("clip", "aesthetic")

    def __init__(self, config: ScoreConfig | None = None, *, scorers: Mapping[str, Scorer] | None = None,
                 aesthetic_head: AestheticHead | None = None, device: str | None = None):
        self.config = config or ScoreConfig()
        unknown = sorted(set(scorers or {}) - set(self.ROLES))
        if unknown:
            raise ValueError(f"unknown scorer role {unknown[0]!r}; valid roles: {', '.join(self.ROLES)}")
        self.scorers: dict[str, Scorer] = dict(scorers or {})
        self._aesthetic_head = aesthetic_head
        self.device = device

    def scorer(self, role: str) -> Scorer:
        """The Scorer for ``role``, loading it from the config the first time it is needed."""
        if role not in self.scorers:
            c = self.config
            same_model = (c.aesthetic_model, c.aesthetic_pretrained) == (c.model, c.pretrained)
            if role == "aesthetic" and same_model:
                self.scorers[role] = self.scorer("clip")
            else:
                name, tag = (c.model, c.pretrained) if role == "clip" else (c.aesthetic_model, c.aesthetic_pretrained)
                self.scorers[role] = Scorer.from_pretrained(name, tag, device=self.device, precision=c.precision,
                                                            batch_size=c.batch_size)
        return self.scorers[role]

    @property
    def aesthetic_head(self) -> AestheticHead:
        if self._aesthetic_head is None:
            self._aesthetic_head = AestheticHead.from_file(self.config.aesthetic_head)
        return self._aesthetic_head

    @staticmethod
    def combine(config: ScoreConfig, signals: Mapping[str, float | None]) -> float:
        """The combination formula, and the only copy of it: the weighted mean of the signals that are present."""
        weights = {s: getattr(config, f"{s}_weight") for s in SIGNALS}
        present = [s for s in SIGNALS if signals.get(s) is not None and weights[s] > 0]
        if not present:
            raise ValueError(f"no signal to combine: every weighted signal is missing (got {dict(signals)})")
        return sum(weights[s] * signals[s] for s in present) / sum(weights[s] for s in present)

    def score(self, source_prompts: Sequence[str], images: Sequence[Image.Image],
              sd1_images: Sequence[Image.Image] | None = None) -> list[ScoreBreakdown]:
        """Score each image against the source prompt (and SD1.5 image) at the same position."""
        _check_pairs("source_prompts", source_prompts, "images", images)
        if sd1_images is not None:
            _check_pairs("images", images, "sd1_images", sd1_images)
        c = self.config
        n = len(images)
        columns: dict[str, list[float | None]] = {s: [None] * n for s in SIGNALS}
        if n and c.source_text_image_weight > 0:
            columns["source_text_image"] = self.scorer("clip").text_image(source_prompts, images)
        if n and c.sd1_image_weight > 0 and sd1_images is not None:
            columns["sd1_image"] = self.scorer("clip").image_image(images, sd1_images)
        if n and c.aesthetic_weight > 0:
            columns["aesthetic"] = self.aesthetic_head(self.scorer("aesthetic").encode_images(images))
        out = []
        for i in range(n):
            signals = {s: columns[s][i] for s in SIGNALS}
            out.append(ScoreBreakdown(total=self.combine(c, signals), **signals))
        return out
