"""How often the rules bridge's translations show the defects an SD prompter finds by eye: a lint you run.

    python benchmarks/translation_quality.py [--corpus diffusiondb,parti,dsg1k] [--targets sd2,sd21-base,sdxl]
                                             [--limit N] [--samples 3] [--seed 0] [--json FILE]
                                             [--artists FILE] [--tokenizer auto|open_clip|bridge]

Each prompt of each corpus (``data/corpora/diffusiondb_prompts.jsonl``, ``data/corpora/parti_prompts.tsv`` and, when
present, DSG-1k from ``../shared/data/dsg1k_tifa160``) is translated from sd15 to each target with one
``load_translator("rules", ...)`` per target. The original and translated positive and negative prompts then go
through detectors written without the bridge's rules (nothing is imported from ``bridge.rules`` and no word list is
shared with it; the short lists below are this script's own). Per corpus and target it prints one row per kind of
defect (prompts flagged, % of prompts), then: prompts translated, the positive no-op rate (positive prompt
byte-identical), prompts with any insertion, the gross CLIP tokens inserted (mean and max over the prompts where the
bridge inserted anything) and errors (exceptions, counted and skipped). For DiffusionDB the project's targets are
printed beside the figures with ✓/✗; for PartiPrompts the target is a 100% positive no-op rate. ``--samples K``
prints K before/after pairs per kind (seeded random choice) with the reason each was flagged; ``--json FILE`` writes
every count. Nothing asserts: it reports.

How each kind is decided. Phrases are cut at ``,`` ``;`` ``!`` ``|`` ``+``, ``BREAK`` and a ``.`` before a space or
the end (not between digits: "f / 1. 8"); words are compared lower-case without brackets and ``:1.2`` weights.
"Inserted" words are those of the translation's inserted or replacing runs in a word-level diff against the original
(difflib, autojunk off, run only on the part between the common prefix and suffix; A1111's emphasis brackets and
weights are blanked first, so ``((x))`` -> ``(x:1.21)`` inserts nothing).

* spill: the translation needs more 75-token chunks than the original (A1111's chunking, ``bridge.chunks.chunk``,
  summed over ``AND`` clauses; a text of at most 75 tokens without BREAK/AND is one chunk).
* growth: more than 16 CLIP tokens inserted: the token counts of the inserted runs, summed (gross: removals do not
  offset it). Where the changed middle part is over 2,000 characters its net token growth is taken instead. Tokens:
  open_clip's ``SimpleTokenizer`` when it imports (its torch import costs seconds), else ``bridge.tokens``.
* duplicate: a word sequence is in the translation at least twice and more often than in the original, and is a
  phrase, not a fragment: 2+ words (not starting or ending with a small word such as "of") that end a phrase
  somewhere ("digital painting", "flowing hair"), or one word that is a whole phrase and ends more phrases than in
  the original ("illustration" and "anime style illustration"; not "intricate" and "intricate ink illustration").
  A sequence the user repeated is none: every word of it, in order, inside a phrase the original has as often.
* broken phrase: two words next to each other inside a phrase of the original are cut apart by a delimiter in the
  translation more often than in the original (``oil painting by X`` -> ``oil, painting ...``). A delimiter before
  "and" or "by" cuts no modifier from its noun: it starts a new item or credit ("X, and Y", "X, by Y").
* dangling: the translation has more phrases ending in by/and/of/with (so "art by", "in the style of") or starting
  with "and", or with "by" before a small word, more empty phrases (``, ,``), empty brackets ``()`` or
  separators at its start or end than the original ("by makoto shinkai" is a whole phrase, a credit; "by the" is not).
* subject clash: inserted people features (hair, faces, eyes, figures, skin, portrait...) in a prompt with a scene or
  still-life word and no word for a person or creature; an inserted desert in a jungle/forest/sea/snow prompt; an
  inserted desert/landscape/vista/scenery in a portrait.
* medium clash: the original asks for a photo (photo, dslr, film still, 35mm, camera brands...) or a painting/drawing
  (painting, watercolor, drawing, sketch, ink, illustration, anime, cel shading...) and the bridge inserts another
  medium the original does not ask for: 3d/cgi/render/octane/unreal engine (the user's own octane render or unreal
  engine is no request for a 3d render; "3 d", blender, c4d, pixar... are), painting words into a photo, photo words
  into a painting.
* negative clash: a negative term the bridge added (not in the original negative) names what the original prompt
  asks for: text for a neon/street sign, logo, lettering, "saying", speech bubble, newspaper, movie poster...;
  ugly/deformed/disfigured for horror, monster, creature, zombie, demon, eldritch, goblin...; photo for a photo, film
  still, dslr, mm lens, camera brand, daguerreotype; b&w for ink, noir, monochrome, pencil, charcoal; 3d render/cgi for
  render, octane, unreal engine; painting/illustration/drawing/cartoon/anime for those; blurry for blur, motion
  blur, soft focus, long exposure (not for bokeh or depth of field: they blur the background, and a negative
  "blurry" is what keeps the subject sharp); grainy for film grain; lowres for pixel art; jpeg artifacts for glitch;
  picture frame for a framed picture; extra limbs/heads/eyes for many arms/heads/eyes; dark for night/noir; nude for
  nude; realistic for realism.
* negative kind from own words: the added negative keeps photos out (it has photo/photograph: a painting-like or
  anime negative) or keeps paintings out (painting/drawing/illustration: a photo-like negative); the original has
  none of this script's words for that look (painting, drawing, illustration, anime, render, 3d, concept art, digital
  art, artstation, pixiv... resp. the photo words above), names no artist (a whole name from clip-interrogator's
  artists.txt, or the surname of one after "by"/"style of": an artist stands for a medium) and has no "by X" that the
  bridge rewrote (an artist the bridge knows); and the bridge inserted words for that look.
* missed in sentences (corpus pass): an artists.txt name (the longest name at each place: "mucha" inside "alphonse
  mucha" is not found on its own) that the bridge removes in some prompt (in the original, gone from the translation)
  and that survives in another prompt's translation is a miss there; names the bridge keeps everywhere never count.
* leftover variants (corpus pass): whole phrases normalized (lower case, whitespace collapsed, brackets, weights and
  surrounding punctuation off, "8 k" -> "8k", "35 mm" -> "35mm"); a form of at most 4 words, with a letter in it,
  that is among the original's phrases and not the translation's in some prompt, and among both in another prompt,
  is a leftover there ("4k tv" is not "4k").

Targets on DiffusionDB: zero spills, growth, duplicates, broken phrases, dangling words, leftover variants, missed
artists and negative kinds from own words; subject, medium and negative clashes each under 1% of prompts; gross
tokens inserted mean <= 8 and max <= 16. On PartiPrompts: a 100% positive no-op rate.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import functools
import itertools
import json
import random
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_CORPORA = REPO / "data" / "corpora"
DEFAULT_ARTISTS = DEFAULT_DATA / "clip_interrogator_vocab" / "artists.txt"
CORPORA = ("diffusiondb", "parti", "dsg1k")
TARGETS = ("sd2", "sd21-base", "sdxl")
CHUNK = 75
GROWTH_LIMIT = 16
LONG_DIFF = 2000  # characters of the changed middle part above which the diff is replaced by net counting
LEFTOVER_WORDS = 4

KINDS = ("spill", "growth", "duplicate", "broken phrase", "dangling", "subject clash", "medium clash",
         "negative clash", "negative kind from own words", "missed in sentences", "leftover variants")
# DiffusionDB targets: kind -> the largest share of prompts allowed (0: none at all, < 0.01: under 1%)
KIND_TARGETS = {kind: 0.0 for kind in KINDS} | {"subject clash": 0.01, "medium clash": 0.01, "negative clash": 0.01}
GROSS_MEAN_TARGET, GROSS_MAX_TARGET = 8, 16

# --------------------------------------------------------------------------------------------------------------------
# Text: phrases, words, tokens

# a "." before a space, a closing bracket or a weight ends a phrase ("(a. b.:1.4) c" has three), but not between
# digits as DiffusionDB spells them ("f / 1. 8")
_DELIMITER = re.compile(r"[,;!|+]|(?<!\d)\.+(?=[\s)\]]|:\s*-?\d|$)|(?<=\d)\.+(?!\s*\d)(?=\s|$)|\bBREAK\b")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_ITEM = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*|[^\w\s]")  # what the diff compares: words and punctuation marks
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?")
_UNIT = re.compile(r"\b(\d+)\s+(k|mm)\b")
_BRACKETS = re.compile(r"[()\[\]{}]")
SMALL_WORDS = frozenset({"a", "an", "the", "of", "and", "or", "with", "by", "in", "on", "at", "to", "for", "from",
                         "as", "is", "it", "its", "into"})


CACHE = 32768  # texts remembered by the per-text helpers (originals come back once per target)


def phrases(text: str) -> list[str]:
    """The delimited phrases of ``text`` (empty ones included: ``"a, , b,"`` has four)."""
    return _DELIMITER.split(text)


def words(text: str) -> list[str]:
    """Lower-case words, weights like ``:1.2`` and brackets left out."""
    return _WORD.findall(_WEIGHT.sub(" ", text.lower()))


@functools.lru_cache(maxsize=CACHE)
def phrase_words(text: str) -> tuple[tuple[str, ...], ...]:
    """The words of each delimited phrase of ``text``."""
    return tuple(tuple(words(p)) for p in phrases(text))


@functools.lru_cache(maxsize=65536)
def normalize_phrase(phrase: str) -> str:
    """``" (8 K:1.2) "`` -> ``"8k"``: lower case, weights, brackets and surrounding punctuation off, units joined."""
    text = _BRACKETS.sub(" ", _WEIGHT.sub(" ", phrase.lower()))
    text = " ".join(text.split()).strip(" \"'`*_-~.:;!?<>=#/\\")
    return _UNIT.sub(r"\1\2", text)


@functools.lru_cache(maxsize=1)
def _open_clip_encode() -> Callable[[str], list[int]] | None:
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except (ImportError, OSError, RuntimeError):  # not installed, or its torch does not import
        return None
    return SimpleTokenizer().encode


TOKENIZER = "auto"  # "auto": open_clip when it imports, else bridge.tokens; "bridge" or "open_clip" to choose


@functools.lru_cache(maxsize=65536)
def count_tokens(text: str) -> int:
    """CLIP tokens of ``text`` (no start or end token)."""
    encode = _open_clip_encode() if TOKENIZER != "bridge" else None
    if encode is not None:
        return len(encode(text))
    from bridge.tokens import count_tokens as bridge_count

    return bridge_count(text)


def tokenizer_name() -> str:
    return "open_clip" if TOKENIZER != "bridge" and _open_clip_encode() is not None else "bridge.tokens"


@functools.lru_cache(maxsize=4096)
def chunks(text: str) -> int:
    """How many 75-token chunks A1111 encodes ``text`` in (summed over ``AND`` clauses; network tags left out)."""
    from bridge.chunks import chunk
    from bridge.syntax import PromptSyntaxError
    from bridge.tokens import count_tokens as bridge_count

    if "BREAK" not in text and "AND" not in text and bridge_count(text) <= CHUNK:
        return 1  # (brackets and weights count here, not in A1111: never fewer tokens than A1111 sees)

    total = 0
    for clause in re.split(r"\bAND\b", re.sub(r"<[^<>]*>", " ", text)):
        try:
            total += len(chunk(clause))
        except PromptSyntaxError:  # a prompt A1111 would refuse: count plainly
            total += max(1, -(-count_tokens(clause) // CHUNK))
    return total


_ATTENTION = re.compile(r"(?<!\\)[()\[\]]|:\s*-?\d+(?:\.\d+)?\s*(?=\))")


def _blank_attention(text: str) -> str:
    """A1111's emphasis brackets and ``:1.2`` weights as spaces (CLIP never sees them), the rest where it was."""
    return _ATTENTION.sub(lambda m: " " * len(m.group()), text)


