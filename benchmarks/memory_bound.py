"""Issue 17's memory figure: one process translates 500,000 distinct prompts with the rules bridge, and its peak
memory (VmHWM, the most resident memory it ever held) is printed at checkpoints, with the growth over the memory it
held once the translator was loaded.

    python benchmarks/memory_bound.py [--count 500000] [--checkpoints 50000 100000 250000 500000]

The prompts are made of corpus phrases (DiffusionDB's prompts split at commas): prompt i joins phrase i mod P,
phrase i div P and a third chosen from i, so no two are alike (no phrase holds a comma) and a library's variety of
words and phrases keeps coming. What a process keeps between prompts is bounded by bridge/memo.py's memories
(each at most its size, cleared whole when full; keys over 400 characters never kept) and a few lru_caches:
once they fill, the peak stops growing. A growing peak between the last checkpoints means something keeps every
prompt. Linux only (/proc/self/status). Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "data" / "corpora" / "diffusiondb_prompts.jsonl"


def memory_mb() -> tuple[float, float]:
    """(resident now, peak resident) in MB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def phrases() -> list[str]:
    """The corpus's distinct comma-separated phrases, in corpus order."""
    seen: dict[str, None] = {}
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        for phrase in json.loads(line)["prompt"].replace("\n", " ").split(","):
            if phrase.strip():
                seen.setdefault(phrase.strip(), None)
    return list(seen)


def prompt(i: int, pool: list[str]) -> str:
    size = len(pool)
    return f"{pool[i % size]}, {pool[i // size]}, {pool[(i * 7919 + 13) % size]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[50_000, 100_000, 250_000, 500_000])
    args = parser.parse_args(argv)
    from bridge.load import load_translator
    from bridge.recipe import Recipe
    from bridge.translation import TranslationOptions

    pool = phrases()
    if args.count > len(pool) ** 2:
        raise SystemExit(f"{len(pool):,} phrases make at most {len(pool) ** 2:,} distinct prompts")
    translator = load_translator("rules", source="sd15", target="sd2")
    options = TranslationOptions()
    translator.translate(Recipe(prompt=prompt(0, pool)), options)  # the plan built, the knowledge loaded
    _, loaded = memory_mb()
    print(f"{len(pool):,} corpus phrases; loaded: peak {loaded:.0f} MB")
    print(f"{'prompts':>9} {'seconds':>8} {'now MB':>8} {'peak MB':>8} {'peak - loaded':>14}")
    checkpoints = sorted(c for c in args.checkpoints if c <= args.count)
    start = time.perf_counter()
    for i in range(1, args.count + 1):
        translator.translate(Recipe(prompt=prompt(i, pool)), options)
        if checkpoints and i == checkpoints[0]:
            checkpoints.pop(0)
            now, peak = memory_mb()
            print(f"{i:>9,} {time.perf_counter() - start:>8.0f} {now:>8.0f} {peak:>8.0f} {peak - loaded:>14.0f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
