"""bridge.search, translate by search: the best is the argmax of the scores, the identity is always a candidate, the
render cache is reused (renders counted) and evicts its oldest entries under the cap, the report is written, and a
real search without a GPU is a clear error. Tiny random models on the CPU, or the simulated world's renderer."""

import json
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("open_clip")

from bridge.imaging.score import ScoreBreakdown, ScoreConfig
from bridge.recipe import Recipe
from bridge.search import RenderCache, default_cache_dir, search, search_all
from bridge.workflows.common import UsageError, load_scorer
from bridge.workflows.pairs import IDENTITY, RULES_VARIANTS
from bridge.workflows.simulated import SimulatedRenderer, decode_image

PROMPT = "a castle on a hill, by greg rutkowski, 8k, (masterpiece:1.3), trending on artstation"


class CountingRenderer:
    """A renderer that counts the images it is asked for."""

    def __init__(self, renderer):
        self.renderer, self.requests = renderer, []

    def render(self, requests, batch_size=4):
        self.requests += list(requests)
        return self.renderer.render(requests, batch_size=batch_size)


class PreferringScorer:
    """Scores the simulated renderer's images: 1.0 for an image of ``preferred``, 0.5 for the others."""

    config = ScoreConfig(model="preferring", pretrained=None)

    def __init__(self, preferred):
        self.preferred = preferred

    def score(self, source_prompts, images, sd1_images=None):
        return [ScoreBreakdown(total=1.0 if decode_image(image)["prompt"] == self.preferred else 0.5)
                for image in images]


@pytest.fixture(scope="module")
def tiny(torch_one_thread):
    """A tiny SD2-style renderer and the tiny data-building scorer, shared by the module (read-only)."""
    from bridge.imaging.render import Renderer
    from bridge.testing import tiny_sd_pipeline

    return Renderer(tiny_sd_pipeline("sd2", seed=0), "sd2", progress=False), load_scorer(ScoreConfig(), mode="tiny")


def simulated_search(preferred, tmp_path, **kwargs):
    return search_all(PROMPT, renderer=SimulatedRenderer(), scorer=PreferringScorer(preferred), tiny=True,
                      cache_dir=tmp_path / "cache", **kwargs)


def test_the_best_candidate_is_the_argmax_of_the_mean_scores(tiny, tmp_path):
    renderer, scorer = tiny
    found = search_all(PROMPT, candidates=5, seeds=(0, 1), renderer=renderer, scorer=scorer, tiny=True,
                       cache_dir=tmp_path)
    means = [sum(s["total"] for s in c.scores) / len(c.scores) for c in found.scored]
    assert [len(c.scores) for c in found.scored] == [2] * len(found.scored)
    assert found.best is found.scored[means.index(max(means))]
    assert found.translation.prompt == found.best.candidate.prompt
    assert found.translation.negative_prompt == found.best.candidate.negative_prompt
    change = found.translation.changes[0]
    assert change.rule == "search" and change.reason.startswith(f"chosen by search: {found.best.candidate.name} ")
    assert f"{found.best.mean:.4f}" in change.reason


@pytest.mark.parametrize("winner", ["rules", "rules:keep-artists", "rules:keep-magic"])
def test_search_returns_the_candidate_the_scorer_prefers(winner, tmp_path):
    everything = simulated_search(None, tmp_path, candidates=len(RULES_VARIANTS) + 1)
    preferred = next(s.candidate for s in everything.scored if s.candidate.name == winner)
    found = simulated_search(preferred.prompt, tmp_path, candidates=len(RULES_VARIANTS) + 1)
    assert found.best.candidate.name == winner
    assert found.translation.prompt == preferred.prompt
    # a rules variant comes back as that variant's own translation of the recipe: its changes, the target's size
    rules = [c.rule for c in found.translation.changes]
    assert rules[0] == "search" and set(preferred.origin["rules"]) <= set(rules[1:])
    assert found.translation.recipe.width == 768 and "size" in rules


def test_the_identity_wins_ties_and_keeps_the_target_settings(tmp_path):
    found = simulated_search(None, tmp_path, candidates=4)
    assert found.best.candidate.name == IDENTITY
    assert found.translation.prompt == PROMPT
    assert (found.translation.recipe.width, found.translation.recipe.height) == (768, 768)
    assert [c.rule for c in found.translation.changes] == ["search"]


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 20])
def test_the_identity_is_always_a_candidate_and_there_are_at_most_n(limit, tmp_path):
    found = simulated_search(None, tmp_path, candidates=limit)
    names = [s.candidate.name for s in found.scored]
    assert names[0] == IDENTITY and names.count(IDENTITY) == 1
    assert 1 <= len(names) <= limit
    if limit > 1:
        assert names[1] == "rules"
    if limit == 1:
        assert found.translation.prompt == PROMPT


