"""Paired data for a learned bridge: candidates per source prompt, render and score them, keep the best of N.

The steps data/build_pairs.py runs for every shard of prompts (that script is the manual; this module is the parts):

1. :class:`CandidateMaker` — for each source prompt, the identity (the prompt unchanged, always first) and candidate
   target prompts: variants of the rules bridge (``RULES_VARIANTS``: each family of rules switched off or set
   differently; a variant runs only when the default rules touched its family, otherwise it could only repeat
   them), samples from a learned bridge, and user-supplied ones. Candidates with the same prompt and negative prompt
   are one candidate (the other names are kept in ``also``).
2. :func:`render_and_score` — every candidate through the target renderer with the same seeds, each image scored
   against the *source* prompt by the scorer (:class:`bridge.imaging.score.CombinedScorer`, or the simulated one).
3. :func:`best_of_n` — the best mean score over the seeds; the pair is kept when it beats the identity by more than
   ``margin``.
4. :func:`pair_row` and :func:`write_shard` — one row per source prompt (``COLUMNS``), written as one Parquet shard
   atomically; :func:`dataset_statistics` and :func:`dataset_card` describe the finished dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from bridge.datafiles import atomic_write
from bridge.recipe import Recipe
from bridge.translation import TranslationOptions
from bridge.workflows.common import cache_key
from bridge.workflows.corpora import SourcePrompt, normalise

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from bridge.rules import RulesTranslator

__all__ = ["COLUMNS", "IDENTITY", "RULES_VARIANTS", "Candidate", "CandidateMaker", "Choice", "RulesVariant", "Scored",
           "best_of_n", "dataset_card", "dataset_statistics", "pair_row", "prompt_id", "read_user_candidates",
           "render_and_score", "schema", "write_shard"]

IDENTITY = "identity"


@dataclass(frozen=True)
class RulesVariant:
    """One way to run the rules bridge: rule ids (patterns) to switch off, an artist action for every artist that has
    a description, an emphasis cap; ``touches``: the rule ids whose firing makes the variant worth running."""

    disable: tuple[str, ...] = ()
    artist_action: str | None = None
    emphasis_cap: float | None = None
    touches: tuple[str, ...] = ()


# Rules-bridge variants, by candidate name. "rules" is the bridge as shipped.
RULES_VARIANTS: dict[str, RulesVariant] = {
    "rules": RulesVariant(),
    "rules:keep-artists": RulesVariant(disable=("artist.*",), touches=("artist.*",)),
    "rules:describe-artists": RulesVariant(artist_action="keep_and_describe", touches=("artist.*",)),
    "rules:replace-artists": RulesVariant(artist_action="replace", touches=("artist.*",)),
    "rules:keep-magic": RulesVariant(disable=("magic.*",), touches=("magic.*",)),
    "rules:keep-emphasis": RulesVariant(disable=("emphasis",), touches=("emphasis",)),
    "rules:strict-emphasis": RulesVariant(emphasis_cap=1.2, touches=("emphasis",)),
    "rules:no-negative": RulesVariant(disable=("negative",), touches=("negative*",)),
    "rules:negative-only": RulesVariant(disable=("artist.*", "magic.*", "emphasis"),
                                        touches=("artist.*", "magic.*", "emphasis")),
}


def prompt_id(prompt: str, negative_prompt: str = "") -> str:
    """A row's id: a hash of the source prompt and negative prompt (the same wherever and whenever it is built)."""
    return hashlib.sha256(f"{prompt}\0{negative_prompt}".encode()).hexdigest()[:20]


@dataclass
class Candidate:
    """One candidate target: its name (``identity``, ``rules:keep-artists``, ``learned:2``, ``user:NAME``), prompt,
    negative prompt, how it was made, and the names of other candidates that gave the same text."""

    name: str
    prompt: str
    negative_prompt: str
    origin: dict[str, Any] = field(default_factory=dict)
    also: list[str] = field(default_factory=list)


