"""Fidelity evaluation: do a bridge's SD2 prompts give SD2 images that show what the SD1.x prompt meant?

For every (prompt, translator, seed) it renders the translator's SD2 recipe with the same seeds across translators,
scores each image against the *source* SD1 prompt with the held-out evaluation scorer (open_clip ViT-bigG-14 by
default; data building scores with ViT-L-14, so a bridge cannot win by gaming its own reward) and reports, per
translator:

- mean score: mean cosine similarity, source prompt <-> image, over all prompts and seeds;
- win rate vs identity: the share of prompts whose score (averaged over the seeds) beats the untranslated prompt's;
  a tie counts one half; the tie rate is reported too, with a 95% percentile-bootstrap CI over prompts;
- no-op rate: the share of prompts whose translated prompt is byte-identical to the source;
- token overflows: prompts whose translation has running text (between BREAKs, per AND clause) over 75 CLIP tokens,
  which plain diffusers truncates and A1111 cuts into chunks encoded apart (bridge.chunks over CLIP's BPE, which SD1 and
  SD2 share).

Translators: `identity` (the SD1 prompt fed to SD2 unchanged, no negative, the renderer's defaults for the target),
`rules` (the embedded rules bridge: its recipe's prompt, negative, size, steps, CFG and sampler) and `learned` when
`--learned PATH` is given (skipped with an error message if it does not load).

On a GPU with real weights (hub ids, or `--target-weights` for a local folder or .safetensors file):

    python eval/evaluate.py --prompts diffusiondb --limit 200 --source sd15 --target sd21 --seeds 0 1 \\
        --learned runs/sd15-sd21/bridge --out runs/eval-sd21

On tiny random models on a CPU, in seconds (a smoke test of the whole loop, not a measurement):

    python eval/evaluate.py --tiny --out /tmp/eval-tiny

A model the packaged registry lacks (the next generation): --registry FILE (training/README.md, "Bridge the next
model"); --tiny --target-weights DIR renders with a small local pipeline instead of a random one.

In the simulated world of bridge/workflows/simulated.py (a renderer and scorer with a known hidden preference; no torch), where
a bridge trained on its pairs should win: python eval/evaluate.py --simulated --prompts FILE --learned PATH --out DIR

Prompts (`--prompts`): a library file (.txt one per line, .jsonl with "prompt", .csv/.tsv, .parquet, ...) or a corpus
name: `parti` (PartiPrompts) or `diffusiondb` (DiffusionDB prompts from ImageReward), shipped in data/corpora (or
`--data-dir`); whitespace normalised, duplicates dropped (bridge.workflows.corpora). `--limit N` draws N prompts at random with
`--sample-seed`.

Writes to `--out`: results.json (the numbers above), rows.csv (one row per prompt x translator x seed), config.json
(everything this run used), images/ (named by the render's cache key) and report.html. Renders are cached by a hash
of (model, prompt, negative prompt, seed, settings), so rerunning a killed run renders only what is missing.
Exit codes: 0 done, 1 failure, 2 usage error; 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.chunks import overflows
from bridge.datafiles import atomic_write
from bridge.imaging.score import EVAL_SCORER, ScoreConfig
from bridge.load import load_translator
from bridge.models import NoBridgeError
from bridge.recipe import Recipe
from bridge.syntax import PromptSyntaxError
from bridge.workflows import common as workflow
from bridge.workflows import corpora
from bridge.workflows import eval_report as report
from bridge.workflows.common import IMAGE_FORMATS, UsageError, cache_key, requested_settings
from bridge.workflows.corpora import TINY_PROMPTS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from bridge.imaging.render import Renderer

BASELINE = "identity"
TRANSLATORS = ("identity", "rules")  # plus "learned" when --learned is given
SCORE_CHUNK = 64  # images loaded and scored at a time

# --tiny: the whole loop on random tiny models on a CPU, on the built-in prompts (bridge.workflows.corpora.TINY_PROMPTS).
TINY_SIZE, TINY_STEPS = 32, 2
AT_LEAST = {"limit": 1, "batch_size": 1, "bootstrap": 1, "size": 1, "steps": 1}


# ---------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="evaluate.py", description="Compare SD1 -> SD2 prompt bridges by rendering and scoring with SD2.",
        epilog="example: python eval/evaluate.py --prompts parti --limit 100 --target sd21 --out runs/eval "
               "| smoke test: python eval/evaluate.py --tiny --out /tmp/eval-tiny",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (reused to resume)")
    p.add_argument("--prompts", help="library file or corpus name (parti, diffusiondb); default diffusiondb, "
                                     "or built-in prompts with --tiny")
    p.add_argument("--limit", type=int, help="prompts drawn at random (default 200, all built-in ones with --tiny)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the random draw of --limit prompts")
    p.add_argument("--data-dir", type=Path, default=corpora.CORPORA_DIR,
                   help="where corpora live (env PROMPT_BRIDGE_DATA)")
    workflow.add_model_flags(p, target="sd21")
    p.add_argument("--target-weights", help="local folder, .safetensors/.ckpt file or hub id of the target weights "
                                            "(default: the target's hub id; with --tiny, a small local pipeline to "
                                            "render with instead of a random one)")
    p.add_argument("--translators", nargs="+", default=list(TRANSLATORS), choices=TRANSLATORS,
                   help="translators to compare; identity is the baseline")
    p.add_argument("--learned", help="path (or hub id) of a learned bridge to compare as 'learned'")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="render seeds (at least 2), shared by all")
    p.add_argument("--size", type=int, help="force this width and height for every translator")
    p.add_argument("--steps", type=int, help="force this many steps for every translator")
    p.add_argument("--batch-size", type=int, default=4, help="images per render batch")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--scorer-model", default=EVAL_SCORER[0], help="open_clip model of the evaluation scorer")
    p.add_argument("--scorer-pretrained", default=EVAL_SCORER[1], help="its pretrained tag or checkpoint path")
    p.add_argument("--image-format", choices=sorted(IMAGE_FORMATS), default="png", help="format of saved images")
    p.add_argument("--bootstrap", type=int, default=report.BOOTSTRAP_RESAMPLES, help="bootstrap resamples for CIs")
    p.add_argument("--ci-seed", type=int, default=0, help="seed of the bootstrap")
    workflow.add_mode_flags(p, tiny_help=f"tiny random models on CPU, {TINY_SIZE}px, {TINY_STEPS} steps (the "
                                         "renderer from --target-weights when given)")
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """This script's checks, then the ones every script makes (bridge.workflows.common.check_script_args)."""
    if BASELINE not in args.translators:
        raise UsageError(f"--translators must include the baseline {BASELINE!r}, got {' '.join(args.translators)}")
    if args.size is not None and args.size % 8:
        raise UsageError(f"--size has to be divisible by 8 but is {args.size}")
    workflow.check_script_args(args, at_least=AT_LEAST, seeds=2, tiny={"size": TINY_SIZE, "steps": TINY_STEPS})
    if args.limit is None and not args.tiny:
        args.limit = 200
    args.translators = list(dict.fromkeys(args.translators + (["learned"] if args.learned else [])))


