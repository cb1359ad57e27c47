"""A simulated world: a deterministic renderer and scorer with a known hidden preference, for end-to-end tests of the
render → score → pairs → train → evaluate loop without SD2 weights or a GPU (no torch either).

    >>> from bridge.workflows.simulated import SimulatedRenderer, SimulatedScorer, SimulatedWorld
    >>> world = SimulatedWorld()
    >>> [result] = SimulatedRenderer().render(["a red fox in the forest, gloomy"])
    >>> [score] = SimulatedScorer().score(["a red fox in the forest, gloomy"], [result.image])

The hidden preference is independent of the rules bridge's knowledge (none of its words is SD1 vocabulary the rules
know; a test checks). From ``WORLD_SEED``, 48 invented style words ("gloomy", "misty", …) are split into 16 groups of
three; in each group one word is good (+1), one neutral (0) and one bad (-1). An image of prompt P, scored against
source prompt S, gets::

    0.5 + STYLE_STEP * (sum of the values of the style words in P)
        - DROP_PENALTY * (subject words of S missing from P)
        + NOISE * (a uniform draw in [-0.5, 0.5) seeded by P, the negative prompt and the image's seed)

Subject words are S's words that are neither style words nor ``STOPWORDS``. So the best rewrite replaces every style
word by its group's good word and keeps everything else; dropping a subject word costs more than a swap gains. The
noise (far smaller than one swap) makes seeds differ, as real renders do. The negative prompt does not matter.

The renderer and scorer have the interfaces of :class:`bridge.imaging.render.Renderer` (``render(requests, batch_size)`` →
:class:`~bridge.imaging.render.RenderResult`) and :class:`bridge.imaging.score.CombinedScorer` (``score(source_prompts, images)`` →
:class:`~bridge.imaging.score.ScoreBreakdown`, combined by :meth:`CombinedScorer.combine`), so the workflow scripts take
them with ``--simulated``. The "image" stores its prompt, negative prompt and seed in its pixels (lossless: survives
PNG and lossless WebP), so a scorer in another process can read it back.

:meth:`SimulatedWorld.prompts` writes SD1-style prompts in this world's vocabulary (some with emphasis and BREAK, so
placeholders get exercised); :meth:`SimulatedWorld.proposals` rewrites a prompt blindly (every group-mate of its style
words, and one that drops a subject word): candidates for data building that know the groups but not the values.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bridge.imaging.render import RenderRequest, RenderResult
from bridge.imaging.score import CombinedScorer, ScoreBreakdown, ScoreConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from PIL.Image import Image

__all__ = ["SIMULATED_MODEL", "SimulatedRenderer", "SimulatedScorer", "SimulatedWorld", "decode_image",
           "encode_image"]

SIMULATED_MODEL = "simulated-world"
WORLD_SEED = 0
BASE, STYLE_STEP, DROP_PENALTY, NOISE = 0.5, 0.05, 0.15, 0.002  # a drop costs more than the best swap (0.1)
GROUP_SIZE = 3  # good, neutral, bad
STYLE_WORDS = (
    "gloomy", "misty", "rusty", "vivid", "pastel", "dusky", "glossy", "murky", "airy", "faded", "lush", "stark",
    "hazy", "crisp", "muted", "dreamy", "smoky", "sunny", "frosty", "balmy", "moody", "plush", "velvety", "bleak",
    "sleek", "grimy", "silky", "stormy", "dewy", "chalky", "inky", "milky", "ashen", "amber", "coral", "brassy",
    "woolly", "papery", "waxy", "sandy", "earthy", "fiery", "icy", "leafy", "mossy", "rainy", "windy", "shadowy",
)
ADJECTIVES = ("red", "blue", "green", "small", "old", "tiny", "giant", "white", "black", "golden", "young", "wooden",
              "silver", "ancient", "brown", "purple")
NOUNS = ("fox", "castle", "knight", "ship", "tree", "dragon", "robot", "lighthouse", "cat", "owl", "tower", "bridge",
         "wolf", "garden", "temple", "horse")
PLACES = ("forest", "desert", "harbor", "valley", "meadow", "canyon", "village", "swamp", "glacier", "jungle",
          "island", "cave")
PREPOSITIONS = ("in", "near", "above", "beside")
STOPWORDS = frozenset({"a", "an", "the", "of", "and", *PREPOSITIONS})
WEIGHTS = (1.1, 1.2, 1.3)
SUBJECT_EMPHASIS, STYLE_EMPHASIS, BREAK_RATE = 0.3, 0.3, 0.2  # shares of generated prompts with that syntax

_WORD = re.compile(r"[a-z]+")
_MAGIC = b"SIMW"
_HEADER = struct.Struct(">4sI")
MIN_SIDE = 16  # pixels; a bigger payload makes a bigger image


def words(text: str) -> list[str]:
    """The lower-case words of a prompt (syntax, digits and punctuation dropped)."""
    return _WORD.findall(text.lower())


@dataclass
class SimulatedWorld:
    """The hidden preference (see the module docstring), drawn from ``seed``."""

    seed: int = WORLD_SEED
    groups: list[tuple[str, ...]] = field(init=False)
    values: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        shuffled = rng.sample(STYLE_WORDS, len(STYLE_WORDS))
        self.groups = [tuple(shuffled[i:i + GROUP_SIZE]) for i in range(0, len(shuffled), GROUP_SIZE)]
        self.values = {}
        for group in self.groups:  # the order inside a group is random already: good, neutral, bad
            self.values.update(zip(group, (1, 0, -1), strict=True))
        self._group_of = {w: g for g in self.groups for w in g}

    # ---- the preference
    def style_words(self, prompt: str) -> list[str]:
        return [w for w in dict.fromkeys(words(prompt)) if w in self.values]

    def subject_words(self, prompt: str) -> list[str]:
        return [w for w in dict.fromkeys(words(prompt)) if w not in self.values and w not in STOPWORDS]

    def preference(self, source: str, prompt: str) -> float:
        """How much an image of ``prompt`` shows what ``source`` meant, before noise."""
        present = set(words(prompt))
        style = sum(self.values[w] for w in present if w in self.values)
        missing = sum(w not in present for w in self.subject_words(source))
        return BASE + STYLE_STEP * style - DROP_PENALTY * missing

    def score(self, source: str, prompt: str, negative_prompt: str, seed: int) -> float:
        digest = hashlib.sha256(f"{prompt}\0{negative_prompt}\0{seed}".encode()).digest()
        noise = int.from_bytes(digest[:8], "big") / 2**64 - 0.5
        return self.preference(source, prompt) + NOISE * noise

    def best(self, prompt: str) -> str:
        """The answer the loop should find: every style word swapped for its group's good word."""
        good = {w: next(m for m in self._group_of[w] if self.values[m] == 1) for w in self.style_words(prompt)}
        return _swap(prompt, good)

    # ---- prompts and blind candidates
    def prompts(self, n: int, seed: int = 0) -> list[str]:
        """``n`` different SD1-style prompts: a subject, then one or two style words; some with emphasis or BREAK."""
        rng = random.Random(seed)
        out: dict[str, None] = {}
        while len(out) < n:
            adjective, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
            subject = f"{adjective} {noun}"
            if rng.random() < SUBJECT_EMPHASIS:
                subject = f"({subject}:{rng.choice(WEIGHTS)})"
            subject = f"a {subject} {rng.choice(PREPOSITIONS)} the {rng.choice(PLACES)}"
            styles = [rng.choice(group) for group in rng.sample(self.groups, rng.choice((1, 2)))]
            if rng.random() < STYLE_EMPHASIS:
                styles[0] = f"({styles[0]}:{rng.choice(WEIGHTS)})"
            separator = " BREAK " if rng.random() < BREAK_RATE else ", "
            out[subject + separator + ", ".join(styles)] = None
        return list(out)

    def write_proposals(self, prompts: Iterable[str], path: str | os.PathLike) -> None:
        """:meth:`proposals` for each prompt as a candidates file for data/build_pairs.py --candidates (jsonl with
        source_prompt and target_prompt)."""
        with open(path, "w", encoding="utf-8") as file:
            file.writelines(json.dumps({"source_prompt": p, "target_prompt": q}) + "\n"
                            for p in prompts for q in self.proposals(p))

    def proposals(self, prompt: str) -> list[str]:
        """Rewrites that know the groups but not the values: every combination of group-mates for the prompt's style
        words, and the last of them with its first subject word dropped (a trap the scorer must reject)."""
        style = self.style_words(prompt)
        out = [_swap(prompt, dict(zip(style, choice, strict=True)))
               for choice in itertools.product(*(self._group_of[w] for w in style))]
        subject = self.subject_words(prompt)
        if subject and out:
            out.append(re.sub(rf"\b{subject[0]}\b ?", "", out[-1], count=1))
        return [p for p in dict.fromkeys(out) if p != prompt]