class Diff:
    """Word-level diff of an original and a translated prompt: what the translation inserted, and how many tokens."""

    __slots__ = ("gross_tokens", "inserted", "net_counted", "removed")

    def __init__(self, original: str, translation: str):
        original, translation = _blank_attention(original), _blank_attention(translation)
        a, b = list(_ITEM.finditer(original)), list(_ITEM.finditer(translation))
        ka, kb = [m.group().lower() for m in a], [m.group().lower() for m in b]
        start = 0
        while start < min(len(ka), len(kb)) and ka[start] == kb[start]:
            start += 1
        end_a, end_b = len(ka), len(kb)
        while end_a > start and end_b > start and ka[end_a - 1] == kb[end_b - 1]:
            end_a, end_b = end_a - 1, end_b - 1
        self.inserted: list[tuple[int, int]] = []  # character spans of the translation's inserted runs
        self.removed: list[tuple[int, int]] = []  # character spans of the original's removed runs
        self.net_counted = False
        if start == end_b and start == end_a:
            self.gross_tokens = 0
            return

        def span(items, i, j):
            return items[i].start(), items[j - 1].end()

        mid_a = original[a[start].start():a[end_a - 1].end()] if end_a > start else ""
        mid_b = translation[b[start].start():b[end_b - 1].end()] if end_b > start else ""
        if max(len(mid_a), len(mid_b)) > LONG_DIFF:
            self.net_counted = True
            self.gross_tokens = max(0, count_tokens(mid_b) - count_tokens(mid_a))
            return
        matcher = difflib.SequenceMatcher(None, ka[start:end_a], kb[start:end_b], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op in ("insert", "replace"):
                self.inserted.append(span(b, start + j1, start + j2))
            if op in ("delete", "replace"):
                self.removed.append(span(a, start + i1, start + i2))
        self.gross_tokens = sum(count_tokens(translation[s:e]) for s, e in self.inserted)

    def inserted_matches(self, pattern: re.Pattern, translation: str) -> list[str]:
        """The matches of ``pattern`` (lower-cased) in the translation that touch an inserted word."""
        if not self.inserted:
            return []
        return [m.group().lower() for m in pattern.finditer(translation)
                if any(s < m.end() and m.start() < e for s, e in self.inserted)]


@functools.lru_cache(maxsize=256)
def diff(original: str, translation: str) -> Diff:
    return Diff(original, translation)


def gross_inserted_tokens(original: str, translation: str) -> int:
    return diff(original, translation).gross_tokens


def _quote(items: Iterable[str]) -> str:
    return ", ".join(f"'{item}'" for item in dict.fromkeys(items))


def _words_re(*alternatives: str) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------------------------
# This script's own word lists (short on purpose)

_3D = r"3 ?d"  # DiffusionDB spells numbers digit by digit: "3 d render", "8 k"
PHOTO = _words_re(r"photo(?![\s-]?realis)s?", "photographs?", "photography", "photographic", "photographed",
                  "photoshoot", "dslr", "polaroid", "daguerreotype", "tintype",
                  r"(?<!animated )(?<!animation )(?<!anime )(?:film|movie) still", r"shot on", r"\d ?\d ?mm",
                  "canon", "nikon", "leica", "hasselblad", "fujifilm", "kodak", "portra", r"f ?/ ?\d",
                  "telephoto")  # not "camera" ("looking at the camera") nor "lens" ("lens flare", "fisheye lens")
PAINTING = _words_re("paintings?", "painted(?! in)", "painterly", "oil on canvas", "watercolou?rs?", "gouache", "acrylic",
                     "fresco", "drawings?", "drawn", "sketch(?:es|ed)?", "pencil", "charcoal", "graphite", "ink",
                     "etching", "engraving", "woodcut", "linocut", "lithograph", "brushwork",
                     "brush ?strokes?", "illustrations?", "illustrated", "anime", "manga", "cartoon", "comics?",
                     "cel[ -]shad(?:ed|ing)", "line ?art")
RENDER_ASKED = _words_re(_3D, "cgi", "blender", "c4d", "cinema ?4 ?d", "zbrush", "maya", "houdini", "daz",
                         "rendered in", "pixar", "low poly", "voxel")
RENDER_INSERTED = _words_re(_3D, "cgi", "renders?", "octane", "unreal engine")  # not "highly rendered" painting
# the words after which a painting-like (non-photo) negative is the user's own choice
NON_PHOTO_LOOK = re.compile(PAINTING.pattern + "|" + _words_re(
    "render(?:ed|ing|s)?", _3D, "cgi", "octane", "unreal engine", "blender", "concept art", "digital art",
    "fan ?art", "pixel art", "artwork", "artstation", "deviantart", "pixiv", "cgsociety", "behance", "mural",
    "poster", "vector", "cartoonish", "chibi", "waifu", "ghibli", "pixar", "disney").pattern, re.IGNORECASE)
PHOTO_NEGATIVE = re.compile(r"^(?:photo|photograph|photography|photorealistic)$")
PAINTING_NEGATIVE = re.compile(r"^(?:painting|drawing|illustration|sketch)$")

BEING = _words_re(
    "person", "persons", "people", "man", "men", "woman", "women", "girls?", "boys?", "lady", "ladies", "guys?",
    "female", "male", "child(?:ren)?", "kids?", "baby", "humans?", "humanoid", "portraits?", "faces?", "selfie",
    "he", "she", "his", "her", "him", "couple", "family", "crowd", "figures?", "characters?", "warriors?", "knights?",
    "king", "queen", "prince(?:ss)?", "witch", "wizard", "soldiers?", "elf", "elves", "gods?", "goddess",
    "angels?", "samurai", "ninja", "monk", "priest(?:ess)?", "nun", "sorcer(?:er|ess)", "maiden", "nymph",
    "fair(?:y|ies)", "faerie", "pirate", "cowboy", "astronaut", "model", "actor", "actress",
    "hero", "mage", "mermaid", "vampire", "zombie", "cyborg", "android", "robots?", "dolls?", "nude", "body",
    "hair", "eyes", "wearing", "cats?", "dogs?", "animals?", "creatures?", "monsters?", "dragons?", "birds?", "fox",
    "wolf", "horses?", "owl", "bear", "lion", "tiger", "deer", "rabbit", "fish", "whale", "frog", "monkey", "ape",
    "elephant", "alien", "beast")
SCENE = _words_re(
    "landscapes?", "scenery", "vista", "cityscape", "city", "skyline", "street", "village", "town", "mountains?",
    "forest", "jungle", "valley", "lake", "river", "ocean", "sea", "seascape", "beach", "coast", "island", "desert",
    "canyon", "waterfall", "field", "meadow", "garden", "sky", "clouds", "sunset", "sunrise", "planet", "nebula",
    "galaxy", "castle", "temple", "ruins", "buildings?", "architecture", "house", "cabin", "tower", "interior",
    "room", "kitchen", "cathedral", "church", "bridge", "still life", "vase", "fruits?", "flowers?", "bowl",
    "bottle", "teapot", "table", "spaceship", "car", "train", "ship", "boat")
PEOPLE_FEATURES = _words_re("hair", "faces?", "eyes", "figures?", "lips", "skin", "freckles", "portraits?",
                            "bodies", "poses?", "smil(?:e|es|ing)", "gaze", "women", "men", "people", "girls?")
DESERT = _words_re("deserts?", "dunes?", "arid")
WET_OR_COLD = _words_re("jungle", "rainforest", "forest", "swamp", "underwater", "ocean", "sea", "snow", "snowy",
                        "arctic", "ice", "icy", "tundra", "winter")
PORTRAIT = _words_re("portrait", "headshot", "close-?up", "selfie")
VISTA = _words_re("deserts?", "landscapes?", "vistas?", "scenery")

# (added negative terms, what in the positive prompt they contradict)
NEGATIVE_CLASHES: tuple[tuple[re.Pattern, re.Pattern], ...] = tuple(
    (re.compile(f"^(?:{negative})$"), positive if isinstance(positive, re.Pattern) else _words_re(*positive))
    for negative, positive in (
        ("text|words|letters|lettering|typography|caption|logo",
         (r"(?:neon|street|shop|store|road|stop|warning|wooden|exit|hanging|a|the) signs?",
          r"signs? (?:saying|reading|that says|with)", "signboard", "signage", "logos?", "typography", "lettering", "text", "caption", "headline",
          "speech bubbles?", "saying", "says", "the words?", "written", "inscription", "title", "label",
          "magazine cover", "book cover", "movie poster", "newspaper", "poster with")),
        ("ugly|deformed|disfigured|mutated|mutation|grotesque|gross",
         ("horror", "horrific", "monsters?", "creatures?", "zombies?", "demons?", "demonic", "eldritch",
          "lovecraftian", "cthulhu", "grotesque", "gore", "gory", "mutants?", "mutated", "deformed", "ugly",
          "undead", "ghoul", "goblin", "abomination", "disfigured")),
        ("photo|photograph|photography|photorealistic", PHOTO),
        ("b&w|b ?& ?w|black and white|monochrome|grayscale|greyscale",
         ("ink", "noir", "monochrome", "monochromatic", "black and white", "b ?& ?w", "grayscale", "greyscale",
          "charcoal", "graphite", "(?<!colored )(?<!coloured )pencil", "etching", "engraving", "woodcut", "linocut",
          "sumi-e", "sepia")),
        ("3d|3d render|render|cgi|3d model",
         ("render(?:ed|ing|s)?", "octane", "unreal engine", _3D, "cgi", "blender", "c4d", "cinema ?4 ?d", "vray",
          "redshift", "zbrush")),
        ("painting|paintings|oil painting",
         ("paintings?", "painted", "painterly", "oil on canvas", "watercolou?rs?", "gouache", "acrylic", "fresco",
          "brush ?strokes?", "brushwork")),
        ("illustrations?", ("illustrations?", "illustrated", "illustrator")),
        ("drawings?|sketch|sketches|pencil drawing",
         ("drawings?", "drawn", "sketch(?:es|ed|y)?", "pencil", "charcoal", "line ?art", "ink")),
        ("cartoon|cartoonish|comic", ("cartoons?", "cartoonish", "comics?", "pixar", "disney")),
        ("anime|manga", ("anime", "manga", "waifu", "ghibli", "pixiv")),
        ("blurry|blur|blurred|out of focus",  # not bokeh or depth of field: they blur only the background
         ("blur", "blurry", "blurred", "motion blur", "out of focus", "soft focus", "long exposure")),
        ("grainy|grain|noise|noisy|film grain", ("grain", "grainy", "film grain", "noise", "noisy")),
        ("lowres|low res|low resolution|pixelated", ("pixel art", "pixelated", "8-bit", "8 bit", "16-bit", "lowres")),
        ("jpeg artifacts|compression artifacts", ("jpeg", "glitch(?:ed)?", "datamosh(?:ing)?", "compression")),
        ("picture frame|frame|framed|border",
         ("framed", r"(?:picture|ornate|gold|golden|wooden|decorative|baroque|painting|photo) frames?", "in a frame")),
        ("extra limbs|extra arms|extra legs|extra hands",
         (r"(?:multiple|many|three|four|six|eight|extra|several) (?:arms|legs|limbs|hands)", "multi-armed",
          "many-armed")),
        ("extra heads|multiple heads|two heads", (r"(?:multiple|many|two|three|extra) heads", "hydra", "cerberus")),
        ("extra eyes", (r"(?:multiple|many|three|four|six|extra) eyes", "third eye")),
        ("dark|too dark|underexposed", ("dark", "darkness", "night", "nighttime", "noir", "low[ -]key")),
        ("nsfw|nude|nudity|naked", ("nsfw", "nude", "nudity", "naked", "topless")),
        ("realistic|realism|photorealistic|hyperrealistic",
         ("realistic", "realism", "photorealistic", "photo-realistic", "hyperrealistic", "hyper realistic",
          "lifelike")),
    ))


@functools.lru_cache(maxsize=CACHE)
def _first(pattern: re.Pattern, text: str) -> str | None:
    """The first match of ``pattern`` in ``text``, lower-cased (remembered: originals come back once per target)."""
    m = pattern.search(text)
    return m.group().lower() if m else None


# --------------------------------------------------------------------------------------------------------------------
# Artists (clip-interrogator's list, not the bridge's)

_NOT_NAMES = frozenset({"artist", "constant", "bauhaus"})  # entries of artists.txt that are ordinary words


def name_words(text: str) -> list[str]:
    """Words for name matching: accents off, lower case, ``A.B.`` / ``O'Keeffe`` split at the punctuation."""
    text = unicodedata.normalize("NFKD", text)
    return re.findall(r"[a-z0-9]+", "".join(c for c in text if not unicodedata.combining(c)).lower())


class Artists:
    """Artist names found in a text by their words."""

    def __init__(self, names: Iterable[str]):
        self.names = {tuple(name_words(n)) for n in names if n.strip() and n.strip().lower() not in _NOT_NAMES}
        self.names.discard(())
        self.surnames = {n[-1] for n in self.names if len(n) > 1}  # "by Frazetta" for "Frank Frazetta"
        self.lengths: dict[str, list[int]] = {}  # first word -> the lengths of the names it starts
        for n in self.names:
            self.lengths.setdefault(n[0], []).append(len(n))
        self._found: dict[str, frozenset[str]] = {}

    @classmethod
    def load(cls, path: Path | None) -> Artists:
        if path is None or not path.exists():
            return cls(())
        return cls(path.read_text(encoding="utf-8").splitlines())

    def find(self, text: str) -> frozenset[str]:
        found = self._found.get(text)
        if found is None:
            names = []
            for part in phrases(text):  # a name never reaches across a delimiter ("william, adolphe bouguereau")
                ws = name_words(part)
                covered = 0  # longest first at each word; a name inside a longer one is that one's
                for i, w in enumerate(ws):
                    for n in sorted(self.lengths.get(w, ()), reverse=True):
                        if i + n > covered and tuple(ws[i:i + n]) in self.names:
                            names.append(" ".join(ws[i:i + n]))
                            covered = i + n
                            break
            found = frozenset(names)
            if len(self._found) > CACHE:
                self._found.clear()
            self._found[text] = found
        return found

    def credited(self, text: str) -> bool:
        """Whether ``text`` names an artist: a whole name, or a surname after "by" / "style of"."""
        return bool(self.find(text)) or any(
            w in self.surnames for w in _CREDIT.findall(" ".join(name_words(text))))


_CREDIT = re.compile(r"\b(?:by|style of)\s+([a-z]+)")  # the word after "by": a surname? (whole names: find())
_ARTISTS: Artists | None = None


def default_artists() -> Artists:
    global _ARTISTS
    if _ARTISTS is None:
        _ARTISTS = Artists.load(DEFAULT_ARTISTS)
    return _ARTISTS


# --------------------------------------------------------------------------------------------------------------------
# Detectors over one prompt: (original, translation, original negative, translated negative) -> why, or None

def detect_spill(original: str, translation: str, negative_before: str = "", negative_after: str = "") -> str | None:
    if original == translation:
        return None
    before, after = chunks(original), chunks(translation)
    if after > before:
        return (f"{before} -> {after} chunks of 75 tokens ({count_tokens(original)} -> "
                f"{count_tokens(translation)} tokens)")
    return None


def detect_growth(original: str, translation: str, negative_before: str = "", negative_after: str = "") -> str | None:
    gross = gross_inserted_tokens(original, translation)
    return f"{gross} tokens inserted (> {GROWTH_LIMIT})" if gross > GROWTH_LIMIT else None


@functools.lru_cache(maxsize=CACHE)
def _ngrams(text: str, longest: int = 8) -> Counter:
    """How often each word sequence of up to ``longest`` words occurs inside the phrases of ``text``."""
    counts: Counter = Counter()
    for ws in phrase_words(text):
        for n in range(1, min(longest, len(ws)) + 1):
            counts.update(ws[i:i + n] for i in range(len(ws) - n + 1))
    return counts


@functools.lru_cache(maxsize=CACHE)
def _phrase_ends(text: str) -> Counter:
    """How often each word sequence ends a phrase of ``text`` (a whole phrase ends itself)."""
    return Counter(ws[-n:] for ws in phrase_words(text) for n in range(1, min(8, len(ws)) + 1))


def detect_duplicate(original: str, translation: str, negative_before: str = "",
                     negative_after: str = "") -> str | None:
    if original == translation:
        return None
    after = _ngrams(translation)
    repeated = [g for g, n in after.items() if n >= 2 and g[0] not in SMALL_WORDS and g[-1] not in SMALL_WORDS]
    if not repeated:
        return None
    before = _ngrams(original)
    repeated = [g for g in repeated if after[g] > before[g]]
    if not repeated:
        return None
    # a phrase, not a fragment of one: words that end a phrase somewhere; one word only where it is a whole phrase
    # and ends another phrase too ("illustration" and "anime style illustration", not "intricate" and "intricate
    # psychedelic ink illustration")
    ends_after, ends_before = _phrase_ends(translation), _phrase_ends(original)
    whole = set(phrase_words(translation))
    found = [g for g in repeated if ends_after[g] and (len(g) >= 2 or (
        g in whole and ends_after[g] >= 2 and ends_after[g] > ends_before[g] and g[0].isalpha()))]
    found = [g for g in found if not any(len(h) > len(g) and _contains(h, g) for h in found)]  # the longest only
    # what the user repeated: the words in order inside a phrase the original has as often ("illustration by X and Y"
    # written twice, with Y gone from both)
    written = Counter(phrase_words(original))
    found = [g for g in found if not any(n >= after[g] and _in_order(ws, g) for ws, n in written.items())]
    if not found:
        return None
    return "; ".join(f"'{' '.join(g)}' x{after[g]} (original x{before[g]})" for g in found[:3])


def _in_order(longer: tuple, shorter: tuple) -> bool:
    """Whether the words of ``shorter`` are in ``longer`` in the same order (not necessarily next to each other)."""
    words = iter(longer)
    return all(word in words for word in shorter)


def _contains(longer: tuple, shorter: tuple) -> bool:
    n = len(shorter)
    return any(longer[i:i + n] == shorter for i in range(len(longer) - n + 1))


@functools.lru_cache(maxsize=CACHE)
def _pairs(text: str) -> tuple[Counter, Counter]:
    """Word pairs next to each other inside a phrase, and across delimiters (empty phrases skipped)."""
    within: Counter = Counter()
    across: Counter = Counter()
    last: str | None = None
    for ws in phrase_words(text):
        within.update(itertools.pairwise(ws))
        if ws:
            if last is not None:
                across[(last, ws[0])] += 1
            last = ws[-1]
    return within, across


def detect_broken_phrase(original: str, translation: str, negative_before: str = "",
                         negative_after: str = "") -> str | None:
    if original == translation:
        return None
    within_before, across_before = _pairs(original)
    within_after, across_after = _pairs(translation)
    broken = [f"{a}, {b}" for (a, b), n in across_after.items()
              if n > across_before[(a, b)] and within_before[(a, b)] > within_after[(a, b)] and b not in _NEW_ITEM]
    return "cut by a delimiter: " + _quote(broken) if broken else None


_NEW_ITEM = ("and", "by", "&")  # a delimiter before one of these starts an item or a credit: no phrase is cut
_DANGLING_END = ("by", "and", "of", "with")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}")


