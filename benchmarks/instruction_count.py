"""Instructions per first-pass prompt of the rules bridge, for this checkout and other trees: a measure that does not
move from run to run (wall times on a shared VM move by 10-40%), for comparing two trees of the rules path.

    python benchmarks/instruction_count.py [--tree DIR ...] [--data ../shared/data] [--prompts N]

Needs valgrind (``apt install valgrind``). For each tree (default: this checkout; a git worktree of another commit
works, such as ``git worktree add /tmp/base eb9d7ff``), ``valgrind --tool=cachegrind --cache-sim=no`` counts the
instructions of a process that does what ``benchmarks/rules_throughput.py``'s first pass does: every memory of the
package forgotten, a new translator, its plan, then the DiffusionDB prompts translated once with one
``TranslationOptions``. The same process without the pass is counted too and taken away, so what is left is the
pass: per prompt, and as a ratio to the first tree. One uncounted run goes first (a fresh checkout writes its
knowledge-file cache then), and before it forgets, each process translates 300 prompts, so that imports and compiling
are not counted (``rules_throughput.py``'s median of three passes has them done as well).
The interpreter is the one running this script (not a pyenv shim: that is a shell script). Nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"

# Run in the tree under test (its bridge first on sys.path): argv = data folder, prompts in the pass (0: none).
PASS = """
import sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from rules_throughput import corpora, forget_everything
try:
    from bridge.load import load_translator
except ImportError:  # trees from before bridge/load.py
    from bridge.translation import load_translator
from bridge.translation import TranslationOptions

prompts = corpora(Path(sys.argv[1]))["diffusiondb (SD1 users)"]
options = TranslationOptions()
translator = load_translator("rules", source="sd15", target="sd2")
translator.plan(options)
for prompt in prompts[:300]:
    translator.translate(prompt, options)
forget_everything()
translator = load_translator("rules", source="sd15", target="sd2")
translator.plan(options)
for prompt in prompts[:int(sys.argv[2])]:
    translator.translate(prompt, options)
"""


def instructions(tree: Path, data: Path, prompts: int, *, count: bool = True) -> int:
    """The instructions of one process that runs PASS in ``tree`` (without ``count``: run once, not counted, 0)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"] if count else []
    done = subprocess.run([*valgrind, sys.executable, "-c", PASS, str(data), str(prompts), str(REPO / "benchmarks")],
                          env=env, cwd=tree, capture_output=True, text=True, check=True)
    if not count:
        return 0
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind gave no instruction count for {tree}:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to count (repeat; default: this one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--prompts", type=int, default=100_000, help="at most this many DiffusionDB prompts")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from rules_throughput import corpora

    found = corpora(args.data).get("diffusiondb (SD1 users)")
    if not found:
        print(f"no DiffusionDB prompts under {args.data}", file=sys.stderr)
        return 1
    n = min(args.prompts, len(found))
    first = None
    print(f"{'tree':<40} {'instructions a prompt':>22} {'vs the first':>13}")
    for tree in args.tree or [REPO]:
        instructions(tree, args.data, 0, count=False)  # a fresh tree writes its knowledge cache: not in the count
        per_prompt = (instructions(tree, args.data, n) - instructions(tree, args.data, 0)) / n
        first = first or per_prompt
        print(f"{tree!s:<40} {per_prompt:>22,.0f} {first / per_prompt:>12.3f}x")
    print(f"({n:,} prompts; the ratio is the first tree's count over each one's: a speed, as rules_throughput.py's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
