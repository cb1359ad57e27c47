"""Build paired training data for a learned bridge: (SD1.x prompt -> best SD2 prompt), chosen by rendering and scoring.

For every source prompt: candidate SD2 prompts (the identity, i.e. the prompt unchanged, always; variants of the rules
bridge; samples from a learned bridge with --model; your own with --candidates), each rendered by the target model
with the same seeds, each image scored against the *source* prompt (bridge.imaging.score: OpenAI CLIP ViT-L/14 by default,
plus the SD1.5 image when --sd1-weights is given), and the best mean score kept when it beats the identity by more
than --margin. Every candidate's scores are recorded. The parts live in bridge/workflows/pairs.py; see data/README.md.

One GPU (SD 2.1-base at 512 px, 2 seeds; about 6 images/s on an H100):

    python data/build_pairs.py --corpus diffusiondb --limit 5000 --target sd21-base --seeds 0 1 --out runs/pairs

Several GPUs or machines: the same command under `accelerate launch` (or torchrun); each process builds the shards
whose number modulo WORLD_SIZE is its RANK, on cuda:LOCAL_RANK, and the last one to finish merges:

    accelerate launch --multi_gpu --num_processes 8 data/build_pairs.py --corpus diffusiondb --limit 5000 \\
        --target sd21-base --seeds 0 1 --out runs/pairs
    # 2 machines x 8 GPUs, on a shared file system: the same on each machine, with --machine_rank 0 and 1
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 data/build_pairs.py ... --out /shared/runs/pairs

Plan first (no model is loaded): add --dry-run for prompts, candidates, renders and GPU-hours.
Smoke test on a CPU (random tiny models, seconds): python data/build_pairs.py --tiny --out /tmp/pairs-tiny
A model the packaged registry lacks (the next generation): --registry FILE (training/README.md, "Bridge the next
model"); --tiny --target-weights DIR renders with a small local pipeline instead of a random one.
Then train on it: accelerate launch training/train.py --data runs/pairs --out runs/bridge (training/README.md).

Prompts: --corpus parti|diffusiondb (data/corpora), a library file or folder (any format bridge.library reads), or
--hf-dataset NAME_OR_PATH --hf-column COL; whitespace normalised, duplicates dropped, then filtered (--min-chars,
--max-chars, and unless --no-require-sd1-style, bridge.workflows.corpora.looks_sd1: a tag list of 3+ comma-separated phrases,
emphasis or network syntax, or an SD1 artist or magic word), then --limit drawn with --sample-seed.

Output (--out DIR): data/pairs-NNNNN-of-MMMMM.parquet (one row per source prompt, schema in data/README.md and
bridge.workflows.pairs.COLUMNS; load with datasets.load_dataset("parquet", data_files="DIR/data/*.parquet")), config.json
(this build's settings and their hash), index.json (prompt id -> shard), index/rank-N.jsonl (which process wrote
which shard), README.md (dataset card: counts, score statistics), images/ with --save-images (WebP, named by render
key as in each row's candidates JSON).

Kill it at any moment (kill -9) and rerun the same command: shards are written atomically and a shard on disk is
finished, so the rerun builds only the missing ones, and the result equals an uninterrupted run's. Exit codes: 0 done
(or this process's share done), 1 failure, 2 usage error, 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.datafiles import atomic_write
from bridge.imaging.score import ScoreConfig
from bridge.models import get_model
from bridge.recipe import Recipe
from bridge.workflows import common as workflow
from bridge.workflows import corpora, pairs
from bridge.workflows.common import UsageError
from bridge.workflows.corpora import SourcePrompt

if TYPE_CHECKING:
    from collections.abc import Sequence

IMAGES_PER_SECOND = 6.0  # SD 2.1-base, 512x512, 25 steps, one H100 (published figures: 5-8)
REFERENCE_STEPS, REFERENCE_PIXELS = 25, 512 * 512
TINY = {"size": 32, "steps": 2, "shard_size": 2}
AT_LEAST = {"limit": 1, "samples": 0, "batch_size": 1, "shard_size": 1, "size": 1, "steps": 1, "min_chars": 1,
            "max_chars": 1}
SHARD_GLOB = "pairs-*-of-*.parquet"
RUN_ONLY = ("out", "dry_run", "images_per_second", "batch_size", "device", "save_images")  # not in the config hash


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="build_pairs.py", description=__doc__.split("\n\n")[0],
                                epilog="example: python data/build_pairs.py --corpus diffusiondb --limit 1000 --out "
                                       "runs/pairs --dry-run | smoke test: python data/build_pairs.py --tiny --out "
                                       "/tmp/pairs-tiny", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (rerun the same command to resume)")
    g = p.add_argument_group("prompts")
    g.add_argument("--corpus", help="parti, diffusiondb (data/corpora) or a prompt library file/folder "
                                    "(default: diffusiondb; built-in prompts with --tiny)")
    g.add_argument("--column", help="prompt column of a library file (csv, tsv, jsonl, parquet)")
    g.add_argument("--data-dir", type=Path, help="where the corpora are (default data/corpora, env PROMPT_BRIDGE_DATA)")
    g.add_argument("--hf-dataset", help="a Hugging Face dataset (hub name or local folder) instead of --corpus")
    g.add_argument("--hf-column", default="prompt", help="its prompt column")
    g.add_argument("--hf-split", default="train", help="its split")
    g.add_argument("--limit", type=int, help="prompts drawn at random after filtering (default: all)")
    g.add_argument("--sample-seed", type=int, default=0, help="seed of that draw")
    g.add_argument("--min-chars", type=int, default=8, help="shortest prompt kept")
    g.add_argument("--max-chars", type=int, default=1000, help="longest prompt kept")
    g.add_argument("--require-sd1-style", action=argparse.BooleanOptionalAction, default=True,
                   help="keep only prompts that look written for SD 1.x (bridge.workflows.corpora.looks_sd1)")
    g = p.add_argument_group("candidates")
    g.add_argument("--variants", nargs="+", default=list(pairs.RULES_VARIANTS), metavar="NAME",
                   help=f"rules-bridge variants ('none' for none): {', '.join(pairs.RULES_VARIANTS)}")
    g.add_argument("--model", help="a learned bridge (folder or hub id) to sample candidates from")
    g.add_argument("--samples", type=int, default=4, help="samples per prompt from --model")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for --model")
    g.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling for --model")
    g.add_argument("--candidates", help="your candidates: a library file with columns source_prompt, target_prompt "
                                        "(optional target_negative, name)")
    g.add_argument("--seed", type=int, default=0, help="seed of the learned bridge's sampling")
    g = p.add_argument_group("render and score")
    workflow.add_model_flags(g, target="sd21-base")
    g.add_argument("--target-weights", help="local folder, .safetensors/.ckpt or hub id (default: the target's hub id; "
                                            "with --tiny, a small local pipeline to render with instead of a random "
                                            "one)")
    g.add_argument("--sd1-weights", help="SD 1.x weights: render each source prompt with them too, for the score's "
                                         "image-image signal (bridge.imaging.score)")
    g.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="render seeds, the same for every candidate")
    g.add_argument("--size", type=int, help="width and height of every render (default: the target's native size)")
    g.add_argument("--steps", type=int, help="sampling steps (default: the target's)")
    g.add_argument("--cfg-scale", type=float, help="CFG scale (default: the target's)")
    g.add_argument("--sampler", help="A1111 sampler name (default: the target's)")
    g.add_argument("--scorer-model", default=ScoreConfig.model, help="open_clip model of the scorer")
    g.add_argument("--scorer-pretrained", default=ScoreConfig.pretrained, help="its pretrained tag or checkpoint path")
    g.add_argument("--margin", type=float, default=0.005, help="a pair is kept when its best candidate beats the "
                                                               "identity by more than this (score units)")
    g.add_argument("--batch-size", type=int, default=8, help="images per render batch")
    g.add_argument("--device", help="cuda, cuda:N, mps or cpu (default: cuda:LOCAL_RANK, else the best available)")
    g = p.add_argument_group("output and run")
    g.add_argument("--shard-size", type=int, help="prompts per shard (default 256; 2 with --tiny)")
    g.add_argument("--save-images", action="store_true", help="keep every render in OUT/images (WebP)")
    g.add_argument("--dry-run", action="store_true", help="print the plan and the GPU-hours, build nothing")
    g.add_argument("--images-per-second", type=float, default=IMAGES_PER_SECOND,
                   help="one GPU's render rate for --dry-run. The default is for SD 2.1-base at 512x512, 25 steps, on "
                        "one H100 (published figures put it at 5 to 8 images/s); the estimate scales it by steps and "
                        "pixels")
    workflow.add_mode_flags(g, tiny_help="random tiny models on CPU (32 px, 2 steps; the renderer from "
                                         "--target-weights when given): a smoke test")
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """This script's checks, then the ones every script makes (bridge.workflows.common.check_script_args)."""
    if args.images_per_second <= 0:
        raise UsageError(f"--images-per-second has to be above 0 but is {args.images_per_second}")
    args.variants = [] if args.variants == ["none"] else args.variants
    unknown = sorted(set(args.variants) - set(pairs.RULES_VARIANTS))
    if unknown:
        raise UsageError(f"--variants: unknown variant {unknown[0]!r}; valid: none, {', '.join(pairs.RULES_VARIANTS)}")
    workflow.check_script_args(args, at_least=AT_LEAST, tiny=TINY)
    args.shard_size = args.shard_size or 256