def test_a_repeated_search_renders_nothing_twice(tiny, tmp_path):
    renderer, scorer = tiny
    counting = CountingRenderer(renderer)
    first = search_all(PROMPT, candidates=4, seeds=(0, 1), renderer=counting, scorer=scorer, tiny=True,
                       cache_dir=tmp_path)
    assert len(counting.requests) == len(first.scored) * 2 == first.rendered
    again = search_all(PROMPT, candidates=4, seeds=(0, 1), renderer=counting, scorer=scorer, tiny=True,
                       cache_dir=tmp_path)
    assert len(counting.requests) == len(first.scored) * 2 and again.rendered == 0
    assert [s.scores for s in again.scored] == [s.scores for s in first.scored]  # PNG is lossless: same scores
    more = search_all(PROMPT, candidates=4, seeds=(0, 1, 2), renderer=counting, scorer=scorer, tiny=True,
                      cache_dir=tmp_path)
    assert more.rendered == len(first.scored)  # only seed 2 is new
    assert {r.seed for r in counting.requests[len(first.scored) * 2:]} == {2}


def test_the_source_render_is_scored_against_and_cached_too(tiny, tmp_path):
    renderer, scorer = tiny
    source = CountingRenderer(SimulatedRenderer())
    for _ in range(2):
        found = search_all(PROMPT, candidates=2, seeds=(0, 1), renderer=renderer, scorer=scorer, tiny=True,
                           cache_dir=tmp_path, source_weights="my-sd15", sd1_renderer=source)
        assert all(s["sd1_image"] is not None for c in found.scored for s in c.scores)
    assert [r.seed for r in source.requests] == [0, 1] and {r.prompt for r in source.requests} == {PROMPT}


def test_the_cache_evicts_the_oldest_entries_past_its_limit(tmp_path):
    [result] = SimulatedRenderer().render([Recipe(prompt="a fox").prompt])
    cache = RenderCache(tmp_path, limit_bytes=10**9)
    for k in range(5):
        cache.put(f"key{k}", result)
        for suffix in ("png", "json"):  # written a minute apart, key0 first
            os.utime(cache.folder / f"key{k}.{suffix}", ns=(k * 60 * 10**9, k * 60 * 10**9))
    entry = cache.size_bytes() // 5
    cache.limit_bytes = 3 * entry
    assert cache.evict() == 2
    assert cache.get("key0") is None and cache.get("key1") is None
    assert all(cache.get(f"key{k}") is not None for k in (2, 3, 4))
    assert cache.size_bytes() <= cache.limit_bytes
    assert cache.evict() == 0


def test_a_search_keeps_its_cache_under_the_limit(tmp_path):
    found = simulated_search(None, tmp_path, candidates=4, cache_limit_bytes=0)
    assert found.rendered == len(found.scored) * 2
    assert RenderCache(tmp_path / "cache").size_bytes() == 0


def test_the_default_cache_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "prompt-bridge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "prompt-bridge"


