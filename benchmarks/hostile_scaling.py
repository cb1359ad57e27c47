"""Issue 17's scaling figures: a folder library read and written at 200 to 10,000 files, and the word diff of one
long prompt at 2 KB to 1 MB. Each figure is printed with its ratio to the smallest size measured in the same run.

    python benchmarks/hostile_scaling.py [--files 200 1000 2000 10000] [--sizes 2000 8000 16000 1000000]

Linear time shows as a time ratio close to the size ratio (10x the files, about 10x the seconds). Before issue 17
the folder plan resolved every output against every input (1,000 files: 62 s for the plan alone, 10,000: hours) and
the diff grew with about the cube of a repetitive prompt's length (16 KB: over 300 s). Writing a folder includes one
fsync per file, as before, which dominates on a busy disk. The diff is exact up to migration.DIFF_WORK, then a cheaper
form takes over, so its time is bounded rather than smooth (8 KB, near the limit, can cost more than 16 KB). Each
figure is the best of --runs. Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bridge.library import read_library, write_library
from bridge.migration import word_diff


def folder_figures(files: int, runs: int) -> tuple[float, float]:
    """Seconds to read a folder of `files` one-prompt .txt files (20 subfolders) and to write it back mirrored, the
    best of `runs` (writing fsyncs each file: the disk's load shows in one run, less in the best)."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in"
        for i in range(files):
            folder = source / f"s{i % 20:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.txt").write_text(f"a castle number {i}, by greg rutkowski\n")
        reads, writes = [], []
        for run in range(runs):
            start = time.perf_counter()
            items = read_library(source)
            reads.append(time.perf_counter() - start)
            start = time.perf_counter()
            write_library(items, [item.recipe for item in items], Path(scratch) / f"out{run}")
            writes.append(time.perf_counter() - start)
        return min(reads), min(writes)


def diff_seconds(size: int) -> float:
    """Seconds for word_diff of a repetitive prompt of `size` characters and its rewrite (the slow shape for difflib:
    few distinct words, many changes)."""
    before = ("masterpiece, best quality, castle, " * (size // 30 + 1))[:size]
    after = before.replace("masterpiece, ", "").replace("castle", "a castle on a hill")
    start = time.perf_counter()
    word_diff(before, after)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[200, 1000, 2000, 10000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 16000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs per figure")
    args = parser.parse_args(argv)

    print(f"{'files':>7} {'read s':>8} {'ratio':>6} {'write s':>8} {'ratio':>6}   (size ratio)")
    base = None
    for files in args.files:
        read, write = folder_figures(files, args.runs)
        base = base or (files, read, write)
        print(f"{files:>7} {read:>8.3f} {read / base[1]:>6.1f} {write:>8.3f} {write / base[2]:>6.1f}   "
              f"({files / base[0]:.1f})", flush=True)
    print(f"\n{'chars':>9} {'diff s':>8} {'ratio':>7}   (size ratio)")
    first = None
    for size in args.sizes:
        seconds = min(diff_seconds(size) for _ in range(args.runs))
        first = first or (size, seconds)
        print(f"{size:>9} {seconds:>8.3f} {seconds / first[1]:>7.1f}   ({size / first[0]:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
