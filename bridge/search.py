"""Translate by search: render candidate translations of one prompt on the target model and keep the best.

For a user with a GPU and the target weights who wants the best target prompt for one SD1 prompt today, without a
trained bridge. The candidates, the renders and the score are data building's (:mod:`bridge.workflows.pairs`), so a
search chooses the way a learned bridge's training pairs were chosen:

1. candidates: the identity (the prompt unchanged, always one), the rules bridge's variants
   (``pairs.RULES_VARIANTS``) and, with ``learned``, a learned bridge's samples; ``candidates`` in all at most.
2. render: every candidate on the target with the same ``seeds`` and the same settings (the size, steps, CFG scale and
   sampler the rules bridge gives the target), through a :class:`RenderCache`, so a repeated search renders nothing
   twice.
3. score: each image against the *source* prompt with data building's scorer (and against the source model's render
   of the source prompt when ``source_weights`` is given); the best mean over the seeds wins, the identity on a tie.
4. the best as a normal :class:`~bridge.translation.Translation` whose first change says "chosen by search" with the
   scores; with ``report_dir``, every candidate's images and scores and an HTML grid
   (:mod:`bridge.workflows.eval_report`).

    from bridge.search import search
    t = search("a castle, by greg rutkowski, 8k", target="sd21", candidates=8, seeds=(0, 1), report_dir="runs/search")
    t.prompt, t.changes[0].reason     # "chosen by search: rules:keep-artists scored 0.3312 (...)"
    search("a castle, 8k", tiny=True)  # tiny random models on the CPU, seconds: a smoke test

Without ``tiny`` it renders with the real target weights, and needs a GPU: with none it is an error unless
``device="cpu"`` says to render on the CPU anyway (minutes per image).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.datafiles import atomic_write
from bridge.recipe import Recipe
from bridge.translation import Change, Translation
from bridge.workflows import common as workflow
from bridge.workflows import eval_report as report
from bridge.workflows import pairs
from bridge.workflows.common import UsageError
from bridge.workflows.corpora import SourcePrompt

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DEFAULT_CACHE_LIMIT", "DEFAULT_SEEDS", "CachedRenderer", "RenderCache", "SearchResult", "SearchTranslator",
           "default_cache_dir", "load_models", "search", "search_all"]

DEFAULT_SEEDS = (0, 1)
DEFAULT_CACHE_LIMIT = 2 * 1024**3  # bytes: about 3,000 PNGs at 768 px
TINY_SIZE, TINY_STEPS = 32, 2  # --tiny renders, as data building's and evaluation's
SEARCH_RULE = "search"


# ---------------------------------------------------------------- the render cache


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/prompt-bridge`` (``~/.cache/prompt-bridge`` when the variable is unset or empty)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "prompt-bridge"


class RenderCache:
    """Rendered images on disk, one PNG (lossless: a cached image scores as the render did) and one JSON of what made
    it per key, in ``folder/renders``. When the entries pass ``limit_bytes``, the oldest written go first."""

    def __init__(self, folder: str | os.PathLike | None = None, limit_bytes: int = DEFAULT_CACHE_LIMIT):
        if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 0:
            raise ValueError(f"the render cache's size limit has to be a whole number of bytes >= 0 but is "
                             f"{limit_bytes!r}")
        self.folder = Path(folder if folder is not None else default_cache_dir()) / "renders"
        self.limit_bytes = limit_bytes

    def get(self, key: str) -> Any:
        """The cached :class:`~bridge.imaging.render.RenderResult` of ``key``, or None."""
        from PIL import Image

        from bridge.imaging.render import RenderResult

        try:
            meta = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
            with Image.open(self.folder / f"{key}.png") as image:
                image.load()
                return RenderResult(image=image.copy(), **meta)
        except (OSError, ValueError, TypeError):  # missing, evicted between the two reads, or damaged: render again
            return None

    def put(self, key: str, result: Any) -> None:
        """Store a render (image first: an entry counts only once its JSON is there)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / f"{key}.png", workflow.image_bytes(result.image, "png"))
        meta = {"seed": result.seed, "prompt": result.prompt, "negative_prompt": result.negative_prompt,
                "settings": result.settings}
        atomic_write(self.folder / f"{key}.json", json.dumps(meta, ensure_ascii=False))

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def evict(self) -> int:
        """Remove the oldest entries until the cache fits its limit; returns how many went."""
        entries = sorted(self._entries())
        total, removed = sum(size for _, size, _ in entries), 0
        for _, size, key in entries:
            if total <= self.limit_bytes:
                break
            for suffix in (".json", ".png"):
                (self.folder / f"{key}{suffix}").unlink(missing_ok=True)
            total, removed = total - size, removed + 1
        return removed

    def _entries(self) -> list[tuple[int, int, str]]:
        """(written, bytes, key) per entry: the time its JSON was written, the bytes of both files."""
        found: dict[str, list[int]] = {}
        try:
            with os.scandir(self.folder) as listing:
                for item in listing:
                    key, dot, suffix = item.name.rpartition(".")
                    if dot and suffix in ("png", "json") and not key.startswith("."):
                        stat = item.stat()
                        entry = found.setdefault(key, [0, 0])
                        entry[1] += stat.st_size
                        if suffix == "json":
                            entry[0] = stat.st_mtime_ns
        except FileNotFoundError:
            return []
        return [(written, size, key) for key, (written, size) in found.items()]


