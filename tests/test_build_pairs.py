"""data/build_pairs.py: the --tiny build, kill -9 and resume, two processes, the dry run, the schema; and the parts in
bridge.workflows.pairs and bridge.workflows.corpora. Runs are shared through module-scoped fixtures; plumbing uses the simulated world."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("open_clip")
pyarrow_parquet = pytest.importorskip("pyarrow.parquet")

from script_loader import load_script

from bridge.learned.seq2seq import Candidate as LearnedSample
from bridge.recipe import Recipe
from bridge.workflows import corpora, pairs
from bridge.workflows.corpora import SourcePrompt
from bridge.workflows.simulated import SimulatedRenderer, SimulatedScorer, SimulatedWorld, decode_image

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "build_pairs.py"
KILL_ARGS = ["--tiny", "--corpus", "diffusiondb", "--limit", "12", "--shard-size", "2"]  # 6 shards
KILL_SHARDS = 6
TIMEOUT_S = 240


build_pairs = load_script("build_pairs_script", SCRIPT)


def read_rows(out: Path) -> list[dict]:
    tables = [pyarrow_parquet.read_table(path) for path in sorted((out / "data").glob("*.parquet"))]
    return sorted((row for table in tables for row in table.to_pylist()), key=lambda r: r["id"])


def assert_same_dataset(a: Path, b: Path) -> None:
    """Same shards, same rows (ids, texts, choices), scores within 1e-6."""
    def shards(out: Path) -> list[str]:
        return sorted(p.name for p in (out / "data").glob("*.parquet"))

    assert shards(a) == shards(b)
    rows_a, rows_b = read_rows(a), read_rows(b)
    assert [r["id"] for r in rows_a] == [r["id"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for column in ("source_prompt", "target_prompt", "target_negative", "candidate", "kept", "seeds",
                       "config_hash", "recipe"):
            assert ra[column] == rb[column], column
        for column in ("score", "identity_score", "gain"):
            assert ra[column] == pytest.approx(rb[column], abs=1e-6)
        ca, cb = json.loads(ra["candidates"]), json.loads(rb["candidates"])
        assert [c["name"] for c in ca] == [c["name"] for c in cb]
        for x, y in zip(ca, cb, strict=True):
            assert [s["total"] for s in x["scores"]] == pytest.approx([s["total"] for s in y["scores"]], abs=1e-6)
    assert json.loads((a / "index.json").read_text()) == json.loads((b / "index.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, torch_one_thread):
    """`build_pairs.py --tiny --save-images`: built-in prompts on tiny random models; (output folder, CPU seconds).

    CPU time rather than wall time, so other work on a shared machine does not make the time check flaky."""
    out = tmp_path_factory.mktemp("tiny") / "pairs"
    started = time.process_time()
    assert build_pairs.main(["--tiny", "--save-images", "--out", str(out)]) == 0
    return out, time.process_time() - started


@pytest.fixture(scope="module")
def reference(tmp_path_factory, torch_one_thread):
    """An uninterrupted run of the command the kill test kills."""
    out = tmp_path_factory.mktemp("reference") / "pairs"
    assert build_pairs.main([*KILL_ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def world_files(tmp_path_factory):
    """Simulated-world prompts and blind candidates for plumbing tests: (prompts file, candidates file, prompts)."""
    root = tmp_path_factory.mktemp("world")
    world = SimulatedWorld()
    prompts = world.prompts(40, seed=5)
    (root / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    world.write_proposals(prompts, root / "candidates.jsonl")
    return root / "prompts.txt", root / "candidates.jsonl", prompts


def simulated_args(world_files, out: Path, *extra: str) -> list[str]:
    prompts, candidates, _ = world_files
    return ["--simulated", "--corpus", str(prompts), "--candidates", str(candidates), "--no-require-sd1-style",
            "--shard-size", "4", "--out", str(out), *extra]


# ---- the --tiny build and its output


def test_tiny_build_is_fast_and_loads_with_datasets(tiny):
    datasets = pytest.importorskip("datasets")
    out, seconds = tiny
    assert seconds <= 30
    loaded = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert loaded.num_rows == 4  # the built-in prompts that look SD1-style ("a red fox in the snow" does not)
    assert set(loaded.column_names) == {name for name, _, _ in pairs.COLUMNS}
    assert "a red fox in the snow" not in loaded["source_prompt"]


def test_rows_follow_the_schema_and_record_every_candidate(tiny):
    out, _ = tiny
    rows = read_rows(out)
    config = json.loads((out / "config.json").read_text())
    assert config["columns"] == {name: kind for name, kind, _ in pairs.COLUMNS}
    for row in rows:
        assert row["id"] == pairs.prompt_id(row["source_prompt"], row["source_negative"])
        assert row["seeds"] == [0, 1] and row["model"] == "tiny-sd2-seed0" and row["scorer"] == "TinyCLIP-test"
        assert row["config_hash"] == config["config_hash"]
        candidates = json.loads(row["candidates"])
        assert candidates[0]["name"] == "identity" and candidates[0]["prompt"] == row["source_prompt"]
        assert any(c["name"] == "rules" for c in candidates)
        assert len({(c["prompt"], c["negative_prompt"]) for c in candidates}) == len(candidates)  # no duplicates
        means = {c["name"]: c["mean"] for c in candidates}
        assert row["score"] == max(means.values()) and row["identity_score"] == means["identity"]
        assert row["gain"] == pytest.approx(row["score"] - row["identity_score"])
        assert row["kept"] == (row["candidate"] != "identity" and row["gain"] > 0.005)
        assert row["split"] == ("train" if row["kept"] else "rejected")
        for c in candidates:
            assert len(c["scores"]) == 2 and all(-1 <= s["total"] <= 1 for s in c["scores"])
            assert all((out / "images" / f"{key}.webp").is_file() for key in c["images"])  # --save-images
        recipe = json.loads(row["recipe"])
        assert (recipe["prompt"], recipe["width"], recipe["steps"]) == (row["target_prompt"], 32, 2)
    card = (out / "README.md").read_text()
    assert "data_files: data/*.parquet" in card and f"prompts: {len(rows)}" in card
    assert set(json.loads((out / "index.json").read_text())) == {r["id"] for r in rows}


def test_tiny_build_for_an_sdxl_target_renders_with_the_tiny_sdxl_pipeline(tmp_path, torch_one_thread):
    from bridge.workflows.common import load_renderer

    assert load_renderer("sdxl", mode="tiny").xl
    out = tmp_path / "pairs-sdxl"
    assert build_pairs.main(["--tiny", "--target", "sdxl", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["target"], config["model_id"]) == ("sdxl", "tiny-sdxl-seed0")
    rows = read_rows(out)
    assert len(rows) == 4
    for row in rows:
        for candidate in json.loads(row["candidates"]):
            assert len(candidate["scores"]) == 2 and all(-1 <= s["total"] <= 1 for s in candidate["scores"])


def test_a_build_with_other_settings_is_not_resumed_silently(tiny, capsys):
    out, _ = tiny
    assert build_pairs.main(["--tiny", "--margin", "0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a build with other settings (margin differ)" in err and "\n" not in err.strip()


def test_rerunning_a_finished_build_changes_nothing(reference, capsys):
    before = {p.name: p.read_bytes() for p in (reference / "data").glob("*.parquet")}
    assert build_pairs.main([*KILL_ARGS, "--out", str(reference)]) == 0
    assert {p.name: p.read_bytes() for p in (reference / "data").glob("*.parquet")} == before
    assert "rendered 0 images" in capsys.readouterr().out


# ---- kill -9 and resume; two processes


def test_kill_9_then_rerun_equals_an_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "pairs"
    command = [sys.executable, str(SCRIPT), *KILL_ARGS, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT_S
    while not list((out / "data").glob("*.parquet")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the build finished (or failed) before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = list((out / "data").glob("*.parquet"))
    assert 1 <= len(committed) < KILL_SHARDS  # at least one shard committed, the run not finished
    assert not (out / "index.json").exists() and not (out / "README.md").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_dataset(out, reference)
    rows = read_rows(out)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12  # no row lost, none twice
    assert not list((out / "data").glob(".*"))  # no temporary file left behind


def test_two_processes_write_disjoint_shards_and_merge(world_files, tmp_path):
    out, single = tmp_path / "two", tmp_path / "one"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run = subprocess.run([*launcher, str(SCRIPT), *simulated_args(world_files, out)], capture_output=True, text=True,
                         timeout=TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    logs = {rank: [json.loads(line) for line in (out / "index" / f"rank-{rank:05d}.jsonl").read_text().splitlines()]
            for rank in (0, 1)}
    shards = {rank: {entry["shard"] for entry in entries} for rank, entries in logs.items()}
    ids = {rank: {i for entry in entries for i in entry["ids"]} for rank, entries in logs.items()}
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert all(int(name.split("-")[1]) % 2 == rank for rank, names in shards.items() for name in names)
    assert ids[0] | ids[1] == set(json.loads((out / "index.json").read_text()))  # merged: every prompt, once
    assert "pairs kept" in run.stdout and (out / "README.md").is_file()

    assert build_pairs.main(simulated_args(world_files, single)) == 0
    assert_same_dataset(out, single)


# ---- the dry run and the command line


def test_dry_run_prints_the_plan_and_gpu_hours_without_building(world_files, tmp_path, capsys):
    out = tmp_path / "plan"
    # 40 prompts x 1 candidate (identity) x 2 seeds = 80 renders; at 0.02 images/s, 512 px, 25 steps: 4000 s
    base = [*simulated_args(world_files, out, "--variants", "none", "--dry-run", "--size", "512",
                            "--images-per-second", "0.02")]
    base.remove("--candidates")
    base.remove(str(world_files[1]))
    assert build_pairs.main([*base, "--steps", "25"]) == 0
    plan = capsys.readouterr().out
    assert "prompts: 40 in 10 shards of 4" in plan and "renders: 80 " in plan
    assert "1.11 GPU-hours at 0.02 images/s" in plan
    assert build_pairs.main([*base, "--steps", "50"]) == 0  # twice the steps, twice the time
    assert "2.22 GPU-hours" in capsys.readouterr().out
    assert not out.exists()


def test_help_names_the_throughput_assumption(capsys):
    assert build_pairs.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "H100" in text and "5 to 8 images/s" in text and "--images-per-second" in text


def test_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    cases = [
        (["--corpus", "nope"], "'nope' is neither a file nor a corpus; corpora: parti, diffusiondb"),
        (["--variants", "rules:sometimes"], "unknown variant 'rules:sometimes'"),
        (["--seeds", "1", "1"], "--seeds must be different integers"),
        (["--target", "sd9"], "--target: unknown model 'sd9'"),
        (["--max-chars", "3"], "no prompts left after the filters"),
        (["--samples", "-1"], "--samples has to be at least 0 but is -1"),
        (["--images-per-second", "0"], "--images-per-second has to be above 0 but is 0.0"),
    ]
    for extra, message in cases:
        assert build_pairs.main(["--simulated", "--out", str(tmp_path / "x"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err


def test_the_shared_checks_fill_tiny_defaults_and_the_mode(tmp_path):
    args = build_pairs.parse_args(["--tiny", "--out", str(tmp_path)])
    assert (args.mode, args.size, args.steps, args.shard_size, args.device) == ("tiny", 32, 2, 2, "cpu")
    args = build_pairs.parse_args(["--simulated", "--size", "64", "--out", str(tmp_path)])
    assert (args.mode, args.size, args.steps, args.shard_size, args.device) == ("simulated", 64, None, 256, None)


# ---- the parts


def scored(name: str, *totals: float) -> pairs.Scored:
    return pairs.Scored(pairs.Candidate(name, name, ""), [{"total": t} for t in totals])


def test_best_of_n_keeps_a_pair_only_when_it_beats_the_identity_by_the_margin():
    identity = scored("identity", 0.30, 0.32)
    choice = pairs.best_of_n([identity, scored("rules", 0.33, 0.33), scored("user:0", 0.40, 0.20)], margin=0.005)
    assert choice.best.candidate.name == "rules" and choice.kept and choice.gain == pytest.approx(0.02)
    assert not pairs.best_of_n([identity, scored("rules", 0.33, 0.33)], margin=0.03).kept
    tie = pairs.best_of_n([identity, scored("rules", 0.32, 0.30)], margin=0.0)
    assert tie.best is identity and not tie.kept  # the identity wins ties
    with pytest.raises(ValueError, match="first candidate has to be the identity"):
        pairs.best_of_n([scored("rules", 1.0)], margin=0.0)


class RecordingScorer(SimulatedScorer):
    """The simulated scorer, recording what each image was scored against: (source, image recipe, SD1 recipe)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def score(self, source_prompts, images, sd1_images=None):
        for source, image, sd1 in zip(source_prompts, images, sd1_images, strict=True):
            self.seen.append((source, decode_image(image), decode_image(sd1)))
        return super().score(source_prompts, images)