@functools.lru_cache(maxsize=CACHE)
def dangling_issues(text: str) -> Counter:
    """Dangling words, empty phrases and brackets, separators at the ends of ``text``, counted by what they are."""
    issues: Counter = Counter()
    parts = phrases(text)
    for i, (phrase, ws) in enumerate(zip(parts, phrase_words(text))):
        if not ws:
            if not re.search(r"[^\W_]", phrase) and not _EMPTY_BRACKETS.search(phrase):  # quotes, spaces: nothing
                if 0 < i < len(parts) - 1:
                    issues["empty phrase (doubled separator)"] += 1
                elif len(parts) > 1 and (i == 0 or parts[i - 1].strip()):
                    issues["separator at the " + ("start" if i == 0 else "end")] += 1
            continue
        if ws[-1] in _DANGLING_END:
            issues[f"phrase ends with '{' '.join(ws[-3:]) if ws[-1] == 'of' else ws[-1]}'"] += 1
        if ws[0] == "and" or (ws[0] == "by" and len(ws) > 1 and ws[1] in SMALL_WORDS):  # (a lone "by" ends one)
            issues[f"phrase starts with '{ws[0]}'"] += 1
    empty = len(_EMPTY_BRACKETS.findall(text))
    if empty:
        issues["empty brackets"] += empty
    return issues