def _variant_translator(base: RulesTranslator, variant: RulesVariant) -> RulesTranslator:
    """The rules bridge with its knowledge changed as ``variant`` says (in memory; the files stay as they are)."""
    from bridge.rules import RulesTranslator

    if variant.artist_action is None and variant.emphasis_cap is None:
        return base
    kb = dataclasses.replace(base.kb, rules=dict(base.kb.rules), artists=dict(base.kb.artists))
    if variant.artist_action is not None:
        kb.artists = {name: dataclasses.replace(a, action=variant.artist_action) if a.description else a
                      for name, a in kb.artists.items()}
    if variant.emphasis_cap is not None:
        cap = variant.emphasis_cap
        kb.rules = {rid: dataclasses.replace(r, params=dataclasses.replace(r.params, cap=cap))
                    if r.kind == "emphasis" else r for rid, r in kb.rules.items()}
    return RulesTranslator(kb, base.source, base.target)


def read_user_candidates(path: str) -> dict[str, list[Candidate]]:
    """User candidates from a prompt library (any format :func:`bridge.library.read_library` reads) with columns
    ``source_prompt``, ``target_prompt`` and optionally ``target_negative`` and ``name``: source prompt (whitespace
    normalised) → candidates."""
    from bridge.library import read_library

    found: dict[str, list[Candidate]] = {}
    for item in read_library(path, column="source_prompt"):
        if "target_prompt" not in item.fields:
            raise ValueError(f"{item.key}: a candidates file needs columns source_prompt and target_prompt "
                             f"(optional: target_negative, name); found {', '.join(item.columns)}")
        source = normalise(item.recipe.prompt)
        mine = found.setdefault(source, [])
        name = f"user:{item.fields.get('name') or len(mine)}"
        target, negative = (normalise(str(item.fields.get(c) or "")) for c in ("target_prompt", "target_negative"))
        mine.append(Candidate(name, target, negative, {"kind": "user", "row": item.key}))
    return found


class CandidateMaker:
    """Makes the candidates of a batch of source prompts (see the module docstring, step 1)."""

    def __init__(self, source: str, target: str, *, variants: Sequence[str] = tuple(RULES_VARIANTS),
                 learned: Any = None, samples: int = 4, temperature: float = 1.0, top_p: float = 0.95,
                 user: dict[str, list[Candidate]] | None = None, seed: int = 0):
        from bridge.rules import RulesTranslator

        unknown = sorted(set(variants) - set(RULES_VARIANTS))
        if unknown:
            raise ValueError(f"unknown rules variant {unknown[0]!r}; valid variants: {', '.join(RULES_VARIANTS)}")
        base = RulesTranslator.for_models(source, target)
        # A variant switches off only the rule families this pair's knowledge has (a new pair's may lack artists).
        ids = base.kb.rule_ids()
        self.variants = {name: (_variant_translator(base, RULES_VARIANTS[name]),
                                TranslationOptions(disable=tuple(p for p in RULES_VARIANTS[name].disable
                                                                 if any(fnmatchcase(i, p) for i in ids))))
                         for name in variants}
        self.default = (base, TranslationOptions())  # learned candidates without a negative take its negative
        self.learned, self.samples, self.temperature, self.top_p = learned, samples, temperature, top_p
        self.user = user or {}
        self.seed = seed

    def __call__(self, prompts: Sequence[SourcePrompt], batch: int = 0) -> list[list[Candidate]]:
        """Candidates per prompt, identity first. ``batch`` seeds the learned bridge's sampling (with ``seed``), so
        the same batch gets the same samples in a resumed run."""
        recipes = [Recipe(prompt=p.prompt, negative_prompt=p.negative_prompt) for p in prompts]
        out = [[Candidate(IDENTITY, p.prompt, p.negative_prompt, {"kind": IDENTITY})] for p in prompts]
        rules = self.default[0].translate_batch(recipes, self.default[1])
        for i, translation in enumerate(rules):
            fired = [c.rule for c in translation.changes]
            for name, (translator, options) in self.variants.items():
                variant = RULES_VARIANTS[name]
                if variant.touches and not any(fnmatchcase(r, t) for r in fired for t in variant.touches):
                    continue  # the default rules did not touch this family: the variant would repeat "rules"
                t = translation if name == "rules" else translator.translate(recipes[i], options)
                out[i].append(Candidate(name, t.prompt, t.negative_prompt, {"kind": "rules", "variant": name,
                                        "disable": list(variant.disable), "rules": [c.rule for c in t.changes]}))
        if self.learned is not None and self.samples:
            settings = {"num_return_sequences": self.samples, "do_sample": True, "temperature": self.temperature,
                        "top_p": self.top_p, "seed": self.seed * 1_000_003 + batch}
            for i, samples in enumerate(self.learned.candidates(recipes, **settings)):
                for k, sample in enumerate(samples):
                    if sample.problems:  # it broke protected syntax: not a candidate
                        continue
                    negative = rules[i].negative_prompt if sample.negative_prompt is None else sample.negative_prompt
                    origin = {"kind": "learned", "temperature": self.temperature, "top_p": self.top_p}
                    out[i].append(Candidate(f"learned:{k}", sample.prompt, negative, origin))
        for i, p in enumerate(prompts):
            out[i] += [dataclasses.replace(c, also=[]) for c in self.user.get(p.prompt, [])]
        return [_unique(candidates) for candidates in out]