def test_the_report_holds_every_candidate_its_images_and_scores(tiny, tmp_path):
    renderer, scorer = tiny
    found = search_all(PROMPT, candidates=4, seeds=(3, 5), renderer=renderer, scorer=scorer, tiny=True,
                       cache_dir=tmp_path / "cache", report_dir=tmp_path / "report")
    blob = json.loads((tmp_path / "report" / "scores.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in blob["candidates"]] == [s.candidate.name for s in found.scored]
    assert [c["name"] for c in blob["candidates"] if c["chosen"]] == [found.best.candidate.name]
    assert blob["seeds"] == [3, 5] and blob["source_prompt"] == PROMPT
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    for entry, scored in zip(blob["candidates"], found.scored, strict=True):
        assert entry["mean"] == pytest.approx(scored.mean)
        assert [s["total"] for s in entry["scores"]] == [s["total"] for s in scored.scores]
        assert len(entry["images"]) == 2
        for image in entry["images"]:
            assert (tmp_path / "report" / image).is_file() and f'src="{image}"' in page
        assert f"<span></span>{entry['name']}</th>" in page


def test_without_a_gpu_a_real_search_is_a_clear_error(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UsageError, match=r"needs a GPU.*tiny=True \(--tiny\).*device='cpu' \(--device cpu\)"):
        search(PROMPT, cache_dir=tmp_path)
    # device="cpu" passes the check: it goes on to load the weights (here a folder that does not exist)
    with pytest.raises(ValueError, match="no-such-weights") as raised:
        search(PROMPT, cache_dir=tmp_path, device="cpu", target_weights=str(tmp_path / "no-such-weights"))
    assert "GPU" not in str(raised.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"candidates": 0}, "candidates >= 1"), ({"seeds": ()}, "seeds"), ({"seeds": (1, 1)}, "seeds"),
    ({"seeds": (-1,)}, "seeds"), ({"target": "sd9"}, "sd9"),
])
def test_bad_arguments_are_one_line_errors(kwargs, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        simulated_search(None, tmp_path, **kwargs)


def test_translate_with_search_n_is_the_search(tmp_path):
    """bridge.translate(..., search=N): the API path of the search (tiny models end to end), with the same winner as
    search() and a clear error for the rules-only options it cannot honour."""
    import bridge

    t = bridge.translate(PROMPT, target="sd2", search=3, search_seeds=(0,), tiny=True, cache_dir=tmp_path / "cache",
                         search_report=tmp_path / "report")
    direct = search(PROMPT, target="sd2", candidates=3, seeds=(0,), tiny=True, cache_dir=tmp_path / "cache")
    assert t.changes[0].rule == "search" and t.changes[0].reason.startswith("chosen by search")
    assert (t.prompt, t.negative_prompt) == (direct.prompt, direct.negative_prompt)
    assert (tmp_path / "report" / "index.html").is_file()
    with pytest.raises(ValueError, match="search tries the shipped rules' variants; it takes no knowledge, disable"):
        bridge.translate(PROMPT, search=3, tiny=True, knowledge="mine.toml", disable=["artist.*"])


def test_translate_prompt_search_loads_the_models_once_and_reports_each_prompt(tmp_path, monkeypatch):
    """translate-prompt --search N --tiny: each prompt's answer is search()'s, the models load once for all the
    prompts, and each prompt's report goes to its own folder (DIR/1, DIR/2) in input order."""
    import io

    from bridge import cli
    from bridge.workflows import common

    loads = []
    load_renderer = common.load_renderer
    monkeypatch.setattr(common, "load_renderer", lambda *a, **k: loads.append(a) or load_renderer(*a, **k))
    prompts = [PROMPT, "portrait of a knight, ((masterpiece)), trending on artstation"]
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--search", "3", "--search-seeds", "0", "--tiny", "--cache-dir", str(tmp_path / "cache"),
                     "--search-report", str(tmp_path / "report"), "--format", "json", *prompts], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["source_prompt"] for r in records] == prompts and len(loads) == 1
    for i, (record, prompt) in enumerate(zip(records, prompts, strict=True), 1):
        direct = search(prompt, candidates=3, seeds=(0,), tiny=True, cache_dir=tmp_path / "cache")
        assert record["changes"][0]["rule"] == "search" and record["prompt"] == direct.prompt
        scores = json.loads((tmp_path / "report" / str(i) / "scores.json").read_text())
        assert (tmp_path / "report" / str(i) / "index.html").is_file() and prompt in json.dumps(scores)


@pytest.mark.parametrize(("argv", "message"), [
    (["--tiny"], "--tiny applies to translate by search: add --search N"),
    (["--search-seeds", "0", "1", "--cache-dir", "c"], "--search-seeds, --cache-dir apply to translate by search"),
    (["--search", "0"], "--search needs a whole number of candidates >= 1, not '0'"),
    (["--search", "two"], "--search needs a whole number of candidates >= 1, not 'two'"),
    (["--search", "2", "--search-seeds", "x"], "a seed is a whole number >= 0, not 'x'"),
    (["--search", "2", "--search-seeds", "1", "1", "--tiny"], "seeds must be one or more different integers"),
    (["--search", "2", "--knowledge", "mine.toml"], "it takes no --knowledge"),
    (["--search", "2", "--disable-rule", "artist.*", "--keep-networks"], "it takes no --disable-rule, --keep-networks"),
    (["--search", "2", "--to", "sd9", "--tiny"], "sd9"),
])
def test_translate_prompt_search_flags_are_checked(argv, message):
    import io

    from bridge import cli

    err = io.StringIO()
    assert cli.main([*argv, "a castle"], stdout=io.StringIO(), stderr=err) == 2
    assert message in err.getvalue() and len(err.getvalue().splitlines()) == 1, err.getvalue()


def test_translate_prompt_search_without_a_gpu_names_tiny_and_device(monkeypatch):
    import io

    import torch

    from bridge import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    err = io.StringIO()
    assert cli.main(["--search", "4", "a castle"], stdout=io.StringIO(), stderr=err) == 2
    assert "needs a GPU" in err.getvalue() and "--tiny" in err.getvalue() and "--device cpu" in err.getvalue()