def test_render_and_score_uses_the_same_seeds_and_the_sources_sd1_images():
    prompts = [SourcePrompt("a red fox in the forest, misty"), SourcePrompt("a cat, (icy:1.2)", "blurry")]
    candidates = [[pairs.Candidate("identity", p.prompt, p.negative_prompt), pairs.Candidate("rules", p.prompt + ", x",
                                                                                              "lowres")]
                  for p in prompts]
    scorer = RecordingScorer()
    scored = pairs.render_and_score(prompts, candidates, renderer=SimulatedRenderer(), scorer=scorer, seeds=[3, 4],
                                    model_id="m", settings=Recipe(prompt="", steps=9), batch_size=3,
                                    sd1_renderer=SimulatedRenderer())
    assert len(scorer.seen) == 2 * 2 * 2
    for source, image, sd1 in scorer.seen:
        assert sd1["prompt"] == source and sd1["seed"] == image["seed"] in (3, 4)
    for prompt, row in zip(prompts, scored, strict=True):
        for entry in row:
            assert [s["total"] for s in entry.scores] == pytest.approx(
                [scorer.world.score(prompt.prompt, entry.candidate.prompt, entry.candidate.negative_prompt, seed)
                 for seed in (3, 4)])
            assert len(set(entry.keys)) == 2 and entry.settings["steps"] == 9