def _unique(candidates: list[Candidate]) -> list[Candidate]:
    """One candidate per (prompt, negative prompt); the first keeps its name, the others go to ``also``."""
    first: dict[tuple[str, str], Candidate] = {}
    for c in candidates:
        key = (c.prompt, c.negative_prompt)
        if key in first:
            first[key].also.append(c.name)
        elif c.prompt.strip():
            first[key] = c
    return list(first.values())


# ---------------------------------------------------------------- render and score


@dataclass
class Scored:
    """A candidate with its images' scores: one :class:`~bridge.imaging.score.ScoreBreakdown` dict and render key per seed."""

    candidate: Candidate
    scores: list[dict[str, float | None]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # what the renderer used (model, size, steps, ...)

    @property
    def mean(self) -> float:
        return sum(s["total"] for s in self.scores) / len(self.scores)


def render_and_score(prompts: Sequence[SourcePrompt], candidates: Sequence[Sequence[Candidate]], *, renderer: Any,
                     scorer: Any, seeds: Sequence[int], model_id: str, settings: Recipe, batch_size: int = 8,
                     sd1_renderer: Any = None, on_images: Callable[[list[Any], list[str]], None] | None = None,
                     ) -> list[list[Scored]]:
    """Render every candidate of every prompt with each seed (``settings``: the size, steps, CFG and sampler all of
    them use; None fields are the renderer's defaults), score each image against its source prompt, and return the
    scored candidates per prompt. With ``sd1_renderer``, each source prompt is rendered with it too and the scorer
    compares with those images. ``on_images(results, keys)`` sees every rendered batch (progress, saving)."""
    from bridge.imaging.render import RenderRequest

    scored = [[Scored(c) for c in cands] for cands in candidates]
    jobs = [(i, k, seed) for i, cands in enumerate(candidates) for k in range(len(cands)) for seed in seeds]
    sd1 = {}
    if sd1_renderer is not None:
        requests = [RenderRequest(p.prompt, p.negative_prompt, seed) for p in prompts for seed in seeds]
        images = [r.image for r in sd1_renderer.render(requests, batch_size=batch_size)]
        sd1 = dict(zip(((i, seed) for i in range(len(prompts)) for seed in seeds), images, strict=True))
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        recipes = [settings.replace(prompt=candidates[i][k].prompt, negative_prompt=candidates[i][k].negative_prompt,
                                    seed=seed) for i, k, seed in batch]
        results = renderer.render([RenderRequest.from_recipe(r) for r in recipes], batch_size=batch_size)
        images = [r.image for r in results]
        breakdowns = scorer.score([prompts[i].prompt for i, _, _ in batch], images,
                                  [sd1[i, seed] for i, _, seed in batch] if sd1 else None)
        keys = [cache_key(model_id, r, r.seed) for r in recipes]
        for (i, k, _), breakdown, key, result in zip(batch, breakdowns, keys, results, strict=True):
            scored[i][k].scores.append(breakdown.to_dict())
            scored[i][k].keys.append(key)
            scored[i][k].settings = result.settings
        if on_images is not None:
            on_images(results, keys)
    return scored


@dataclass
class Choice:
    """The best-of-N outcome for one prompt: the best candidate, its gain over the identity and whether it is kept."""

    best: Scored
    identity: Scored
    gain: float
    kept: bool


def best_of_n(scored: Sequence[Scored], margin: float) -> Choice:
    """The candidate with the best mean score (the earliest on a tie, so the identity wins ties); kept when it is not
    the identity and beats it by more than ``margin``."""
    identity = scored[0]
    if identity.candidate.name != IDENTITY:
        raise ValueError(f"the first candidate has to be the identity but is {identity.candidate.name!r}")
    best = max(scored, key=lambda s: s.mean)  # max keeps the first of equal scores
    gain = best.mean - identity.mean
    return Choice(best, identity, gain, best is not identity and gain > margin)


# ---------------------------------------------------------------- rows and shards

# One row per source prompt. JSON columns are strings, so any reader (datasets, pandas, duckdb) takes them as they are.
COLUMNS = (
    ("id", "string", "hash of the source prompt and negative (prompt_id)"),
    ("source_prompt", "string", "the SD1.x prompt, whitespace normalised"),
    ("source_negative", "string", "its negative prompt (often empty)"),
    ("target_prompt", "string", "the best candidate's prompt (the source prompt when nothing beat it)"),
    ("target_negative", "string", "the best candidate's negative prompt"),
    ("candidate", "string", "the best candidate's name: identity, rules, rules:<variant>, learned:<k>, user:<name>"),
    ("kept", "bool", "whether the best candidate beat the identity by more than the margin"),
    ("split", "string", "'train' for kept pairs, 'rejected' otherwise (training/train.py reads only 'train')"),
    ("score", "double", "the best candidate's score, mean over the seeds"),
    ("identity_score", "double", "the identity's score, mean over the seeds"),
    ("gain", "double", "score - identity_score"),
    ("recipe", "string", ("JSON: the best candidate's prompt, negative prompt and the settings the renderer used "
                          "(model, width, height, steps, cfg_scale, sampler, ...)")),
    ("candidates", "string", ("JSON list, one entry per candidate: name, also, prompt, negative_prompt, origin, "
                              "mean, scores (per seed: total and each signal), images (render keys per seed)")),
    ("seeds", "list<int64>", "the render seeds, the same for every candidate"),
    ("source", "string", "where the source prompt came from (file:line, dataset:split:row)"),
    ("model", "string", "the renderer: target weights (registry key, hub id or path)"),
    ("scorer", "string", "the scorer: open_clip model/pretrained"),
    ("config_hash", "string", "hash of the build's config (config.json) that made this row"),
)


def schema() -> Any:
    """``COLUMNS`` as a pyarrow schema."""
    import pyarrow as pa

    types = {"string": pa.string(), "bool": pa.bool_(), "double": pa.float64(), "list<int64>": pa.list_(pa.int64())}
    return pa.schema([(name, types[kind]) for name, kind, _ in COLUMNS])


def pair_row(prompt: SourcePrompt, scored: Sequence[Scored], choice: Choice, *, seeds: Sequence[int], model: str,
             scorer: str, config_hash: str) -> dict[str, Any]:
    """One dataset row (``COLUMNS``) for a source prompt, its scored candidates and the best-of-N choice."""
    best = choice.best.candidate
    recipe = {"prompt": best.prompt, "negative_prompt": best.negative_prompt, **choice.best.settings}
    entries = [{"name": s.candidate.name, "also": s.candidate.also, "prompt": s.candidate.prompt,
                "negative_prompt": s.candidate.negative_prompt, "origin": s.candidate.origin, "mean": s.mean,
                "scores": s.scores, "images": s.keys} for s in scored]
    return {
        "id": prompt_id(prompt.prompt, prompt.negative_prompt),
        "source_prompt": prompt.prompt, "source_negative": prompt.negative_prompt,
        "target_prompt": best.prompt, "target_negative": best.negative_prompt,
        "candidate": best.name, "kept": choice.kept, "split": "train" if choice.kept else "rejected",
        "score": choice.best.mean, "identity_score": choice.identity.mean, "gain": choice.gain,
        "recipe": json.dumps(recipe, ensure_ascii=False),
        "candidates": json.dumps(entries, ensure_ascii=False), "seeds": list(seeds), "source": prompt.origin,
        "model": model, "scorer": scorer, "config_hash": config_hash,
    }


def write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as one Parquet file, written atomically (a reader or a resumed run sees all of it or nothing)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema()), buffer)
    atomic_write(path, buffer.getvalue())