# ---------------------------------------------------------------- the plan


@dataclass
class Plan:
    prompts: list[SourcePrompt]
    shard_size: int
    config: dict[str, Any]
    config_hash: str

    @property
    def shards(self) -> int:
        return -(-len(self.prompts) // self.shard_size)

    def shard(self, k: int) -> list[SourcePrompt]:
        return self.prompts[k * self.shard_size:(k + 1) * self.shard_size]

    def shard_name(self, k: int) -> str:
        return f"pairs-{k:05d}-of-{self.shards:05d}.parquet"


def load_source_prompts(args: argparse.Namespace) -> list[SourcePrompt]:
    """The prompts: read, normalised, deduplicated, filtered, then --limit drawn (bridge.workflows.corpora)."""
    if args.hf_dataset:
        prompts = corpora.read_hf_dataset(args.hf_dataset, column=args.hf_column, split=args.hf_split)
    elif args.corpus is None and args.tiny:
        prompts = [SourcePrompt(p, "", f"built-in:{i}") for i, p in enumerate(corpora.TINY_PROMPTS)]
    else:
        prompts = corpora.read_prompts(args.corpus or "diffusiondb", column=args.column, data_dir=args.data_dir)

    def accept(prompt: str) -> bool:
        return args.min_chars <= len(prompt) <= args.max_chars and (
            not args.require_sd1_style or corpora.looks_sd1(prompt, source=args.source, target=args.target))

    chosen = corpora.select_prompts(prompts, limit=args.limit, seed=args.sample_seed, accept=accept)
    if not chosen:
        raise UsageError(f"no prompts left after the filters (of {len(prompts)} read); try --no-require-sd1-style")
    return chosen


def make_plan(args: argparse.Namespace) -> Plan:
    prompts = load_source_prompts(args)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in sorted(vars(args).items()) if k not in RUN_ONLY}
    config["score"] = workflow.scorer_config(score_config(args), mode=args.mode).to_dict()
    config["model_id"] = workflow.renderer_id(args.target, args.target_weights, mode=args.mode)
    config["prompts"] = {"count": len(prompts), "sha256": _sha256("\n".join(f"{p.prompt}\0{p.negative_prompt}"
                                                                             for p in prompts).encode())}
    if args.candidates:
        config["candidates_sha256"] = _sha256(Path(args.candidates).read_bytes())
    digest = _sha256(json.dumps(config, sort_keys=True).encode())[:16]
    return Plan(prompts, args.shard_size, config, digest)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def score_config(args: argparse.Namespace) -> ScoreConfig:
    return ScoreConfig(model=args.scorer_model, pretrained=args.scorer_pretrained)


