"""What data building costs besides the GPU: candidates/s through data/build_pairs.py, instant renderer and scorer.

    python benchmarks/data_overhead.py [--prompts 2000] [--seeds 0 1]

Runs the whole build (read and filter the DiffusionDB corpus, draw --prompts, make every rules-bridge variant, render,
score, best-of-N, write the Parquet shards, merge, the dataset card) on one CPU core, with a renderer that returns one
shared tiny image and a scorer that hashes the prompt. What is left is the pipeline's own overhead. It prints
candidates/s (target >= 500 on one core) and, as the baseline in the same run, the same fake renderer and scorer
called alone on the same number of images; then how many H100s one core keeps busy at build_pairs' default
6 images/s per GPU. Nothing asserts: it reports.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bridge.imaging.render import RenderRequest, RenderResult
from bridge.imaging.score import CombinedScorer, ScoreBreakdown, ScoreConfig

REPO = Path(__file__).resolve().parents[1]


class InstantRenderer:
    """Renderer's interface, no work: one shared 8x8 image for every request."""

    def __init__(self):
        from PIL import Image

        self.image = Image.new("RGB", (8, 8))

    def render(self, requests: list[RenderRequest], batch_size: int = 8) -> list[RenderResult]:
        return [RenderResult(self.image, r.seed, r.prompt, r.negative_prompt, {"model": "instant"}) for r in requests]


class InstantScorer:
    """CombinedScorer's interface, no work: a score from a hash of the source prompt and the image's position."""

    config = ScoreConfig(model="instant", pretrained=None)

    def score(self, source_prompts: list[str], images: list, sd1_images: list | None = None) -> list[ScoreBreakdown]:
        out = []
        for i, source in enumerate(source_prompts):
            value = hashlib.sha256(f"{source}{i}".encode()).digest()[0] / 255
            signals = {"source_text_image": value, "sd1_image": None, "aesthetic": None}
            out.append(ScoreBreakdown(CombinedScorer.combine(self.config, signals), **signals))
        return out


def load_build_pairs():
    spec = importlib.util.spec_from_file_location("build_pairs_script", REPO / "data" / "build_pairs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=2000, help="DiffusionDB prompts drawn")
    parser.add_argument("--seeds", nargs="+", default=["0", "1"], help="render seeds per candidate")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    build_pairs = load_build_pairs()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pairs"
        options = build_pairs.parse_args(["--simulated", "--corpus", "diffusiondb", "--limit", str(args.prompts),
                                          "--seeds", *args.seeds, "--out", str(out)])
        started = time.perf_counter()
        result = build_pairs.build(options, renderer=InstantRenderer(), scorer=InstantScorer())
        seconds = time.perf_counter() - started
    candidates, images = result["candidates"], result["rendered"]

    started = time.perf_counter()
    renderer, scorer = InstantRenderer(), InstantScorer()
    done = 0
    while done < images:
        batch = [RenderRequest("a castle on a hill, 8k", seed=k % 2) for k in range(min(8, images - done))]
        scorer.score([r.prompt for r in batch], [r.image for r in renderer.render(batch)])
        done += len(batch)
    baseline = time.perf_counter() - started

    per_second = candidates / seconds
    gpu_candidates = build_pairs.IMAGES_PER_SECOND / len(args.seeds)
    print(json.dumps({"prompts": result["prompts"], "candidates": candidates, "images": images,
                      "seconds": round(seconds, 2)}))
    print(f"pipeline: {per_second:,.0f} candidates/s ({images / seconds:,.0f} images/s) on one core "
          f"(target >= 500 candidates/s)")
    print(f"baseline, the instant renderer and scorer alone: {images / baseline:,.0f} images/s; "
          f"the pipeline's own work is {1 - baseline / seconds:.0%} of its time")
    print(f"one core keeps {per_second / gpu_candidates:,.0f} H100s busy ({gpu_candidates:g} candidates/s per GPU at "
          f"{build_pairs.IMAGES_PER_SECOND:g} images/s and {len(args.seeds)} seeds)")


if __name__ == "__main__":
    main()
