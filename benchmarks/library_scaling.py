"""Issue 17's end-to-end figure: translate-prompt (a subprocess, as a user runs it) migrating folders of small files
and one long .txt, each timed whole (start-up, reading, translating, writing) with its ratio to the smallest run.

    python benchmarks/library_scaling.py [--files 1000 10000] [--lines 100000] [--png] [--jobs N]

Each folder holds one-prompt files in 20 subfolders (.txt, or with --png A1111 PNGs whose "parameters" infotext
holds the prompt); prompts are distinct corpus prompts with a number, so nothing is remembered across files.
Linear time shows as a time ratio close to the size ratio: 10x the files, about 10x the seconds (start-up is a
fixed cost, so the ratio comes out a little under). Before issue 17 the folder plan alone was quadratic: 1,000
files took 131 s and 10,000 hours. Goal: 10,000 files in under a minute on the 2-core development machine. Nothing
here asserts: it reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "data" / "corpora" / "diffusiondb_prompts.jsonl"
INFOTEXT = "{prompt}\nNegative prompt: lowres\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: {seed}, Size: 512x512"


def prompts(count: int) -> list[str]:
    """`count` distinct prompts: the corpus in turn, each with its number."""
    corpus = [json.loads(line)["prompt"].replace("\n", " ") for line in CORPUS.read_text("utf-8").splitlines()]
    return [f"{corpus[i % len(corpus)]}, number {i}" for i in range(count)]


def png(text: str) -> bytes:
    """A 1x1 grey PNG with `text` in its "parameters" tEXt chunk (built with the stdlib)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", b"parameters\0" + text.encode("latin-1",
            "replace")) + chunk(b"IDAT", zlib.compress(b"\0\x80")) + chunk(b"IEND", b""))


def make_folder(root: Path, files: int, as_png: bool) -> Path:
    folder = root / f"in{files}"
    for i, prompt in enumerate(prompts(files)):
        sub = folder / f"s{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        if as_png:
            (sub / f"{i}.png").write_bytes(png(INFOTEXT.format(prompt=prompt, seed=i)))
        else:
            (sub / f"{i}.txt").write_text(prompt + "\n", encoding="utf-8")
    return folder


def migrate(source: Path, output: Path, jobs: int | None) -> float:
    """Seconds translate-prompt takes to migrate `source` into `output` (a new folder or file)."""
    command = [sys.executable, "-m", "bridge", "--input", str(source), "--output", str(output), "--quiet"]
    command += ["--jobs", str(jobs)] if jobs else []
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"translate-prompt failed on {source} ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--lines", type=int, default=100000, help="lines of the one .txt (0: none)")
    parser.add_argument("--png", action="store_true", help="folders of PNGs with infotext instead of .txt files")
    parser.add_argument("--jobs", type=int, default=None, help="translate-prompt --jobs (default: its own choice)")
    args = parser.parse_args(argv)
    kind = "PNG" if args.png else ".txt"
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for files in sorted(args.files):
            folder = make_folder(root, files, args.png)
            rows.append((f"folder of {kind} files", files, migrate(folder, root / f"out{files}", args.jobs)))
        if args.lines:
            library = root / "library.txt"
            library.write_text("".join(f"{p}\n" for p in prompts(args.lines)), encoding="utf-8")
            rows.append((".txt lines", args.lines, migrate(library, root / "library-sd2.txt", args.jobs)))
    base_size, base_seconds = rows[0][1], rows[0][2]
    print(f"{'library':<22} {'items':>8} {'seconds':>9} {'items/s':>9} {'size ratio':>11} {'time ratio':>11}")
    for label, size, seconds in rows:
        print(f"{label:<22} {size:>8,} {seconds:>9.2f} {size / seconds:>9,.0f} {size / base_size:>11.1f} "
              f"{seconds / base_seconds:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