def detect_dangling(original: str, translation: str, negative_before: str = "",
                    negative_after: str = "") -> str | None:
    if original == translation:
        return None
    extra = dangling_issues(translation) - dangling_issues(original)
    return "; ".join(sorted(extra)) if extra else None


def detect_subject_clash(original: str, translation: str, negative_before: str = "",
                         negative_after: str = "") -> str | None:
    if original == translation:
        return None
    d = diff(original, translation)
    why = []
    features = d.inserted_matches(PEOPLE_FEATURES, translation)
    if features and _first(SCENE, original) and not _first(BEING, original):
        why.append(f"people features {_quote(features)} in a scene with no one in it")
    deserts = d.inserted_matches(DESERT, translation)
    if deserts and not _first(DESERT, original) and (wet := _first(WET_OR_COLD, original)):
        why.append(f"{_quote(deserts)} in a '{wet}' prompt")
    vistas = d.inserted_matches(VISTA, translation)
    if vistas and not _first(VISTA, original) and (portrait := _first(PORTRAIT, original)):
        why.append(f"{_quote(vistas)} in a '{portrait}' prompt")
    return "; ".join(why) or None


def detect_medium_clash(original: str, translation: str, negative_before: str = "",
                        negative_after: str = "") -> str | None:
    if original == translation:
        return None
    d = diff(original, translation)
    photo, painting = _first(PHOTO, original), _first(PAINTING, original)
    if not (photo or painting):
        return None
    why = []
    render = d.inserted_matches(RENDER_INSERTED, translation)
    if render and not _first(RENDER_ASKED, original):
        why.append(f"{_quote(render)} inserted into a '{photo or painting}' prompt")
    painted = d.inserted_matches(PAINTING, translation)
    if painted and photo and not painting:
        why.append(f"{_quote(painted)} inserted into a '{photo}' prompt")
    photographed = d.inserted_matches(PHOTO, translation)
    if photographed and painting and not photo:
        why.append(f"{_quote(photographed)} inserted into a '{painting}' prompt")
    return "; ".join(why) or None


