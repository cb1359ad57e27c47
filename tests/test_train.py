"""training/train.py on a tiny T5 (CPU, seconds): the bridge folder it writes, that it loads and learns, an exact
resume after kill -9, LoRA, pair files, and its errors. One shared training run serves most tests."""

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("peft")

from script_loader import load_script

from bridge.learned.seq2seq import Seq2SeqTranslator
from bridge.load import load_translator
from bridge.translation import Translation

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO / "training" / "train.py"
ARGS = ["--tiny", "--tiny-pairs", "300", "--steps", "60", "--eval-every", "30", "--save-every", "20",
        "--log-every", "20", "--eval-pairs", "16"]
KILL_TIMEOUT_S = 180


train = load_script("train_script", TRAIN_SCRIPT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, torch_one_thread):
    """One uninterrupted tiny run: 60 steps on 300 pairs it builds, evaluated at 30 and 60, checkpoints every 20."""
    out = tmp_path_factory.mktemp("tiny") / "bridge"
    assert train.main([*ARGS, "--out", str(out)]) == 0
    return out


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_tiny_run_writes_a_complete_bridge_folder(trained):
    for name in ("bridge.json", "model.safetensors", "config.json", "tokenizer.json", "README.md",
                 "train_config.toml", "metrics.jsonl"):
        assert (trained / name).is_file(), name
    info = read_json(trained / "bridge.json")
    assert (info["kind"], info["source"], info["target"], info["weights"]) == ("seq2seq", "sd15", "sd2", "full")
    assert info["format_version"] == 1 and info["negatives"] is True
    assert len(info["data"]["sha256"]) == 64 and info["data"]["train_pairs"] + info["data"]["eval_pairs"] > 250
    assert info["training"]["steps"] == 60
    assert set(info["metrics"]) >= {"final_train_loss", "eval_loss", "chrf", "exact_match", "syntax_preservation"}
    assert info["copies"]["ct2"]["quantization"] == "int8"  # the CTranslate2 copy, by default
    assert (trained / "ct2" / "model.bin").is_file() and (trained / "ct2" / "tokenizer.json").is_file()
    config = tomllib.loads((trained / "train_config.toml").read_text(encoding="utf-8"))
    assert config["steps"] == 60 and config["tiny"] is True
    assert "hf upload" in (trained / "README.md").read_text(encoding="utf-8")


