"""Shared fixtures: tiny random models from `bridge.testing`, built once per test session (no hub, CPU, seconds).

The session-scoped models are shared by every test that asks for them: treat them as read-only. A test that changes a
model (moves it, changes its memory format, compiles it) builds its own with `bridge.testing`.
"""

import csv
import json
import os
from pathlib import Path

import pytest

# Tiny models run fastest on one CPU thread (starting threads outweighs their work), and several threads on a shared
# 2-core machine are much slower still: a tiny evaluation took 1.5 s with one thread and 29 s with two under load.
# Set before torch is imported (torch reads it then); an explicit OMP_NUM_THREADS wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def torch_one_thread():
    """torch, on one CPU thread (also when something imported torch before this file set OMP_NUM_THREADS)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return torch


@pytest.fixture(scope="session")
def tiny_sd1(torch_one_thread):
    """A tiny SD 1-style StableDiffusionPipeline (last-layer CLIP, epsilon); see bridge.testing."""
    from bridge.testing import tiny_sd_pipeline

    return tiny_sd_pipeline("sd1")


@pytest.fixture(scope="session")
def tiny_sd2(torch_one_thread):
    """A tiny SD 2-style StableDiffusionPipeline (OpenCLIP-style penultimate layer, v-prediction)."""
    from bridge.testing import tiny_sd_pipeline

    return tiny_sd_pipeline("sd2")


@pytest.fixture(scope="session")
def tiny_clip(torch_one_thread):
    """A tiny open_clip CLIP: (model, preprocess, tokenizer)."""
    from bridge.testing import tiny_open_clip

    return tiny_open_clip()


CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora"  # shipped copies of the shared corpora


@pytest.fixture(scope="session")
def real_prompts() -> list[str]:
    """Every prompt of the shipped DiffusionDB and PartiPrompts copies (tokens and chunks are checked on them)."""
    prompts = [json.loads(line)["prompt"]
               for line in (CORPORA / "diffusiondb_prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    with (CORPORA / "parti_prompts.tsv").open(encoding="utf-8", newline="") as f:
        prompts += [row["Prompt"] for row in csv.DictReader(f, delimiter="\t")]
    return prompts