# ---------------------------------------------------------------- prompts and translations


def load_prompts(args: argparse.Namespace) -> list[str]:
    """The source prompts: a library file or a corpus, without blanks and duplicates, then --limit drawn at random."""
    if args.prompts is None and args.tiny:
        found = [corpora.SourcePrompt(p) for p in TINY_PROMPTS]
    else:
        try:
            found = corpora.read_prompts(args.prompts or "diffusiondb", data_dir=args.data_dir)
        except corpora.CorpusError as exc:
            raise UsageError(f"--prompts: {exc}") from None
    prompts = list(dict.fromkeys(p.prompt for p in found))  # the source negative prompts are not evaluated
    if not prompts:
        raise UsageError(f"no prompts in {args.prompts}")
    drawn = corpora.select_prompts([corpora.SourcePrompt(p) for p in prompts], limit=args.limit, seed=args.sample_seed)
    return [p.prompt for p in drawn]


def load_translators(args: argparse.Namespace) -> tuple[dict[str, Callable[[list[str]], list[Recipe]]], dict]:
    """name -> function from source prompts to the recipes to render; and the translators that failed to load, with
    why. A recipe's settings left as None are the renderer's defaults for the target."""

    def with_bridge(bridge: Any) -> Callable[[list[str]], list[Recipe]]:
        def run(prompts: list[str]) -> list[Recipe]:
            return [t.recipe for t in bridge.translate_batch([Recipe(prompt=p) for p in prompts])]
        return run

    translators: dict[str, Callable[[list[str]], list[Recipe]]] = {}
    skipped: dict[str, str] = {}
    for name in args.translators:
        if name == "identity":
            translators[name] = lambda prompts: [Recipe(prompt=p) for p in prompts]
        elif name == "rules":
            try:
                translators[name] = with_bridge(load_translator("rules", source=args.source, target=args.target))
            except NoBridgeError as exc:
                raise UsageError(f"--source/--target: {exc}") from None
        else:
            try:
                translators[name] = with_bridge(load_translator(args.learned))
            except (ValueError, OSError, ImportError, RuntimeError) as exc:
                skipped[name] = f"cannot load learned bridge {args.learned!r}: {exc}"
                print(f"evaluate.py: skipping {name}: {skipped[name]}", file=sys.stderr)
    return translators, skipped