def render_settings(args: argparse.Namespace) -> Recipe:
    """What every render shares (None: the target's default), so candidates differ only in their prompts."""
    return Recipe(prompt="", width=args.size, height=args.size, steps=args.steps, cfg_scale=args.cfg_scale,
                  sampler=args.sampler)


def candidate_maker(args: argparse.Namespace, *, learned: Any = None) -> pairs.CandidateMaker:
    user = pairs.read_user_candidates(args.candidates) if args.candidates else None
    return pairs.CandidateMaker(args.source, args.target, variants=args.variants, learned=learned,
                                samples=args.samples, temperature=args.temperature, top_p=args.top_p, user=user,
                                seed=args.seed)


def dry_run(plan: Plan, args: argparse.Namespace, world: int, done: int) -> None:
    """The plan: prompts, candidates (rules and user candidates counted on up to 200 prompts; learned samples at
    most --samples each), renders and GPU-hours at --images-per-second, scaled by steps and pixels."""
    sample = plan.prompts[:200]
    counted = sum(len(c) for c in candidate_maker(args)(sample)) / len(sample)
    per_prompt = counted + (args.samples if args.model else 0)
    renders = len(plan.prompts) * per_prompt * len(args.seeds) + (len(plan.prompts) * len(args.seeds)
                                                                   if args.sd1_weights else 0)
    spec = get_model(args.target)
    steps, size = args.steps or spec.default_steps, args.size or spec.native_size
    seconds = renders / args.images_per_second * (steps / REFERENCE_STEPS) * (size * size / REFERENCE_PIXELS)
    print(f"prompts: {len(plan.prompts)} in {plan.shards} shards of {plan.shard_size} ({done} built already), "
          f"{world} process(es)\n"
          f"candidates per prompt: {per_prompt:.1f} (identity, {len(args.variants)} rules variants, "
          f"{args.samples if args.model else 0} learned samples, user candidates; duplicates removed)\n"
          f"renders: {renders:,.0f} = prompts x candidates x {len(args.seeds)} seeds"
          f"{' + SD1 renders' if args.sd1_weights else ''}, {size}x{size}, {steps} steps on {args.target}\n"
          f"GPU time: {seconds / 3600:.2f} GPU-hours at {args.images_per_second:g} images/s per GPU "
          f"({seconds / 3600 / world:.2f} h wall on {world} GPU(s))\n"
          f"config hash: {plan.config_hash}; output: {args.out}")