def _swap(prompt: str, replacements: dict[str, str]) -> str:
    if not replacements:
        return prompt
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, replacements)) + r")\b")
    return pattern.sub(lambda m: replacements[m.group(1)], prompt)


# ---------------------------------------------------------------- images that carry their recipe


def encode_image(prompt: str, negative_prompt: str, seed: int) -> Image:
    """A square RGB image whose first bytes hold the recipe (the rest is noise seeded by ``seed``)."""
    from PIL import Image

    payload = json.dumps({"prompt": prompt, "negative_prompt": negative_prompt, "seed": seed}).encode()
    data = _HEADER.pack(_MAGIC, len(payload)) + payload
    side = max(MIN_SIDE, math.ceil(math.sqrt(len(data) / 3)))
    padding = random.Random(seed).randbytes(side * side * 3 - len(data))
    return Image.frombytes("RGB", (side, side), data + padding)


def decode_image(image: Image) -> dict[str, Any]:
    """The recipe :func:`encode_image` stored: ``{"prompt", "negative_prompt", "seed"}``."""
    data = image.convert("RGB").tobytes()
    magic, length = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not an image of the simulated renderer (its pixels hold no recipe); score simulated "
                         "renders with the simulated scorer only, saved losslessly (PNG, lossless WebP)")
    return json.loads(data[_HEADER.size:_HEADER.size + length])