class CachedRenderer:
    """A renderer (anything with ``render(requests, batch_size)``) behind a :class:`RenderCache`: a request already
    rendered by ``model_id`` comes from the cache; the others are rendered in one call and stored. ``rendered``
    counts the images actually rendered."""

    def __init__(self, renderer: Any, cache: RenderCache, model_id: str):
        self.renderer, self.cache, self.model_id = renderer, cache, model_id
        self.rendered = 0

    def key(self, request: Any) -> str:
        """The render's identity (:func:`bridge.workflows.common.cache_key`): model, prompts, seed, settings."""
        recipe = Recipe(prompt=request.prompt, negative_prompt=request.negative_prompt, width=request.width,
                        height=request.height, steps=request.steps, cfg_scale=request.cfg_scale,
                        sampler=request.sampler, clip_skip=request.clip_skip)
        return workflow.cache_key(self.model_id, recipe, request.seed)

    def render(self, requests: Sequence[Any], batch_size: int = 4) -> list[Any]:
        keys = [self.key(r) for r in requests]
        results = [self.cache.get(key) for key in keys]
        missing = [i for i, result in enumerate(results) if result is None]
        if missing:
            fresh = self.renderer.render([requests[i] for i in missing], batch_size=batch_size)
            for i, result in zip(missing, fresh, strict=True):
                self.cache.put(keys[i], result)
                results[i] = result
            self.rendered += len(missing)
            self.cache.evict()
        return results


# ---------------------------------------------------------------- the search


@dataclass
class SearchResult:
    """A search's outcome: the translation returned, every scored candidate (identity first) and the best."""

    translation: Translation
    scored: list[pairs.Scored]
    best: pairs.Scored
    seeds: tuple[int, ...]
    rendered: int  # images rendered (not found in the cache)


def _needs_gpu(device: str | None, tiny: bool) -> None:
    """A real search renders candidates x seeds images: without a GPU that is an error unless a device is named."""
    if tiny or device is not None:
        return
    import torch

    mps = getattr(torch.backends, "mps", None)
    if torch.cuda.is_available() or (mps is not None and mps.is_available()):
        return
    raise UsageError("translate by search renders every candidate on the target model and needs a GPU, but torch "
                     "finds no CUDA or MPS device; use tiny=True (--tiny) for a smoke test on tiny random models, "
                     "or device='cpu' (--device cpu) to render on the CPU anyway (minutes per image)")


