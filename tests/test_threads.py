"""Thread safety (issue 17): the ComfyUI node and the A1111 extension call ``bridge.translate`` from several threads.
5,000 corpus prompts translated from 8 threads must give exactly what one thread gives: prompt, negative, size,
changes and warnings, for every prompt. The threads run first, on a translator nobody has used, with the
interpreter switching threads as often as it can, so that the lazily built plan and the bounded memories
(bridge/memo.py: cleared whole when full, so often with 5,000 distinct prompts) are filled and cleared under
contention."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import bridge
from bridge.recipe import Recipe
from bridge.translation import TranslationOptions

CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpora" / "diffusiondb_prompts.jsonl"
COUNT, THREADS = 5000, 8


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:COUNT]
    assert len(lines) == COUNT
    return [json.loads(line)["prompt"] for line in lines]


def outcome(translation) -> tuple:
    """Everything a caller reads from a translation."""
    return (translation.prompt, translation.negative_prompt, translation.recipe.width, translation.recipe.height,
            [(c.rule, c.before, c.after, c.reason) for c in translation.changes], list(translation.warnings),
            list(translation.notes))


@pytest.fixture()
def busy_switching():
    """Switch threads every microsecond (CPython's default is 5 ms), so shared state is hit mid-update."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def in_threads(work, items: list) -> list:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(work, items, chunksize=7))


@pytest.mark.parametrize("target", ["sd2", "sdxl"])
def test_a_shared_rules_translator_gives_in_threads_what_it_gives_serially(prompts, busy_switching, target):
    options = TranslationOptions()
    translator = bridge.load_translator("rules", source="sd15", target=target)  # new: its plan not built yet

    threaded = in_threads(lambda prompt: outcome(translator.translate(Recipe(prompt=prompt), options)), prompts)
    serial = [outcome(translator.translate(Recipe(prompt=prompt), options)) for prompt in prompts]

    mismatches = [i for i, (a, b) in enumerate(zip(threaded, serial)) if a != b]
    assert not mismatches, f"{len(mismatches)} differ, first: prompt {mismatches[0]}: {prompts[mismatches[0]]!r}"


def test_bridge_translate_from_threads_equals_serial(prompts, busy_switching):
    def work(prompt: str) -> tuple:
        return outcome(bridge.translate(prompt, source="sd15", target="sd21", negative_prompt="lowres, (blurry)",
                                        width=512, height=768))

    sample = prompts[::2]
    threaded = in_threads(work, sample)
    serial = [work(prompt) for prompt in sample]

    assert [i for i, (a, b) in enumerate(zip(threaded, serial)) if a != b] == []
