"""How fast the rules bridge migrates prompts, and how often it leaves a prompt alone.

    python benchmarks/rules_throughput.py [--data ../shared/data] [--repeats 3] [--cli-prompts 100000]

For each corpus in the shared data (real SD1.x user prompts from DiffusionDB, PartiPrompts, DSG-1k) it prints, in one
process:

* ``first pass/s``: prompts/s of the full translation over prompts the translator has never seen, as a library is
  migrated once. Each of ``--repeats`` passes starts from nothing (a new translator, every remembered word, phrase
  and token count forgotten, the CLIP vocabulary reloaded); the median is printed, as the passes of a shared machine
  vary by several per cent.
* ``again/s``: the same prompts once more with what the first pass remembered (a library run twice, or a second
  library with the same habits).
* ``parse+render/s``: parsing and rendering alone, the least any translation has to do (the baseline, measured in the
  same run), and the ratio of the first pass to it.
* ``no-op``: the share of prompts whose positive prompt comes back byte-identical.

Then it times ``translate-prompt --input FILE --format json`` on a file of ``--cli-prompts`` prompts (the corpora
repeated) as a fresh process, start-up included, as a user runs it: from 2,000 prompts on the CLI translates in one
worker process per CPU core (``--jobs``).

Targets (issue 4): >= 5,000 prompts/s; 100,000 prompts through the CLI in < 30 s. Nothing asserts: it reports.
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def corpora(data: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    dev = data / "imagereward_diffusiondb_prompts" / "refl_prompts_dev.jsonl"
    if dev.exists():
        lines = dev.read_text(encoding="utf-8").splitlines()
        out["diffusiondb (SD1 users)"] = [p for p in (json.loads(line)["prompt"] for line in lines) if p.strip()]
    parti = data / "parti_prompts" / "PartiPrompts.tsv"
    if parti.exists():
        with parti.open(encoding="utf-8") as f:
            out["PartiPrompts"] = [row["Prompt"] for row in csv.DictReader(f, delimiter="\t") if row["Prompt"].strip()]
    dsg = data / "dsg1k_tifa160" / "dsg1k_prompts_with_scores.tsv"
    if dsg.exists():
        with dsg.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        column = next((c for c in ("text", "prompt", "Prompt") if rows and c in rows[0]), None)
        if column:
            out["DSG-1k"] = [row[column] for row in rows if row[column].strip()]
    return out


def rate(fn, prompts: list[str]) -> float:
    start = time.perf_counter()
    for prompt in prompts:
        fn(prompt)
    return len(prompts) / (time.perf_counter() - start)


def forget_everything() -> None:
    """What a fresh process has not worked out yet: every remembered word, phrase and count in the package's modules
    (the CLIP vocabulary among them)."""
    for name, module in list(sys.modules.items()):
        if name == "bridge" or name.startswith("bridge."):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--source", default="sd15")
    parser.add_argument("--target", default="sd2")
    parser.add_argument("--repeats", type=int, default=3, help="first passes per corpus (the median is printed)")
    parser.add_argument("--cli-prompts", type=int, default=100_000, help="0 skips the CLI timing")
    args = parser.parse_args(argv)

    from bridge.load import load_translator
    from bridge.syntax import parse
    from bridge.translation import TranslationOptions

    options = TranslationOptions()
    found = corpora(args.data)
    if not found:
        print(f"no corpora under {args.data}", file=sys.stderr)
        return 1
    print(f"{'corpus':<24} {'prompts':>8} {'first pass/s':>13} {'again/s':>8} {'parse+render/s':>15} {'ratio':>6} "
          f"{'no-op':>7}")
    for name, prompts in found.items():
        firsts = []
        for _ in range(max(1, args.repeats)):
            forget_everything()
            translator = load_translator("rules", source=args.source, target=args.target)
            translator.plan(options)  # prepared once per set of options, before any prompt
            firsts.append(rate(functools.partial(translator.translate, options=options), prompts))
        first = statistics.median(firsts)
        again = rate(functools.partial(translator.translate, options=options), prompts)
        baseline = rate(lambda p: str(parse(p)), prompts)
        noop = sum(translator.translate(p, options).prompt == p for p in prompts) / len(prompts)
        print(f"{name:<24} {len(prompts):>8} {first:>13,.0f} {again:>8,.0f} {baseline:>15,.0f} "
              f"{first / baseline:>6.2f} {noop:>7.1%}")
    print("target: >= 5,000 prompts/s")

    if args.cli_prompts:
        pool = [p.replace("\n", " ") for p in itertools.chain.from_iterable(found.values())]
        lines = list(itertools.islice(itertools.cycle(pool), args.cli_prompts))
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "prompts.txt", Path(tmp) / "out.jsonl"
            src.write_text("\n".join(lines) + "\n", encoding="utf-8")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bridge", "--input", str(src), "--format", "json", "--output",
                            str(dst), "--from", args.source, "--to", args.target],
                           check=True, stderr=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            written = sum(1 for _ in dst.open(encoding="utf-8"))
        print(f"translate-prompt --input ({len(lines):,} prompts) --format json: {seconds:.1f} s "
              f"({written / seconds:,.0f} prompts/s; target < 30 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