# ---------------------------------------------------------------- the dataset card


def dataset_statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and score statistics of a dataset's rows (the dataset card's numbers)."""
    kept = [r for r in rows if r["kept"]]
    winners: dict[str, int] = {}
    for r in kept:
        family = r["candidate"].split(":")[0] if r["candidate"].startswith(("learned", "user")) else r["candidate"]
        winners[family] = winners.get(family, 0) + 1
    candidates = sum(len(json.loads(r["candidates"])) for r in rows)

    def summary(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        if not values:
            return {}
        return {"mean": sum(values) / len(values), "min": values[0], "median": values[len(values) // 2],
                "max": values[-1]}

    return {"prompts": len(rows), "kept": len(kept), "candidates": candidates, "winners": dict(sorted(winners.items())),
            "gain_kept": summary([r["gain"] for r in kept]), "gain_all": summary([r["gain"] for r in rows]),
            "identity_score": summary([r["identity_score"] for r in rows]),
            "best_score": summary([r["score"] for r in rows])}


def dataset_card(stats: dict[str, Any], config: dict[str, Any], config_hash: str, folder: Path) -> str:
    """The dataset card (README.md, with the front matter the Hugging Face hub reads) of a build's output folder."""
    def line(name: str) -> str:
        values = [f"{stats[name].get(k, float('nan')):.4f}" for k in ("mean", "min", "median", "max")]
        return f"| {name} | {' | '.join(values)} |"

    columns = "\n".join(f"| `{n}` | {t} | {why} |" for n, t, why in COLUMNS)
    winners = ", ".join(f"{k} {v}" for k, v in stats["winners"].items()) or "none"
    c = config
    return f"""---
configs:
- config_name: default
  data_files: data/*.parquet
---
# prompt-bridge pairs: {c['source']} → {c['target']}

Best-of-N prompt pairs built by prompt-bridge's `data/build_pairs.py` (config hash `{config_hash}`, settings in
`config.json`): each source prompt and its candidates rendered by `{c['model_id']}` with seeds {c['seeds']}, each image
scored against the source prompt by `{c['score']['model']}`; a pair is kept when its best candidate beats the
identity by more than {c['margin']}.

- prompts: {stats['prompts']} ({c['corpus'] or c['hf_dataset'] or 'built-in'}); candidates: {stats['candidates']}
- kept pairs (`split == "train"`): {stats['kept']} ({stats['kept'] / max(stats['prompts'], 1):.1%}); winners: {winners}

| score | mean | min | median | max |
|---|---|---|---|---|
{line('gain_kept')}
{line('gain_all')}
{line('identity_score')}
{line('best_score')}

```python
import datasets
pairs = datasets.load_dataset("parquet", data_files="{folder}/data/*.parquet", split="train")
kept = pairs.filter(lambda row: row["kept"])
```

## Columns

| column | type | meaning |
|---|---|---|
{columns}
"""