def _limited(candidates: list[pairs.Candidate], limit: int) -> list[pairs.Candidate]:
    """The identity and then, in turn, the next rules candidate and the next learned one, ``limit`` in all."""
    identity, rest = candidates[0], candidates[1:]
    learned = [c for c in rest if c.origin.get("kind") == "learned"]
    families = [[c for c in rest if c.origin.get("kind") != "learned"], learned]
    chosen = [identity]
    while len(chosen) < limit and any(families):
        for family in families:
            if family and len(chosen) < limit:
                chosen.append(family.pop(0))
    return chosen


def search_all(
    recipe_or_prompt: str | Recipe,
    *,
    source: str = "sd15",
    target: str = "sd2",
    candidates: int = 8,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    target_weights: str | None = None,
    source_weights: str | None = None,
    tiny: bool = False,
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT,
    report_dir: str | os.PathLike | None = None,
    learned: Any = None,
    renderer: Any = None,
    sd1_renderer: Any = None,
    scorer: Any = None,
    batch_size: int = 8,
) -> SearchResult:
    """:func:`search` with everything it found: every scored candidate, the best and the renders it made.

    ``renderer``, ``sd1_renderer`` and ``scorer`` are models already in memory (a loop over a library, tests); by
    default they are loaded as data building loads them (:mod:`bridge.workflows.common`)."""
    from bridge.models import UnknownModelError, get_model

    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise UsageError(f"search needs a whole number of candidates >= 1 (the identity is one) but got {candidates!r}")
    seeds = tuple(seeds)
    if (not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise UsageError(f"search seeds must be one or more different integers >= 0 but are {list(seeds)}")
    try:
        source, target = get_model(source).key, get_model(target).key
    except UnknownModelError as exc:
        raise UsageError(str(exc)) from None
    recipe = recipe_or_prompt if isinstance(recipe_or_prompt, Recipe) else Recipe(prompt=recipe_or_prompt)
    mode = "tiny" if tiny else "real"

    maker = pairs.CandidateMaker(source, target, learned=learned, samples=max(candidates - 1, 0))
    prompt = SourcePrompt(recipe.prompt, recipe.negative_prompt)
    chosen = _limited(maker([prompt])[0], candidates)
    base_translator, base_options = maker.default
    base = base_translator.translate(recipe, base_options)
    r = base.recipe
    settings = Recipe(prompt="", width=TINY_SIZE if tiny else r.width, height=TINY_SIZE if tiny else r.height,
                      steps=TINY_STEPS if tiny else r.steps, cfg_scale=r.cfg_scale, sampler=r.sampler,
                      clip_skip=r.clip_skip)

    cache = RenderCache(cache_dir, cache_limit_bytes)
    renderer, sd1_renderer, scorer = load_models(source, target, target_weights=target_weights,
                                                 source_weights=source_weights, tiny=tiny, device=device,
                                                 renderer=renderer, sd1_renderer=sd1_renderer, scorer=scorer)
    model_id = workflow.renderer_id(target, target_weights, mode=mode)
    target_renderer = CachedRenderer(renderer, cache, model_id)
    source_renderer = None
    if source_weights:
        source_renderer = CachedRenderer(sd1_renderer, cache, workflow.renderer_id(source, source_weights, mode=mode))

    images: dict[str, Any] = {}

    def keep_images(results: list[Any], keys: list[str]) -> None:
        if report_dir is not None:
            images.update(zip(keys, (result.image for result in results), strict=True))

    (scored,) = pairs.render_and_score([prompt], [chosen], renderer=target_renderer, scorer=scorer, seeds=seeds,
                                       model_id=model_id, settings=settings, batch_size=batch_size,
                                       sd1_renderer=source_renderer, on_images=keep_images)
    best = pairs.best_of_n(scored, margin=0.0).best
    translation = _translation(recipe, base, best, scored, maker, seeds)
    rendered = target_renderer.rendered + (source_renderer.rendered if source_renderer else 0)
    result = SearchResult(translation, scored, best, seeds, rendered)
    if report_dir is not None:
        write_report(Path(report_dir), result, images, model=model_id, scorer=scorer, tiny=tiny)
    return result


def load_models(source: str, target: str, *, target_weights: str | None = None, source_weights: str | None = None,
                tiny: bool = False, device: str | None = None, renderer: Any = None, sd1_renderer: Any = None,
                scorer: Any = None) -> tuple[Any, Any, Any]:
    """The target's renderer, the source's (only with ``source_weights``) and the scorer, loaded as data building
    loads them unless given; a real (not tiny) load with no GPU and no ``device`` is a :class:`UsageError`."""
    from bridge.imaging.score import ScoreConfig

    mode = "tiny" if tiny else "real"
    if renderer is None or scorer is None or (source_weights and sd1_renderer is None):
        _needs_gpu(device, tiny)
    if renderer is None:
        renderer = workflow.load_renderer(target, target_weights, mode=mode, device=device)
    if source_weights and sd1_renderer is None:
        sd1_renderer = workflow.load_renderer(source, source_weights, mode=mode, device=device)
    if scorer is None:
        scorer = workflow.load_scorer(ScoreConfig(), mode=mode, device=device)
    return renderer, sd1_renderer, scorer


class SearchTranslator:
    """Translate by search as a translator (``translate``, ``translate_batch``): ``translate-prompt --search N``.

    The models load on the first prompt and stay loaded for the rest. With ``report_dir`` each prompt's report goes
    to its own folder, ``report_dir/1``, ``report_dir/2``, ... in the order the prompts come. Translation options
    are not used: a search tries the shipped rules' own variants. The other arguments are :func:`search_all`'s."""

    def __init__(self, *, source: str = "sd15", target: str = "sd2", report_dir: str | os.PathLike | None = None,
                 **kwargs: Any):
        from bridge.models import UnknownModelError, get_model

        try:
            self.source, self.target = get_model(source).key, get_model(target).key
        except UnknownModelError as exc:
            raise UsageError(str(exc)) from None
        self.report_dir = None if report_dir is None else Path(report_dir)
        self.kwargs = kwargs
        self.searched = 0

    def translate(self, recipe: Recipe | str, options: Any = None) -> Translation:
        kwargs = self.kwargs
        if "scorer" not in kwargs:  # the first prompt: load once, keep for the rest
            keep = ("target_weights", "source_weights", "tiny", "device")
            renderer, sd1_renderer, scorer = load_models(self.source, self.target,
                                                         **{k: kwargs[k] for k in keep if k in kwargs})
            kwargs.update(renderer=renderer, sd1_renderer=sd1_renderer, scorer=scorer)
        self.searched += 1
        report_dir = None if self.report_dir is None else self.report_dir / str(self.searched)
        return search(recipe, source=self.source, target=self.target, report_dir=report_dir, **kwargs)

    def translate_batch(self, recipes: Any, options: Any = None) -> list[Translation]:
        return [self.translate(recipe, options) for recipe in recipes]


def search(recipe_or_prompt: str | Recipe, **kwargs: Any) -> Translation:
    """The best of ``candidates`` translations of one prompt (or :class:`Recipe`), chosen by rendering each on
    ``target`` with ``seeds`` and scoring it against the source prompt; see the module docstring and
    :func:`search_all` for the arguments."""
    return search_all(recipe_or_prompt, **kwargs).translation


def _translation(recipe: Recipe, base: Translation, best: pairs.Scored, scored: list[pairs.Scored],
                 maker: pairs.CandidateMaker, seeds: tuple[int, ...]) -> Translation:
    """The winner as a Translation: a rules variant's own translation of the whole recipe, else the rules bridge's
    settings with the winner's prompts; its first change names the search and the scores."""
    name = best.candidate.name
    if name in maker.variants:
        translator, options = maker.variants[name]
        chosen = translator.translate(recipe, options)
        changes, warnings, notes = list(chosen.changes), list(chosen.warnings), list(chosen.notes)
        out = chosen.recipe
    else:
        changes, warnings, notes = [], list(base.warnings), list(base.notes)
        out = base.recipe.replace(prompt=best.candidate.prompt, negative_prompt=best.candidate.negative_prompt)
        notes.append(f"size, steps, CFG scale and sampler as the rules bridge sets them for {base.target}")
    identity = scored[0]
    others = ", ".join(f"{s.candidate.name} {s.mean:.4f}" for s in scored if s is not best)
    reason = (f"chosen by search: {name} scored {best.mean:.4f} (mean over seeds {', '.join(map(str, seeds))}), "
              f"{best.mean - identity.mean:+.4f} over the identity; the others: {others or 'none'}")
    search_change = Change(SEARCH_RULE, recipe.prompt, best.candidate.prompt, reason)
    return Translation(recipe=out, source=base.source, target=base.target, changes=[search_change, *changes],
                       warnings=warnings, original=recipe, notes=notes)


# ---------------------------------------------------------------- the report


def write_report(folder: Path, result: SearchResult, images: dict[str, Any], *, model: str, scorer: Any,
                 tiny: bool) -> None:
    """``folder/index.html`` (one row, a column per candidate, the identity the baseline), ``folder/images/KEY.png``
    and ``folder/scores.json`` (every candidate: prompts, origin, mean, per-seed scores and image paths)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for key, image in images.items():
        path = folder / "images" / f"{key}.png"
        if not path.exists():
            atomic_write(path, workflow.image_bytes(image, "png"))
    cells, summary, entries = {}, {}, []
    for s in result.scored:
        name = s.candidate.name
        notes = (["chosen"] if s is result.best else []) + [f"= {other}" for other in s.candidate.also]
        cells[name] = report.ReportCell(
            s.candidate.prompt, s.candidate.negative_prompt,
            [report.ReportImage(f"images/{key}.png", seed, score["total"])
             for key, seed, score in zip(s.keys, result.seeds, s.scores, strict=True)],
            s.mean, notes)
        summary[name] = {"mean score": f"{s.mean:.4f}", "vs identity": f"{s.mean - result.scored[0].mean:+.4f}"}
        entries.append({"name": name, "also": s.candidate.also, "prompt": s.candidate.prompt,
                        "negative_prompt": s.candidate.negative_prompt, "origin": s.candidate.origin, "mean": s.mean,
                        "chosen": s is result.best, "scores": s.scores,
                        "images": [f"images/{key}.png" for key in s.keys]})
    config = scorer.config
    scorer_id = "/".join(filter(None, (config.model, config.pretrained)))
    t = result.translation
    notices = ["tiny: random tiny models, so the images are noise and the scores mean nothing"] if tiny else []
    page = report.render_report(
        title=f"Translate by search: {t.source} → {t.target}",
        meta=[f"model {model}", f"scorer {scorer_id}", f"seeds {', '.join(map(str, result.seeds))}",
              f"{len(result.scored)} candidates", f"chosen: {result.best.candidate.name}"],
        columns=list(cells), rows=[report.ReportRow(t.original.prompt if t.original else t.prompt, cells)],
        summary=summary, win_rates={}, baseline=pairs.IDENTITY, notices=notices, small_images=tiny)
    blob = {"source": t.source, "target": t.target, "source_prompt": t.original.prompt if t.original else "",
            "model": model, "scorer": scorer_id, "seeds": list(result.seeds), "chosen": result.best.candidate.name,
            "candidates": entries}
    atomic_write(folder / "scores.json", json.dumps(blob, indent=1, ensure_ascii=False) + "\n")
    atomic_write(folder / "index.html", page)