def test_tiny_run_learns(trained):
    history = [json.loads(line) for line in (trained / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [h["step"] for h in history] == [30, 60]
    assert history[-1]["eval_loss"] < history[0]["eval_loss"]
    assert history[-1]["train_loss"] < 5.0  # a random model starts at ln(vocab) = ln(2000) = 7.6
    assert history[-1]["chrf"] > 10  # the outputs already resemble the targets


def test_the_folder_loads_as_a_translator(trained):
    translator = load_translator(str(trained))
    assert isinstance(translator, Seq2SeqTranslator)
    result = translator.translate("a castle on a hill, by greg rutkowski, 8k")
    assert isinstance(result, Translation)
    assert (result.recipe.width, result.recipe.model) == (768, "sd2")
    assert result.prompt and translator.last_raw[0]


def test_kill_9_then_rerun_ends_with_the_same_loss(trained, tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *ARGS, "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not list((out / "checkpoints").glob("step-*[0-9]")):
        assert process.poll() is None, "training ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (out / "bridge.json").exists()  # killed before the end
    assert train.main([*ARGS, "--no-ct2", "--out", str(out)]) == 0  # (writing no copy is no reason not to resume)
    assert read_json(out / "bridge.json")["copies"] == {"hf": {"path": "."}} and not (out / "ct2").exists()

    uninterrupted, resumed = read_json(trained / "bridge.json"), read_json(out / "bridge.json")
    for key in ("final_train_loss", "eval_loss"):
        assert resumed["metrics"][key] == uninterrupted["metrics"][key]  # bit-identical: same batches, same RNG
    assert resumed["data"]["sha256"] == uninterrupted["data"]["sha256"]


def test_a_changed_setting_does_not_resume_silently(trained, capsys):
    assert train.main([*ARGS, "--lr", "0.1", "--out", str(trained)]) == 1
    assert "holds a checkpoint of a run with lr = 0.003, not 0.1" in capsys.readouterr().err


def test_lora_writes_an_adapter_over_a_base_kept_in_the_folder(tmp_path, torch_one_thread):
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    out = tmp_path / "lora"
    assert train.main(["--tiny", "--lora", "--tiny-pairs", "60", "--steps", "5", "--lr", "0.01", "--eval-every", "0",
                       "--save-every", "0", "--eval-pairs", "4", "--out", str(out)]) == 0
    assert (out / "adapter_model.safetensors").is_file() and (out / "base" / "config.json").is_file()
    info = read_json(out / "bridge.json")
    assert (info["weights"], info["base_model"]) == ("lora", "base")
    assert info["copies"]["ct2"]["quantization"] == "int8"  # the adapter merged (tests/test_fast_backend.py)

    translator = Seq2SeqTranslator.from_pretrained(out, device="cpu", backend="hf")  # adapter merged into the base
    base = AutoModelForSeq2SeqLM.from_pretrained(out / "base").eval()
    tokens = translator.tokenizer(["sd15 to sd2: a castle negative: "], return_tensors="pt")
    decoder = {"decoder_input_ids": tokens["input_ids"][:, :4]}
    with torch_one_thread.no_grad():
        merged = translator.model(**tokens, **decoder).logits
        plain = base(**tokens, **decoder).logits
        adapted = PeftModel.from_pretrained(base, out).eval()(**tokens, **decoder).logits
    assert torch_one_thread.allclose(merged, adapted, atol=1e-5)
    assert not torch_one_thread.allclose(merged, plain, atol=1e-4)  # training changed the adapter


def write_pairs(folder: Path) -> list[dict]:
    rows = [{"source_prompt": f"a (castle:1.2) number {i}", "source_negative": "",
             "target_prompt": f"a (castle:1.2) number {i}, detailed", "target_negative": "blurry",
             "split": "eval" if i % 5 == 0 else "train"} for i in range(40)]
    rows.append({"source_prompt": "a (dropped:1.3) castle", "source_negative": "", "target_prompt": "a castle",
                 "target_negative": "", "split": "train"})  # the target loses protected syntax: skipped
    rows.append({"source_prompt": "held back", "source_negative": "", "target_prompt": "held back",
                 "target_negative": "", "split": "test"})  # never trained or evaluated on
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:20]), folder / "part-0000.parquet")
    pq.write_table(pa.Table.from_pylist(rows[20:]), folder / "part-0001.parquet")
    (folder.parent / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def test_pairs_from_parquet_shards_or_jsonl(tmp_path, torch_one_thread):
    rows = write_pairs(tmp_path / "pairs")
    for data in (tmp_path / "pairs", tmp_path / "pairs.jsonl"):
        loaded, info = train.load_pairs(str(data))
        assert loaded == rows and info["rows"] == len(rows)
        train_rows, eval_rows = train.split_pairs(loaded, 0.05)
        assert (len(train_rows), len(eval_rows)) == (33, 8)
        config = train.TrainConfig(data=str(data))
        examples, skipped = train.encode_pairs(train_rows, config)
        assert (len(examples), skipped) == (32, 1)
        assert examples[0].target_text == "a <extra_id_0>castle<extra_id_1> number 1, detailed negative: blurry"

    out = tmp_path / "bridge"
    assert train.main(["--tiny", "--data", str(tmp_path / "pairs"), "--steps", "3", "--eval-every", "0",
                       "--out", str(out)]) == 0
    data = read_json(out / "bridge.json")["data"]
    assert (data["train_pairs"], data["eval_pairs"], data["skipped_pairs"]) == (32, 8, 1)


def test_a_pretrained_model_by_path_gets_a_lora_adapter(trained, tmp_path, torch_one_thread):
    write_pairs(tmp_path / "pairs")
    out = tmp_path / "adapted"
    assert train.main(["--model", str(trained), "--lora", "--data", str(tmp_path / "pairs.jsonl"), "--steps", "3",
                       "--batch-size", "8", "--eval-every", "0", "--eval-pairs", "4", "--out", str(out)]) == 0
    info = read_json(out / "bridge.json")
    assert (info["weights"], info["base_model"]) == ("lora", str(trained.resolve()))
    assert not (out / "base").exists()
    translator = load_translator(str(out))
    assert translator.translate("a (castle:1.2) number 3").recipe.width == 768


def test_usage_errors_name_the_problem(tmp_path, capsys):
    assert train.main(["--tiny"]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    assert train.main(["--out", str(tmp_path)]) == 2
    assert "give --data" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('lerning_rate = 0.1\n', encoding="utf-8")
    assert train.main(["--config", str(bad), "--tiny", "--out", str(tmp_path)]) == 2
    assert "unknown key 'lerning_rate'" in capsys.readouterr().err
    assert train.main(["--tiny", "--networks", "drop", "--out", str(tmp_path)]) == 2
    assert "networks must be 'remove' or 'keep'" in capsys.readouterr().err
    assert train.main(["--tiny", "--ct2-quantization", "int4", "--out", str(tmp_path)]) == 2
    assert "ct2_quantization must be one of int8, int8_float16, float16, float32 but is 'int4'" in \
        capsys.readouterr().err
    assert train.main(["--tiny", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path)]) == 2
    assert "no pairs at" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted((REPO / "training" / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(config):
    values = train.read_config(config)
    parsed = train.TrainConfig(**values, data="runs/pairs", out="runs/bridge")
    assert parsed.model and parsed.lora


def test_a_resumed_run_gets_the_batches_of_an_uninterrupted_one(torch_one_thread):
    """Micro-batch N of a run resumed at N is micro-batch N of a run never stopped (the data position a checkpoint
    restores); each epoch is one seeded permutation; going through the data draws nothing from torch's global RNG."""
    torch = torch_one_thread
    accelerator = train.make_accelerator(train.TrainConfig(tiny=True, seed=3))
    loader = train.train_loader(list(range(10)), lambda rows: rows, 4, accelerator)
    assert len(loader) == 3  # 4, 4 and 2 pairs per epoch
    rng = torch.get_rng_state()
    stream = list(itertools.islice(train.micro_batches(loader, 0, accelerator), 9))  # three epochs
    for epoch in range(3):
        order = torch.randperm(10, generator=torch.Generator().manual_seed(3 + epoch)).tolist()
        assert list(itertools.chain(*stream[3 * epoch : 3 * epoch + 3])) == order
    assert stream[:3] != stream[3:6]
    for first in range(1, 9):
        assert list(itertools.islice(train.micro_batches(loader, first, accelerator), 9 - first)) == stream[first:]
    assert torch.equal(torch.get_rng_state(), rng)