# ---------------------------------------------------------------- building


def committed(data: Path) -> set[str]:
    return {path.name for path in data.glob(SHARD_GLOB)}


def check_config(out: Path, plan: Plan) -> None:
    """A resumed build must be the same build: refuse an OUT made with other settings, else write config.json."""
    path = out / "config.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["config_hash"] != plan.config_hash:
            then = saved["config"]
            changed = sorted(k for k in {*then, *plan.config} if then.get(k) != plan.config.get(k))
            raise UsageError(f"{out} holds a build with other settings ({', '.join(changed)} differ); rerun it with "
                             "the same settings, or use a new --out")
    blob = {"config_hash": plan.config_hash, "config": plan.config, "columns": {n: t for n, t, _ in pairs.COLUMNS}}
    atomic_write(path, json.dumps(blob, indent=2, ensure_ascii=False) + "\n")


def build(args: argparse.Namespace, *, renderer: Any = None, scorer: Any = None) -> dict[str, Any]:
    """Build this process's shards (RANK of WORLD_SIZE), then merge when every shard is on disk. ``renderer`` and
    ``scorer`` replace the ones --tiny/--simulated/real would load (benchmarks, tests)."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    plan = make_plan(args)
    out, data = args.out, args.out / "data"
    done = committed(data)
    if args.dry_run:
        dry_run(plan, args, world, len(done))
        return {}
    for folder in (data, out / "index", *([out / "images"] if args.save_images else [])):
        folder.mkdir(parents=True, exist_ok=True)
    check_config(out, plan)
    mine = [k for k in range(plan.shards) if k % world == rank and plan.shard_name(k) not in done]
    started, rendered = time.perf_counter(), 0
    if mine:
        if args.tiny:  # tiny models run fastest on one thread: starting threads costs more than their work
            import torch

            torch.set_num_threads(1)
        device = args.device or local_device(args.mode)
        learned = None
        if args.model:
            from bridge.learned.seq2seq import Seq2SeqTranslator

            learned = Seq2SeqTranslator.from_pretrained(args.model, device=device)
        make = candidate_maker(args, learned=learned)
        renderer = renderer or workflow.load_renderer(args.target, args.target_weights, mode=args.mode, device=device)
        scorer = scorer or workflow.load_scorer(score_config(args), mode=args.mode, device=device)
        sd1 = None
        if args.sd1_weights:
            sd1 = workflow.load_renderer(args.source, args.sd1_weights, mode=args.mode, device=device)
        rendered = build_shards(plan, mine, args, make, renderer, scorer, sd1, rank)
    seconds = time.perf_counter() - started
    if committed(data) >= {plan.shard_name(k) for k in range(plan.shards)}:
        return {**merge(out, plan, args), "rendered": rendered, "seconds": seconds, "merged": True}
    return {"merged": False, "rank": rank, "shards": len(mine), "rendered": rendered, "seconds": seconds}


def local_device(mode: str) -> str | None:
    """cuda:LOCAL_RANK under a multi-process launcher with CUDA, else None (the loaders pick the best device)."""
    if mode != "real" or "LOCAL_RANK" not in os.environ:
        return None
    import torch

    return f"cuda:{os.environ['LOCAL_RANK']}" if torch.cuda.is_available() else None


def build_shards(plan: Plan, mine: list[int], args: argparse.Namespace, make: pairs.CandidateMaker, renderer: Any,
                 scorer: Any, sd1: Any, rank: int) -> int:
    """Candidates, renders, scores and best-of-N for each shard; each shard written atomically, then logged."""
    settings, model_id = render_settings(args), plan.config["model_id"]
    score = scorer.config
    scorer_id = "/".join(filter(None, (score.model, score.pretrained)))
    expected = len(args.seeds) * (2 + len(args.variants) // 2 + (args.samples if args.model else 0))
    pending = total = sum(len(plan.shard(k)) for k in mine)
    kept, gains, renders = 0, 0.0, 0

    def on_images(results: list[Any], keys: list[str]) -> None:
        if args.save_images:
            for result, key in zip(results, keys, strict=True):
                path = args.out / "images" / f"{key}.webp"
                if not path.exists():
                    atomic_write(path, workflow.image_bytes(result.image, "webp"))
        bar.update(len(results))

    with workflow.progress_bar(pending * expected, f"build (rank {rank})") as bar:
        for k in mine:
            prompts = plan.shard(k)
            candidates = make(prompts, batch=k)
            renders += sum(map(len, candidates)) * len(args.seeds)
            pending -= len(prompts)
            bar.total = renders + round(pending * renders / (total - pending))  # renders per prompt so far
            bar.refresh()
            scored = pairs.render_and_score(prompts, candidates, renderer=renderer, scorer=scorer, seeds=args.seeds,
                                            model_id=model_id, settings=settings, batch_size=args.batch_size,
                                            sd1_renderer=sd1, on_images=on_images)
            rows = []
            for prompt, row_scores in zip(prompts, scored, strict=True):
                choice = pairs.best_of_n(row_scores, args.margin)
                kept, gains = kept + choice.kept, gains + (choice.gain if choice.kept else 0.0)
                rows.append(pairs.pair_row(prompt, row_scores, choice, seeds=args.seeds, model=model_id,
                                           scorer=scorer_id, config_hash=plan.config_hash))
            pairs.write_shard(args.out / "data" / plan.shard_name(k), rows)
            entry = {"shard": plan.shard_name(k), "rank": rank, "ids": [r["id"] for r in rows]}
            with open(args.out / "index" / f"rank-{rank:05d}.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")
                log.flush()
                os.fsync(log.fileno())
            bar.set_postfix(kept=kept, gain=f"{gains / max(kept, 1):+.4f}")
    return renders


# ---------------------------------------------------------------- merging and the dataset card


def merge(out: Path, plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """Check every shard (each prompt once, none missing), write index.json and the dataset card. Idempotent: every
    process that finds all shards on disk may run it, and a rerun after a kill does."""
    import pyarrow.parquet as pq

    index: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for k in range(plan.shards):
        name = plan.shard_name(k)
        table = pq.read_table(out / "data" / name, columns=["id", "kept", "gain", "score", "identity_score",
                                                             "candidate", "candidates"])
        for row in table.to_pylist():
            if row["id"] in index:
                raise RuntimeError(f"prompt {row['id']} is in both {index[row['id']]} and {name}")
            index[row["id"]] = name
            rows.append(row)
    expected = {pairs.prompt_id(p.prompt, p.negative_prompt) for p in plan.prompts}
    if set(index) != expected:
        raise RuntimeError(f"the shards in {out / 'data'} hold {len(index)} prompts, not the plan's {len(expected)}; "
                           "they come from another build: use a new --out")
    for stray in (out / "data").glob(".*.tmp"):  # left by a killed process; every shard is in place now
        stray.unlink(missing_ok=True)
    stats = pairs.dataset_statistics(rows)
    atomic_write(out / "index.json", json.dumps(index, indent=0) + "\n")
    atomic_write(out / "README.md", pairs.dataset_card(stats, plan.config, plan.config_hash, out))
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        result = build(args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("build_pairs.py: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except workflow.SCRIPT_ERRORS as exc:  # a UsageError (a bad --corpus too): exit 2; the others: exit 1
        return workflow.script_error("build_pairs.py", exc)
    if result.get("merged"):
        gain = result["gain_kept"].get("mean", 0.0)
        print(f"pairs kept: {result['kept']} of {result['prompts']} prompts, mean gain over identity {gain:+.4f}; "
              f"rendered {result['rendered']} images in {result['seconds']:.1f}s; dataset: {args.out}")
    elif result:
        print(f"rank {result['rank']}: {result['shards']} shards built; the last process to finish merges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