@functools.lru_cache(maxsize=1024)
def negative_terms(negative: str) -> tuple[str, ...]:
    return tuple(t for t in (normalize_phrase(p) for p in negative.split(",")) if t)


def added_negative_terms(negative_before: str, negative_after: str) -> list[str]:
    before = set(negative_terms(negative_before))
    return [t for t in negative_terms(negative_after) if t not in before]


def detect_negative_clash(original: str, translation: str, negative_before: str = "",
                          negative_after: str = "") -> str | None:
    added = added_negative_terms(negative_before, negative_after)
    if not added:
        return None
    why = []
    for negative, asked in NEGATIVE_CLASHES:
        terms = [t for t in added if negative.match(t)]
        if terms and (m := _first(asked, original)):
            why.append(f"negative {_quote(terms)} vs '{m}'")
    return "; ".join(why) or None


_BY_BEFORE = re.compile(r"\b(?:by|style of)\s*$", re.IGNORECASE)
_BY_START = re.compile(r"\s*(?:art\s+)?by\b", re.IGNORECASE)


def detect_negative_kind(original: str, translation: str, negative_before: str = "", negative_after: str = "",
                         artists: Artists | None = None) -> str | None:
    added = added_negative_terms(negative_before, negative_after)
    if any(PHOTO_NEGATIVE.match(t) for t in added):
        kind, look = "painting-like (keeps photo out)", NON_PHOTO_LOOK
    elif any(PAINTING_NEGATIVE.match(t) for t in added):
        kind, look = "photo-like (keeps painting out)", PHOTO
    else:
        return None
    if _first(look, original):
        return None
    d = diff(original, translation)
    inserted = d.inserted_matches(look, translation)
    if not inserted or (artists if artists is not None else default_artists()).credited(original):
        return None
    if any(_BY_BEFORE.search(original, 0, s) or _BY_START.match(original, s) for s, _ in d.removed):
        return None  # the bridge rewrote a "by X" of the user's: an artist it knows, not in artists.txt
    return f"{kind} negative, but only the bridge's own {_quote(inserted)} say so"