# ---------------------------------------------------------------- renderer and scorer


class SimulatedRenderer:
    """:class:`bridge.imaging.render.Renderer`'s interface over :func:`encode_image`: instant, deterministic."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"width": 512, "height": 512, "steps": 25, "cfg_scale": 7.0,
                                          "sampler": "DPM++ 2M Karras"}

    def __init__(self, model_name: str = SIMULATED_MODEL):
        self.model_name = model_name

    def render(self, requests: RenderRequest | str | Iterable[RenderRequest | str], batch_size: int = 4, *,
               keep_pixels: bool = False) -> list[RenderResult]:
        if isinstance(requests, RenderRequest | str):
            requests = [requests]
        results = []
        for request in requests:
            r = request if isinstance(request, RenderRequest) else RenderRequest(request)
            settings = {"model": self.model_name, **{k: getattr(r, k) or v for k, v in self.DEFAULTS.items()}}
            image = encode_image(r.prompt, r.negative_prompt, r.seed)
            results.append(RenderResult(image, r.seed, r.prompt, r.negative_prompt, settings))
        return results


class SimulatedScorer:
    """:class:`bridge.imaging.score.CombinedScorer`'s interface: the world's score is the ``source_text_image`` signal."""

    def __init__(self, config: ScoreConfig | None = None, world: SimulatedWorld | None = None):
        self.config = self.default_config(config)
        self.world = world or SimulatedWorld()

    @staticmethod
    def default_config(config: ScoreConfig | None = None) -> ScoreConfig:
        """``config`` with the simulated model as its scorer and the one signal it computes."""
        return (config or ScoreConfig()).replace(model=SIMULATED_MODEL, pretrained=None, source_text_image_weight=1.0,
                                                 sd1_image_weight=0.0, aesthetic_weight=0.0, aesthetic_head=None)

    def score(self, source_prompts: Sequence[str], images: Sequence[Image],
              sd1_images: Sequence[Image] | None = None) -> list[ScoreBreakdown]:
        if len(source_prompts) != len(images):
            raise ValueError(f"`source_prompts` and `images` have to be the same length but have "
                             f"{len(source_prompts)} and {len(images)} items")
        out = []
        for source, image in zip(source_prompts, images, strict=True):
            recipe = decode_image(image)
            value = self.world.score(source, recipe["prompt"], recipe["negative_prompt"], recipe["seed"])
            signals = {"source_text_image": value, "sd1_image": None, "aesthetic": None}
            out.append(ScoreBreakdown(total=CombinedScorer.combine(self.config, signals), **signals))
        return out