class FakeLearned:
    """A learned bridge's candidates(): one sample that breaks protected syntax, one without a negative."""

    def __init__(self):
        self.calls = []

    def candidates(self, recipes, **settings):
        self.calls.append(settings)
        return [[LearnedSample("broken", None, "raw", ["<extra_id_0> is missing"]),
                 LearnedSample(r.prompt + ", learned", None, "raw", [])] for r in recipes]


def test_candidates_identity_first_rules_variants_learned_and_user():
    source = SourcePrompt("a (castle:1.5), by greg rutkowski, 8k")
    plain = SourcePrompt("a photo of a cat")
    user = {plain.prompt: [pairs.Candidate("user:mine", "a photo of a cat, soft light", "", {"kind": "user"})]}
    learned = FakeLearned()
    make = pairs.CandidateMaker("sd15", "sd21-base", learned=learned, samples=2, temperature=0.7, user=user, seed=3)
    rich, simple = make([source, plain], batch=5)
    assert rich[0].name == "identity" and rich[0].prompt == source.prompt
    names = {c.name for c in rich} | {n for c in rich for n in c.also}
    assert {"rules", "rules:keep-artists", "rules:describe-artists", "rules:keep-magic", "rules:keep-emphasis",
            "rules:no-negative", "learned:1"} <= names
    keep = next(c for c in rich if "rules:keep-artists" in (c.name, *c.also))
    assert "greg rutkowski" in keep.prompt and "greg rutkowski" not in next(c for c in rich if c.name == "rules").prompt
    assert "broken" not in {c.prompt for c in rich}  # samples that break protected syntax are no candidates
    sample = next(c for c in rich if c.name == "learned:1")
    assert sample.negative_prompt == next(c for c in rich if c.name == "rules").negative_prompt
    assert learned.calls[0] == {"num_return_sequences": 2, "do_sample": True, "temperature": 0.7, "top_p": 0.95,
                                "seed": 3 * 1_000_003 + 5}
    # a plain prompt: no artist, magic or emphasis rule fires, so those variants are not even run
    assert {c.name for c in simple} <= {"identity", "rules", "rules:no-negative", "learned:1", "user:mine"}
    assert "user:mine" in {c.name for c in simple}