def forced(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    """--size and --steps apply to every translator alike."""
    changes = {}
    if args.size:
        changes.update(width=args.size, height=args.size)
    if args.steps:
        changes["steps"] = args.steps
    return recipe.replace(**changes) if changes else recipe


def overflows_chunk(prompt: str) -> bool:
    """Whether A1111 has to cut ``prompt``'s running text at the 75-token limit (bridge.chunks; BREAKs are fine).
    A prompt A1111 cannot parse counts as no overflow: it fails for another reason."""
    try:
        return bool(overflows(prompt))
    except PromptSyntaxError:
        return False


# ---------------------------------------------------------------- rendering (cached on disk)


@dataclass
class Row:
    """One (prompt, translator, seed) and, once known, its image's cache key and score."""

    prompt_index: int
    source: str
    translator: str
    seed: int
    recipe: Recipe
    key: str = ""
    score: float | None = None


def renderer_id(args: argparse.Namespace) -> str:
    """The model id that goes into cache keys: the target weights' name or path."""
    return workflow.renderer_id(args.target, args.target_weights, mode=args.mode)


def load_renderer(args: argparse.Namespace) -> Renderer:
    """The target renderer (loaded only when some image is not cached yet)."""
    return workflow.load_renderer(args.target, args.target_weights, mode=args.mode, device=args.device)


def image_path(images: Path, key: str, image_format: str) -> Path:
    return images / f"{key}.{image_format}"


def save_render(result: Any, images: Path, key: str, image_format: str) -> None:
    """The settings the renderer used (sidecar JSON), then the image: an image on disk means the render is done."""
    atomic_write(images / f"{key}.json", json.dumps(result.settings, sort_keys=True))
    atomic_write(image_path(images, key, image_format), workflow.image_bytes(result.image, image_format))


def render_missing(rows: list[Row], images: Path, args: argparse.Namespace) -> tuple[int, int]:
    """Render every image not yet on disk, a batch at a time; returns (rendered now, found cached).

    Identical requests (same cache key) are rendered once. Pending renders are sorted by their settings so each batch
    shares them (the renderer batches only requests with equal size, steps, sampler and CFG).
    """
    from bridge.imaging.render import RenderRequest

    wanted = {row.key: row for row in rows}
    pending = [row for key, row in wanted.items() if not image_path(images, key, args.image_format).is_file()]
    pending.sort(key=lambda row: json.dumps(requested_settings(row.recipe), sort_keys=True))
    renderer = load_renderer(args) if pending else None
    with workflow.progress_bar(len(pending), "render") as bar:
        for start in range(0, len(pending), args.batch_size):
            batch = pending[start:start + args.batch_size]
            requests = [RenderRequest.from_recipe(row.recipe.replace(seed=row.seed)) for row in batch]
            for row, result in zip(batch, renderer.render(requests, batch_size=args.batch_size), strict=True):
                save_render(result, images, row.key, args.image_format)
            bar.update(len(batch))
    return len(pending), len(wanted) - len(pending)


def render_settings(images: Path, row: Row) -> dict[str, Any]:
    """The settings a row's image was rendered with (the request's own where no sidecar was written)."""
    sidecar = images / f"{row.key}.json"
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    return requested_settings(row.recipe)


# ---------------------------------------------------------------- scoring and statistics


def load_scorer(args: argparse.Namespace) -> Any:
    """The evaluation scorer: source prompt <-> image under a held-out open_clip model (a tiny one with --tiny, the
    simulated world's with --simulated)."""
    return workflow.load_scorer(scorer_config(args), mode=args.mode, device=args.device)


def scorer_config(args: argparse.Namespace) -> ScoreConfig:
    config = ScoreConfig.evaluation(model=args.scorer_model, pretrained=args.scorer_pretrained)
    return workflow.scorer_config(config, mode=args.mode)


def score_rows(scorer: Any, rows: list[Row], images: Path, image_format: str) -> None:
    """Score each row's image (read back from disk, so a resumed run scores exactly what a fresh one does)."""
    from PIL import Image

    for start in range(0, len(rows), SCORE_CHUNK):
        chunk = rows[start:start + SCORE_CHUNK]
        pictures = []
        for row in chunk:
            with Image.open(image_path(images, row.key, image_format)) as im:
                pictures.append(im.convert("RGB"))
        for row, breakdown in zip(chunk, scorer.score([r.source for r in chunk], pictures), strict=True):
            row.score = breakdown.total


def per_prompt_scores(rows: list[Row], translator: str, n_prompts: int) -> list[float]:
    """Each prompt's score under ``translator``: the mean over its seeds (the prompt is the unit of comparison)."""
    sums, counts = [0.0] * n_prompts, [0] * n_prompts
    for row in rows:
        if row.translator == translator:
            sums[row.prompt_index] += row.score
            counts[row.prompt_index] += 1
    return [s / c for s, c in zip(sums, counts)]


def summarise(rows: list[Row], prompts: list[str], recipes: dict[str, list[Recipe]],
              args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The per-translator numbers of results.json."""
    baseline = per_prompt_scores(rows, BASELINE, len(prompts))
    out: dict[str, dict[str, Any]] = {}
    for name, outputs in recipes.items():
        scores = per_prompt_scores(rows, name, len(prompts))
        entry: dict[str, Any] = {
            "mean_score": sum(scores) / len(scores),
            "win_rate": None, "win_rate_ci": None, "tie_rate": None,
            "noop_rate": sum(v.prompt == p for v, p in zip(outputs, prompts)) / len(prompts),
            "token_overflows": sum(overflows_chunk(v.prompt) for v in outputs),
            "prompts": len(prompts),
            "rows": sum(row.translator == name for row in rows),
        }
        if name != BASELINE:
            entry["win_rate"], entry["tie_rate"] = report.paired_win_rate(scores, baseline)
            outcomes = report.paired_outcomes(scores, baseline)
            entry["win_rate_ci"] = list(report.bootstrap_ci(outcomes, resamples=args.bootstrap, seed=args.ci_seed))
        out[name] = entry
    return out


# ---------------------------------------------------------------- outputs


def write_rows_csv(path: Path, rows: list[Row], images: Path, image_format: str) -> None:
    buffer = io.StringIO()
    settings = ["width", "height", "steps", "cfg_scale", "sampler"]
    columns = ["prompt_index", "prompt", "translator", "translated_prompt", "negative_prompt", "seed", *settings,
               "score", "image"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        used = render_settings(images, row)
        writer.writerow({"prompt_index": row.prompt_index, "prompt": row.source, "translator": row.translator,
                         "translated_prompt": row.recipe.prompt, "negative_prompt": row.recipe.negative_prompt,
                         "seed": row.seed, **{name: used.get(name) for name in settings}, "score": f"{row.score:.6f}",
                         "image": image_path(images, row.key, image_format).relative_to(images.parent).as_posix()})
    atomic_write(path, buffer.getvalue())


def build_report(rows: list[Row], prompts: list[str], results: dict[str, Any], args: argparse.Namespace) -> str:
    translators = results["translators"]
    cells: list[dict[str, report.ReportCell]] = [{} for _ in prompts]
    for row in rows:
        cell = cells[row.prompt_index].get(row.translator)
        if cell is None:
            notes = ["no-op"] if row.recipe.prompt == row.source and row.translator != BASELINE else []
            notes += ["over 75 tokens"] if overflows_chunk(row.recipe.prompt) else []
            cell = cells[row.prompt_index][row.translator] = report.ReportCell(
                row.recipe.prompt, row.recipe.negative_prompt, [], 0.0, notes)
        cell.images.append(report.ReportImage(f"images/{row.key}.{args.image_format}", row.seed, row.score))
    for by_translator in cells:
        for cell in by_translator.values():
            cell.score = sum(im.score for im in cell.images) / len(cell.images)
    summary = {}
    for name, r in translators.items():
        summary[name] = {"mean score": f"{r['mean_score']:.4f}"}
        if r["win_rate"] is not None:
            low, high = r["win_rate_ci"]
            summary[name][f"win rate vs {BASELINE}"] = f"{r['win_rate']:.0%} [{low:.0%}–{high:.0%}]"
            summary[name]["tie rate"] = f"{r['tie_rate']:.0%}"
        summary[name]["no-op rate"] = f"{r['noop_rate']:.0%}"
        summary[name]["token overflows"] = f"{r['token_overflows']} / {r['prompts']}"
    win_rates = {name: (r["win_rate"], *r["win_rate_ci"]) for name, r in translators.items() if r["win_rate"] is not None}
    scorer = results["scorer"]
    meta = [f"{args.source} → {args.target}", f"{len(prompts)} prompts × {len(args.seeds)} seeds",
            f"renderer {results['model']}", "scorer " + "/".join(filter(None, (scorer["model"], scorer["pretrained"])))]
    notices = [f"{name} skipped: {why}" for name, why in results["skipped"].items()]
    if args.tiny:
        notices.append("--tiny: random tiny models, so the images are noise and the numbers mean nothing; this run "
                       "checks the pipeline, not a bridge.")
    return report.render_report(
        title="prompt-bridge evaluation", meta=meta, columns=list(translators),
        rows=[report.ReportRow(p, c) for p, c in zip(prompts, cells)], summary=summary, win_rates=win_rates,
        baseline=BASELINE, notices=notices, small_images=(args.size or 512) < 128)


# ---------------------------------------------------------------- main


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    out: Path = args.out
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)

    # 1. prompts and what each translator makes of them
    prompts = load_prompts(args)
    translators, skipped = load_translators(args)
    recipes = {name: [forced(r, args) for r in translate(prompts)] for name, translate in translators.items()}

    # 2. the rows: every prompt x translator x seed, with the same seeds for every translator
    model_id = renderer_id(args)
    rows = [Row(i, prompt, name, seed, recipes[name][i])
            for i, prompt in enumerate(prompts) for name in recipes for seed in args.seeds]
    for row in rows:
        row.key = cache_key(model_id, row.recipe, row.seed)
    config = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "model": model_id, "prompts": prompts, "score": scorer_config(args).to_dict()}
    atomic_write(out / "config.json", json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    # 3. render what is not cached yet, then score every image against its source prompt
    rendered, cached = render_missing(rows, images, args)
    scorer = load_scorer(args)
    score_rows(scorer, rows, images, args.image_format)

    # 4. statistics and outputs
    results = {
        "source": args.source, "target": args.target, "model": model_id, "scorer": scorer.config.to_dict(),
        "baseline": BASELINE, "seeds": args.seeds, "prompts": len(prompts),
        "translators": summarise(rows, prompts, recipes, args), "skipped": skipped,
        "renders": {"rendered": rendered, "cached": cached}, "seconds": round(time.perf_counter() - started, 2),
    }
    write_rows_csv(out / "rows.csv", rows, images, args.image_format)
    atomic_write(out / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    atomic_write(out / "report.html", build_report(rows, prompts, results, args))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    except workflow.SCRIPT_ERRORS as exc:
        return workflow.script_error("evaluate.py", exc)
    try:
        results = evaluate(args)
    except KeyboardInterrupt:
        print(f"evaluate.py: interrupted; rerun the same command to resume from {args.out}", file=sys.stderr)
        return 130
    except workflow.SCRIPT_ERRORS as exc:  # a UsageError: exit 2; the others: exit 1
        return workflow.script_error("evaluate.py", exc)
    for name, r in results["translators"].items():
        win = "" if r["win_rate"] is None else (f"  win {r['win_rate']:.0%} [{r['win_rate_ci'][0]:.0%}–"
                                                f"{r['win_rate_ci'][1]:.0%}] ties {r['tie_rate']:.0%}")
        print(f"{name:>10}: mean {r['mean_score']:.4f}{win}  no-op {r['noop_rate']:.0%}  "
              f"overflows {r['token_overflows']}/{r['prompts']}")
    print(f"report: {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