PAIR_DETECTORS: dict[str, Callable[..., str | None]] = {
    "spill": detect_spill,
    "growth": detect_growth,
    "duplicate": detect_duplicate,
    "broken phrase": detect_broken_phrase,
    "dangling": detect_dangling,
    "subject clash": detect_subject_clash,
    "medium clash": detect_medium_clash,
    "negative clash": detect_negative_clash,
    "negative kind from own words": detect_negative_kind,
}


# --------------------------------------------------------------------------------------------------------------------
# Corpus passes: consistency across prompts

def detect_missed_artists(pairs: list[tuple[str, str]], artists: Artists | None = None) -> dict[int, str]:
    """Index -> why, for each (original, translation) pair keeping a name the bridge removes in another pair."""
    artists = artists if artists is not None else default_artists()
    return _kept_here_removed_elsewhere([(artists.find(o), artists.find(t)) for o, t in pairs])


def _kept_here_removed_elsewhere(found: list[tuple[frozenset[str], frozenset[str]]]) -> dict[int, str]:
    """Index -> why, for each (in the original, in the translation) pair of sets keeping an item that another pair's
    translation lost."""
    removed = set().union(*(before - after for before, after in found))
    out = {}
    for i, (before, after) in enumerate(found):
        kept = sorted(before & after & removed)
        if kept:
            out[i] = f"{_quote(kept)} kept here, removed elsewhere"
    return out


