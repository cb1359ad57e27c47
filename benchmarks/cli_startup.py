"""How long one `translate-prompt "PROMPT"` takes, against a bare `python -c pass` measured in the same run.

    python benchmarks/cli_startup.py [--runs 20]

The goal (issue 3): within 4x of the bare interpreter. Both are timed as fresh processes with the same Python, the
best of N runs (the least disturbed by other load), and the ratio is printed. Nothing here asserts: it reports.

Both run as a user's machine does: bytecode is written and reused (``pip install`` compiles it, so the environment's
PYTHONDONTWRITEBYTECODE is dropped for the children and one warm-up run goes first), and the knowledge-file cache
(bridge/datafiles.py) is warm.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

PROMPT = "a castle on a hill, by greg rutkowski, <lora:detail:0.6>, 8k, trending on artstation"


def fresh_runs(command: list[str], runs: int) -> list[tuple[float, str]]:
    """Run ``command`` in ``runs`` fresh processes after one warm-up run, as on a user's machine: bytecode written and
    reused (``pip install`` compiles it, so PYTHONDONTWRITEBYTECODE is dropped for the children). Each run's wall
    seconds and standard output. benchmarks/token_count.py times its fresh processes with it too."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, check=True, capture_output=True, env=env)  # warm-up: writes the bytecode
    results = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        results.append((time.perf_counter() - start, done.stdout))
    return results


def best_of(command: list[str], runs: int) -> float:
    """The fastest of ``runs`` fresh runs (the one least disturbed by other load), in seconds."""
    return min(seconds for seconds, _ in fresh_runs(command, runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    bare = best_of([sys.executable, "-c", "pass"], args.runs)
    cli = best_of([sys.executable, "-m", "bridge", PROMPT], args.runs)
    print(f"python -c pass          : {bare * 1000:7.1f} ms (best of {args.runs})")
    print(f"translate-prompt PROMPT : {cli * 1000:7.1f} ms (best of {args.runs})")
    print(f"ratio                   : {cli / bare:7.2f}x  (goal: <= 4x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
