"""What bridge.tokens and bridge.chunks cost: the import, the first count (it reads the vocabulary), then each prompt.

    python benchmarks/token_count.py [--data ../shared/data] [--runs 5]

The import of bridge.tokens and its first count are timed in fresh processes (best of ``--runs``, bytecode written
and reused as after ``pip install``); per-prompt costs of ``count_tokens``, ``chunk`` and ``overflows`` on the
DiffusionDB prompts in this process: one cold pass (empty word cache), then warm passes. Nothing asserts: it reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cli_startup import fresh_runs  # its folder, benchmarks/, is the first on sys.path when run as a script

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIRST_USE = """
import time
start = time.perf_counter()
import bridge.tokens
imported = time.perf_counter()
bridge.tokens.count_tokens("a castle on a hill")
print(imported - start, time.perf_counter() - imported)
"""


def first_use(runs: int) -> tuple[float, float]:
    """Best (import seconds, first-count seconds) over fresh processes."""
    results = [tuple(map(float, out.split())) for _, out in fresh_runs([sys.executable, "-c", FIRST_USE], runs)]
    return min(r[0] for r in results), min(r[1] for r in results)


def per_prompt(function, prompts: list[str]) -> float:
    start = time.perf_counter()
    for prompt in prompts:
        function(prompt)
    return (time.perf_counter() - start) / len(prompts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    path = args.data / "imagereward_diffusiondb_prompts" / "refl_prompts_dev.jsonl"
    prompts = [json.loads(line)["prompt"] for line in path.read_text(encoding="utf-8").splitlines()]

    imported, first = first_use(args.runs)
    print(f"import bridge.tokens : {imported * 1000:6.1f} ms (best of {args.runs} fresh processes)")
    print(f"first count_tokens   : {first * 1000:6.1f} ms (reads the vocabulary)")

    from bridge.chunks import chunk, overflows
    from bridge.syntax import PromptSyntaxError
    from bridge.tokens import count_tokens

    def safely(function):
        def call(prompt: str) -> None:
            try:
                function(prompt)
            except PromptSyntaxError:
                pass  # a prompt A1111 itself refuses

        return call

    count_tokens("a")
    print(f"({len(prompts)} prompts; the first pass over them is cold, the second warm)")
    timed = (("count_tokens, cold", count_tokens), ("count_tokens, warm", count_tokens), ("chunk", safely(chunk)),
             ("overflows", safely(overflows)))
    for label, function in timed:  # in this order: the cold pass must come first
        print(f"{label:<21}: {per_prompt(function, prompts) * 1e6:6.1f} µs/prompt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
