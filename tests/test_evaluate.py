"""eval/evaluate.py end to end on tiny models (one shared run), its resume after a kill, and the report's statistics."""

import csv
import json
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("diffusers")

from script_loader import load_script

from bridge.recipe import Recipe
from bridge.workflows.eval_report import bootstrap_ci, paired_outcomes, paired_win_rate, word_diff_html

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1)


evaluate = load_script("evaluate_script", REPO / "eval" / "evaluate.py")
N_PROMPTS = len(evaluate.TINY_PROMPTS)
REAL_LOAD_RENDERER = evaluate.load_renderer
TRANSLATORS = ("identity", "rules")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny evaluation shared by the tests below: (output folder, CPU seconds it took).

    CPU time rather than wall time, so other work on a shared machine does not make the time check flaky."""
    out = tmp_path_factory.mktemp("evaluate") / "run"
    started = time.process_time()
    assert evaluate.main(["--tiny", "--out", str(out)]) == 0
    return out, time.process_time() - started


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "rows.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_tiny_run_is_fast(tiny_run):
    assert tiny_run[1] <= 30


def test_tiny_run_for_an_sdxl_target(tiny_run, tmp_path):
    out = tmp_path / "run-sdxl"
    assert evaluate.main(["--tiny", "--target", "sdxl", "--limit", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["target"], results["model"], results["prompts"]) == ("sdxl", "tiny-sdxl-seed0", 2)
    rows = read_rows(out)
    assert len(rows) == 2 * len(SEEDS) * len(TRANSLATORS)
    assert all((out / row["image"]).is_file() and -1 <= float(row["score"]) <= 1 for row in rows)


def test_results_json_has_every_number_in_range(tiny_run):
    out, _ = tiny_run
    results = json.loads((out / "results.json").read_text())
    assert {"source", "target", "model", "scorer", "baseline", "seeds", "prompts", "translators", "skipped",
            "renders"} <= set(results)
    assert results["prompts"] == N_PROMPTS and results["seeds"] == list(SEEDS)
    assert results["scorer"]["sd1_image_weight"] == 0.0  # evaluation scores source prompt <-> image only
    assert tuple(results["translators"]) == TRANSLATORS
    for name, r in results["translators"].items():
        assert -1.0 <= r["mean_score"] <= 1.0
        assert 0.0 <= r["noop_rate"] <= 1.0
        assert 0 <= r["token_overflows"] <= N_PROMPTS
        assert r["rows"] == N_PROMPTS * len(SEEDS)
        if name == "identity":
            assert r["win_rate"] is None and r["noop_rate"] == 1.0
            assert r["token_overflows"] >= 1  # the long built-in prompt is over 75 tokens
        else:
            low, high = r["win_rate_ci"]
            assert 0.0 <= low <= r["win_rate"] <= high <= 1.0
            assert 0.0 <= r["tie_rate"] <= 1.0
    rows = read_rows(out)
    assert results["renders"]["rendered"] == len({row["image"] for row in rows})
    config = json.loads((out / "config.json").read_text())
    assert config["prompts"] == evaluate.TINY_PROMPTS and config["args"]["tiny"] is True


def test_rows_csv_has_every_prompt_translator_and_seed(tiny_run):
    out, _ = tiny_run
    rows = read_rows(out)
    assert len(rows) == N_PROMPTS * len(TRANSLATORS) * len(SEEDS)
    seen = {(row["prompt"], row["translator"], int(row["seed"])) for row in rows}
    assert seen == {(p, t, s) for p in evaluate.TINY_PROMPTS for t in TRANSLATORS for s in SEEDS}
    for row in rows:
        assert (out / row["image"]).is_file()
        assert -1.0 <= float(row["score"]) <= 1.0
        if row["translator"] == "identity":
            assert row["translated_prompt"] == row["prompt"] and row["negative_prompt"] == ""
        else:
            assert row["negative_prompt"]  # the rules bridge always adds an SD2 negative prompt
        assert (row["width"], row["height"], row["steps"]) == ("32", "32", "2")  # --tiny forces them for all
    # the two seeds of one prompt are different images; so are identity's and rules' for one seed
    first = [row["image"] for row in rows if row["prompt"] == evaluate.TINY_PROMPTS[0]]
    assert len(set(first)) == len(TRANSLATORS) * len(SEEDS)


class ReportParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images, self.svgs, self.sources = 0, [], [], []
        self._in_source = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "tr" and "prompt-row" in classes:
            self.rows += 1
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "svg":
            self.svgs.append(attrs.get("class"))
        if tag == "div" and "p" in classes:
            self._in_source = True

    def handle_data(self, data):
        if self._in_source:
            self.sources.append(data)
            self._in_source = False


def test_report_html_shows_every_prompt_image_and_plot(tiny_run):
    out, _ = tiny_run
    parser = ReportParser()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    assert parser.rows == N_PROMPTS
    assert parser.sources == evaluate.TINY_PROMPTS
    rows = read_rows(out)
    assert sorted(parser.images) == sorted(row["image"] for row in rows)
    assert all((out / src).is_file() for src in parser.images)
    assert parser.svgs.count("hist") == len(TRANSLATORS) and parser.svgs.count("winrate") == 1


class CountingRenderer:
    """Wraps the real renderer: records every request rendered and, optionally, is 'killed' after some images."""

    def __init__(self, renderer, kill_after=None):
        self.renderer, self.kill_after, self.rendered = renderer, kill_after, []

    def render(self, requests, batch_size=4):
        if self.kill_after is not None and len(self.rendered) >= self.kill_after:
            raise KeyboardInterrupt
        results = self.renderer.render(requests, batch_size=batch_size)
        self.rendered += [(r.prompt, r.negative_prompt, r.seed) for r in requests]
        return results


def run_with(monkeypatch, out, renderer_wrapper, *extra):
    def patched(args):
        renderer_wrapper.renderer = REAL_LOAD_RENDERER(args)
        return renderer_wrapper

    monkeypatch.setattr(evaluate, "load_renderer", patched)
    return evaluate.main(["--tiny", "--out", str(out), "--batch-size", "1", *extra])


def test_a_killed_run_resumes_without_rendering_anything_twice(tiny_run, tmp_path, monkeypatch):
    original, _ = tiny_run
    out = tmp_path / "resumed"
    shutil.copytree(original, out)
    for name in ("results.json", "report.html", "rows.csv"):
        (out / name).unlink()
    all_images = sorted((out / "images").glob("*.png"))
    deleted = all_images[:3]
    for path in deleted:
        path.unlink()

    killed = CountingRenderer(None, kill_after=1)
    assert run_with(monkeypatch, out, killed) == 130
    assert len(killed.rendered) == 1
    assert not (out / "results.json").exists()
    assert len(list((out / "images").glob("*.png"))) == len(all_images) - 3 + 1
    assert not list((out / "images").glob(".*"))  # written atomically: no temporary file left behind

    resumed = CountingRenderer(None)
    assert run_with(monkeypatch, out, resumed) == 0
    assert len(resumed.rendered) == 2
    assert not set(killed.rendered) & set(resumed.rendered)  # no image rendered twice
    assert all(path.is_file() for path in deleted)
    before = {(r["prompt"], r["translator"], r["seed"]): float(r["score"]) for r in read_rows(original)}
    after = {(r["prompt"], r["translator"], r["seed"]): float(r["score"]) for r in read_rows(out)}
    assert after == pytest.approx(before, abs=1e-3)

    again = CountingRenderer(None)
    (out / "results.json").unlink()
    assert run_with(monkeypatch, out, again) == 0
    assert again.rendered == [] and again.renderer is None  # nothing to render: the pipeline is not even loaded
    assert json.loads((out / "results.json").read_text())["renders"]["rendered"] == 0


# ---- the pieces


def test_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    cases = [
        (["--seeds", "0"], "--seeds needs at least 2 different seeds"),
        (["--seeds", "0", "0", "1"], "--seeds must be different integers >= 0 but are [0, 0, 1]"),
        (["--batch-size", "0"], "--batch-size has to be at least 1 but is 0"),
        (["--target", "sd9"], "--target: unknown model 'sd9'; known models:"),
        (["--prompts", "nope"], "is neither a file nor a corpus; corpora: parti, diffusiondb"),
        (["--translators", "rules"], "must include the baseline 'identity'"),
        (["--size", "30"], "--size has to be divisible by 8 but is 30"),
        (["--source", "sdxl", "--target", "sd21"], "no bridge from 'sdxl' to 'sd21'"),
    ]
    for extra, message in cases:
        assert evaluate.main(["--tiny", "--out", str(tmp_path / "x"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err


def test_prompts_from_files_and_corpora(tmp_path):
    text = tmp_path / "prompts.txt"
    text.write_text("a cat\n\na dog\na cat\n")
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text('{"prompt": "a bird"}\n{"prompt": "a fish"}\n')

    def prompts(*extra):
        return evaluate.load_prompts(evaluate.parse_args(["--out", str(tmp_path), *extra]))

    assert prompts("--prompts", str(text), "--limit", "10") == ["a cat", "a dog"]  # blanks and duplicates dropped
    assert prompts("--prompts", str(jsonl)) == ["a bird", "a fish"]
    drawn = prompts("--prompts", "parti", "--limit", "5", "--sample-seed", "3")
    assert len(drawn) == 5 and drawn == prompts("--prompts", "parti", "--limit", "5", "--sample-seed", "3")
    assert drawn != prompts("--prompts", "parti", "--limit", "5", "--sample-seed", "4")
    assert len(prompts("--prompts", "diffusiondb", "--limit", "3")) == 3


def test_a_learned_bridge_that_fails_to_load_is_skipped(tmp_path, capsys):
    args = evaluate.parse_args(["--tiny", "--out", str(tmp_path), "--learned", str(tmp_path / "missing-bridge")])
    translators, skipped = evaluate.load_translators(args)
    assert set(translators) == {"identity", "rules"}
    assert "cannot load learned bridge" in skipped["learned"]
    assert "skipping learned" in capsys.readouterr().err


def test_token_overflow_counts_running_text_over_75_tokens():
    assert not evaluate.overflows_chunk("a red castle")
    assert evaluate.overflows_chunk(evaluate.TINY_PROMPTS[-1])
    assert evaluate.overflows_chunk("word " * 76)
    assert not evaluate.overflows_chunk("word " * 70 + "BREAK " + "word " * 70)  # BREAK starts a chunk on purpose
    assert not evaluate.overflows_chunk("(a:1.2.3) " + "word " * 80)  # unparseable: counted elsewhere, not here


def test_cache_key_changes_with_each_input():
    base = Recipe("a cat", "blurry", 32, 32, 2, 7.0, "Euler a")
    key = evaluate.cache_key("m", base, 0)
    assert key == evaluate.cache_key("m", Recipe("a cat", "blurry", 32, 32, 2, 7.0, "Euler a"), 0)
    assert key == evaluate.cache_key("m", base.replace(model="sd21"), 0)  # not a render setting
    changed = [base.replace(prompt="a dog"), base.replace(negative_prompt=""), base.replace(width=64, height=64),
               base.replace(steps=3), base.replace(cfg_scale=5.0), base.replace(sampler="DDIM"),
               base.replace(clip_skip=2)]
    keys = {evaluate.cache_key("m", r, 0) for r in changed} | {evaluate.cache_key("m", base, 1),
                                                              evaluate.cache_key("other", base, 0)}
    assert len(keys) == len(changed) + 2 and key not in keys


def test_win_rate_counts_a_tie_as_one_half():
    assert paired_outcomes([2.0, 1.0, 0.5], [1.0, 1.0, 0.7]) == [1.0, 0.5, 0.0]
    assert paired_win_rate([2.0, 1.0, 0.5, 3.0], [1.0, 1.0, 0.7, 3.0]) == (0.5, 0.5)
    assert paired_win_rate([2.0, 2.0], [1.0, 2.0]) == (0.75, 0.5)
    assert paired_win_rate([1.0, 1.05], [1.0, 1.0], tie_tolerance=0.1) == (0.5, 1.0)
    with pytest.raises(ValueError, match="same number of items but have 2 and 1"):
        paired_win_rate([1.0, 2.0], [1.0])


def test_bootstrap_ci_is_seeded_and_contains_the_estimate():
    outcomes = [1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0] * 3
    estimate = sum(outcomes) / len(outcomes)
    low, high = bootstrap_ci(outcomes, seed=7)
    assert low < estimate < high
    assert (low, high) == bootstrap_ci(outcomes, seed=7)
    assert bootstrap_ci(outcomes, seed=8) != (low, high)
    wide = bootstrap_ci(outcomes[:10], seed=7)
    assert wide[1] - wide[0] > high - low  # fewer prompts, wider interval
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)


def test_word_diff_marks_changes_and_escapes_html():
    assert word_diff_html("a castle, by greg rutkowski, 8k", "a castle, painterly") == (
        "a castle, <del>by greg rutkowski, 8k</del><ins>painterly</ins>")
    assert word_diff_html("a <b> cat", "a <b> cat") == "a &lt;b&gt; cat"