def test_read_user_candidates_needs_target_columns(tmp_path):
    good = tmp_path / "c.jsonl"
    good.write_text('{"source_prompt": "a  cat", "target_prompt": "a cat, soft light", "name": "mine"}\n')
    found = pairs.read_user_candidates(str(good))
    assert [(c.name, c.prompt) for c in found["a cat"]] == [("user:mine", "a cat, soft light")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source_prompt": "a cat", "other": "x"}\n')
    with pytest.raises(ValueError, match="needs columns source_prompt and target_prompt"):
        pairs.read_user_candidates(str(bad))


def test_prompts_are_normalised_deduplicated_filtered_and_drawn_reproducibly(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("a  cat,\tsitting\na cat, sitting\n\na dog, by greg rutkowski\na plain sentence about a bird\n")
    found = corpora.read_prompts(text)
    assert [p.prompt for p in found] == ["a cat, sitting", "a dog, by greg rutkowski", "a plain sentence about a bird"]
    assert [p.prompt for p in corpora.select_prompts(found, accept=corpora.looks_sd1)] == ["a dog, by greg rutkowski"]
    assert corpora.looks_sd1("a cat, a hat, a bat") and corpora.looks_sd1("a (cat:1.2)")
    assert not corpora.looks_sd1("a photo of a cat on a sofa")
    every = corpora.read_prompts("diffusiondb")
    drawn = corpora.select_prompts(every, limit=5, seed=3)
    assert drawn == corpora.select_prompts(every, limit=5, seed=3) != corpora.select_prompts(every, limit=5, seed=4)
    assert corpora.select_prompts(found, limit=10) == found  # fewer than the limit: all, in corpus order


def test_prompts_from_a_hugging_face_dataset_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["a cat, 8k", "a cat,  8k", "a dog"]}).save_to_disk(str(tmp_path / "ds"))
    found = corpora.read_hf_dataset(str(tmp_path / "ds"), column="text")
    assert [p.prompt for p in found] == ["a cat, 8k", "a dog"] and found[1].origin.endswith(":train:2")
    with pytest.raises(corpora.CorpusError, match="has no column 'prompt'; columns: text"):
        corpora.read_hf_dataset(str(tmp_path / "ds"))