@functools.lru_cache(maxsize=CACHE)
def phrase_forms(text: str) -> frozenset[str]:
    """The normalized whole phrases of ``text`` of at most 4 words with a letter in them."""
    return frozenset(f for f in (normalize_phrase(p) for p in phrases(text))
                     if f and len(f.split()) <= LEFTOVER_WORDS and re.search(r"[^\W\d_]", f))


def detect_leftover_variants(pairs: list[tuple[str, str]]) -> dict[int, str]:
    """Index -> why, for each pair keeping a whole phrase that the bridge removes as a whole phrase elsewhere."""
    return _kept_here_removed_elsewhere([(phrase_forms(o), phrase_forms(t)) for o, t in pairs])


# --------------------------------------------------------------------------------------------------------------------
# Corpora and the run

def load_corpora(corpora_dir: Path, data: Path, chosen: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in chosen:
        if name == "diffusiondb":
            path = corpora_dir / "diffusiondb_prompts.jsonl"
            if path.exists():
                lines = path.read_text(encoding="utf-8").splitlines()
                out[name] = [p for p in (json.loads(line)["prompt"] for line in lines if line.strip()) if p.strip()]
            else:
                print(f"note: {path} not found, DiffusionDB skipped", file=sys.stderr)
        elif name == "parti":
            path = corpora_dir / "parti_prompts.tsv"
            if path.exists():
                with path.open(encoding="utf-8") as f:
                    out[name] = [row["Prompt"] for row in csv.DictReader(f, delimiter="\t") if row["Prompt"].strip()]
            else:
                print(f"note: {path} not found, PartiPrompts skipped", file=sys.stderr)
        elif name == "dsg1k":
            path = data / "dsg1k_tifa160" / "dsg1k_prompts_with_scores.tsv"
            rows = []
            if path.exists():
                with path.open(encoding="utf-8") as f:
                    rows = list(csv.DictReader(f, delimiter="\t"))
            column = next((c for c in ("text", "prompt", "Prompt") if rows and c in rows[0]), None)
            if column:
                out[name] = [row[column] for row in rows if row[column].strip()]
            else:
                print(f"note: {path} not found, DSG-1k skipped", file=sys.stderr)
    return out


# what a translation may raise (counted as errors): everything but the ways out of the program
TRANSLATION_ERRORS = (ArithmeticError, AssertionError, AttributeError, ImportError, LookupError, OSError,
                      RecursionError, RuntimeError, TypeError, ValueError)


def translate_all(prompts: list[str], target: str, source: str = "sd15"
                  ) -> tuple[list[tuple[str, str, str, str]], int]:
    """(original, translation, original negative, translated negative) of each prompt translated, and the errors."""
    from bridge.load import load_translator

    try:
        translator = load_translator("rules", source=source, target=target)
    except TRANSLATION_ERRORS as exc:
        print(f"{source} -> {target}: no translator ({type(exc).__name__}: {exc})", file=sys.stderr)
        return [], len(prompts)
    rows: list[tuple[str, str, str, str]] = []
    errors = 0
    for prompt in prompts:
        try:
            t = translator.translate(prompt)
        except TRANSLATION_ERRORS:
            errors += 1
            continue
        before = t.original.negative_prompt if t.original is not None else ""
        rows.append((prompt, t.prompt, before or "", t.recipe.negative_prompt or ""))
    return rows, errors


def evaluate(rows: list[tuple[str, str, str, str]], artists: Artists | None = None) -> dict:
    """Every detector over the (original, translation, original negative, translated negative) rows."""
    artists = artists if artists is not None else default_artists()
    flagged: dict[str, dict[int, str]] = {kind: {} for kind in KINDS}
    gross = []
    net_counted = 0
    for i, (o, t, nb, na) in enumerate(rows):
        for kind, detect in PAIR_DETECTORS.items():
            why = detect(o, t, nb, na, artists=artists) if detect is detect_negative_kind else detect(o, t, nb, na)
            if why:
                flagged[kind][i] = why
        d = diff(o, t)
        net_counted += d.net_counted
        if d.gross_tokens or d.inserted:
            gross.append(d.gross_tokens)
    pairs = [(o, t) for o, t, _, _ in rows]
    flagged["missed in sentences"] = detect_missed_artists(pairs, artists)
    flagged["leftover variants"] = detect_leftover_variants(pairs)
    return {
        "rows": rows,
        "flagged": flagged,
        "counts": {
            "translated": len(rows),
            "noop": sum(o == t for o, t, _, _ in rows),
            "with_insertion": len(gross),
            "gross_tokens_mean": sum(gross) / len(gross) if gross else 0.0,
            "gross_tokens_max": max(gross, default=0),
            "net_counted": net_counted,
            "kinds": {kind: len(flagged[kind]) for kind in KINDS},
        },
    }


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def print_table(corpus: str, target: str, counts: dict, seconds: float) -> None:
    n = max(1, counts["translated"])
    with_targets = corpus == "diffusiondb"
    print(f"\n== {corpus} -> {target}: {counts['translated']:,} prompts ({seconds:.1f} s) ==")
    print(f"{'kind':<30} {'prompts':>8} {'%':>8}" + ("   target" if with_targets else ""))
    for kind in KINDS:
        k = counts["kinds"][kind]
        line = f"{kind:<30} {k:>8,} {k / n:>8.2%}"
        if with_targets:
            limit = KIND_TARGETS[kind]
            line += f"   {'0' if limit == 0 else f'< {limit:.0%}':<6} {_mark(k == 0 if limit == 0 else k / n < limit)}"
        print(line)
    noop = counts["noop"] / n
    print(f"{'prompts translated':<30} {counts['translated']:>8,}")
    line = f"{'positive no-op rate':<30} {counts['noop']:>8,} {noop:>8.1%}"
    if corpus == "parti":
        line += f"   100%   {_mark(counts['noop'] == counts['translated'])}"
    print(line)
    print(f"{'prompts with any insertion':<30} {counts['with_insertion']:>8,} {counts['with_insertion'] / n:>8.1%}")
    mean, top = counts["gross_tokens_mean"], counts["gross_tokens_max"]
    print(f"{'gross tokens inserted, mean':<30} {mean:>8.1f} {'':>8}"
          + (f"   <= {GROSS_MEAN_TARGET:<3} {_mark(mean <= GROSS_MEAN_TARGET)}" if with_targets else ""))
    print(f"{'gross tokens inserted, max':<30} {top:>8,} {'':>8}"
          + (f"   <= {GROSS_MAX_TARGET:<3} {_mark(top <= GROSS_MAX_TARGET)}" if with_targets else ""))
    print(f"{'errors':<30} {counts['errors']:>8,}")
    if counts["net_counted"]:
        print(f"({counts['net_counted']} prompts changed over more than {LONG_DIFF} characters: net token growth)")


NEGATIVE_KINDS = ("negative clash", "negative kind from own words")


def print_samples(result: dict, k: int, rng: random.Random) -> None:
    rows = result["rows"]
    for kind in KINDS:
        flagged = result["flagged"][kind]
        if not flagged or k <= 0:
            continue
        print(f"\n-- {kind}: {min(k, len(flagged))} of {len(flagged):,} --")
        for i in sorted(rng.sample(sorted(flagged), min(k, len(flagged)))):
            o, t, nb, na = rows[i]
            print(f"  original:    {o.strip()}")
            print(f"  translation: {t.strip()}")
            if kind in NEGATIVE_KINDS:
                print(f"  negative +:  {', '.join(added_negative_terms(nb, na))}")
            print(f"  why:         {flagged[i]}\n")


def main(argv: list[str] | None = None) -> int:
    global TOKENIZER
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=",".join(CORPORA), help=f"comma-separated, of {', '.join(CORPORA)}")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated target models")
    parser.add_argument("--source", default="sd15")
    parser.add_argument("--limit", type=int, default=None, help="first N prompts of each corpus")
    parser.add_argument("--samples", type=int, default=3, help="before/after pairs printed per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write every count to this file")
    parser.add_argument("--corpora-dir", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data (DSG-1k)")
    parser.add_argument("--artists", type=Path, default=DEFAULT_ARTISTS, help="one artist name a line")
    parser.add_argument("--tokenizer", choices=("auto", "open_clip", "bridge"), default="auto")
    args = parser.parse_args(argv)

    TOKENIZER = args.tokenizer
    for remembered in (count_tokens, chunks, diff):
        remembered.cache_clear()
    if args.tokenizer == "open_clip" and _open_clip_encode() is None:
        print("open_clip does not import here", file=sys.stderr)
        return 1
    unknown = set(args.corpus.split(",")) - set(CORPORA)
    if unknown:
        parser.error(f"unknown corpus: {', '.join(sorted(unknown))}")
    found = load_corpora(args.corpora_dir, args.data, args.corpus.split(","))
    if not found:
        print("no corpora found", file=sys.stderr)
        return 1
    artists = Artists.load(args.artists)
    if not artists.names:
        print(f"note: no artist names ({args.artists} missing): artist checks find nothing", file=sys.stderr)
    print(f"tokens: {tokenizer_name()}; artists: {len(artists.names):,} names; source: {args.source}")
    report: dict = {}
    for corpus, prompts in found.items():
        prompts = prompts[:args.limit] if args.limit is not None else prompts
        for target in args.targets.split(","):
            start = time.perf_counter()
            rows, errors = translate_all(prompts, target, source=args.source)
            result = evaluate(rows, artists)
            result["counts"] |= {"prompts": len(prompts), "errors": errors}
            print_table(corpus, target, result["counts"], time.perf_counter() - start)
            print_samples(result, args.samples, random.Random(f"{args.seed}:{corpus}:{target}"))
            report.setdefault(corpus, {})[target] = result["counts"]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
