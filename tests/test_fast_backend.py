"""The learned bridge on CTranslate2 (bridge/learned/fast.py) and its export (bridge/export.py), on a tiny T5 trained
here by training/train.py (CPU, seconds): the copy train.py writes, the backend choice, ids equal to the transformers
tokenizer's on the corpora, fp32 greedy output equal to transformers', beam search and sampling on both backends,
a LoRA adapter merged into its base, the export command, and no torch or transformers imported on the fast path."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")
ctranslate2 = pytest.importorskip("ctranslate2")
pytest.importorskip("tokenizers")

from script_loader import load_script

import bridge.export
from bridge.learned import fast
from bridge.learned.bridge_info import BridgeInfo
from bridge.learned.seq2seq import Seq2SeqTranslator
from bridge.load import load_translator
from bridge.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
train = load_script("train_script_fast", REPO / "training" / "train.py")
# short outputs (48 tokens at most) keep the many generations here fast
TRAIN_ARGS = ["--tiny", "--tiny-pairs", "300", "--steps", "60", "--eval-every", "0", "--save-every", "0",
              "--eval-pairs", "8", "--log-every", "60", "--max-target-tokens", "48"]
HANG_GUARD_S = 60
ML_MODULES = ("torch", "transformers", "peft", "accelerate")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, torch_one_thread):
    """A tiny bridge trained by train.py with a float32 CTranslate2 copy (the translator's fp32 twin)."""
    out = tmp_path_factory.mktemp("fast") / "bridge"
    assert train.main([*TRAIN_ARGS, "--ct2-quantization", "float32", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def both(trained):
    """(ct2, hf): the same bridge on each backend, one thread each."""
    return (Seq2SeqTranslator.from_pretrained(trained, backend="ct2", threads=1),
            Seq2SeqTranslator.from_pretrained(trained, backend="hf", device="cpu"))


@pytest.fixture(scope="module")
def inputs(both, real_prompts):
    """Model inputs (placeholders, negative part) for every 80th prompt of the corpora: 141 of them."""
    return [both[1].encode(Recipe(prompt=p)).input_text for p in real_prompts[::80]]


def without_ct2(trained: Path, folder: Path) -> Path:
    """A copy of the bridge folder as it was before the export (bridge.json without the ct2 record)."""
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("ct2", "checkpoints"))
    info = BridgeInfo.load(folder)
    del info.copies["ct2"]
    info.save(folder)
    return folder


# 1. the copy train.py writes, and the backend choice ------------------------------------------------------------------


def test_train_writes_the_ct2_copy_and_records_it(trained):
    info = BridgeInfo.load(trained)
    assert info.copies == {"hf": {"path": "."}, "ct2": {"path": "ct2", "quantization": "float32",
                                                       "ctranslate2": ctranslate2.__version__,
                                                       "strip_tokens": ["</s>", "<pad>"]}}
    assert {p.name for p in (trained / "ct2").iterdir()} >= {"model.bin", "config.json", "tokenizer.json"}
    assert "holds a CTranslate2 copy (`ct2/`, float32)" in (trained / "README.md").read_text(encoding="utf-8")


def test_auto_takes_ct2_when_the_copy_and_the_package_are_there(trained, tmp_path, monkeypatch):
    assert load_translator(str(trained)).backend == "ct2"
    assert load_translator(str(trained), backend="hf").backend == "hf"
    bare = without_ct2(trained, tmp_path / "bare")
    assert load_translator(str(bare)).backend == "hf"
    with pytest.raises(ValueError, match=r"has no CTranslate2 copy: make one with python -m bridge.export .*bare"):
        load_translator(str(bare), backend="ct2")
    with pytest.raises(ValueError, match=r"^unknown backend 'fast'; valid backends: auto, ct2, hf$"):
        load_translator(str(trained), backend="fast")
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        load_translator("rules", backend="fast")
    monkeypatch.setattr(fast, "available", lambda: False)  # the fast extra not installed
    assert load_translator(str(trained)).backend == "hf"
    with pytest.raises(ValueError, match=r"needs the ctranslate2 and tokenizers packages: install the fast extra"):
        load_translator(str(trained), backend="ct2")


def test_the_fast_path_imports_no_torch_or_transformers(trained):
    """In a fresh process: the loader, a translation, seeded sampling and the CLI, with torch nowhere in sys.modules."""
    code = (f"import sys; from bridge.load import load_translator; from bridge.cli import main\n"
            f"t = load_translator({str(trained)!r}); t.translate('a (castle:1.2) on a hill, 8k')\n"
            "t.candidates(['a castle'], do_sample=True, num_return_sequences=2, seed=1)\n"
            f"assert main(['--model', {str(trained)!r}, 'a castle, by greg rutkowski']) == 0\n"
            f"print(t.backend, sorted(m for m in sys.modules if m.split('.')[0] in {ML_MODULES!r}))")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ct2 []"


def test_cli_backend_option(trained, tmp_path, capsys):
    from bridge.cli import main

    assert main(["--model", str(trained), "--backend", "hf", "--format", "json", "a castle"]) == 0
    hf = capsys.readouterr().out
    assert main(["--model", str(trained), "--backend", "ct2", "--format", "json", "a castle"]) == 0
    ct2 = capsys.readouterr().out
    assert json.loads(hf)["prompt"] == json.loads(ct2)["prompt"]  # the fp32 copy: the same greedy output
    bare = without_ct2(trained, tmp_path / "bare")
    assert main(["--model", str(bare), "--backend", "ct2", "a castle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no CTranslate2 copy: make one with python -m bridge.export" in err[0]
    assert main(["--backend", "ct2", "a castle"]) == 2
    assert "--backend ct2 applies to a learned bridge" in capsys.readouterr().err
    assert main(["--model", str(trained), "--backend", "fast", "a castle"]) == 2
    assert "argument --backend: invalid choice: 'fast' (choose from 'auto', 'ct2', 'hf')" in capsys.readouterr().err


# 2. tokens -----------------------------------------------------------------------------------------------------------


def test_tokenizers_ids_equal_the_transformers_tokenizers_on_the_corpora(both, real_prompts, inputs):
    ct2, hf = both
    texts = [*real_prompts, *inputs]
    expected = hf.tokenizer(texts, truncation=True, max_length=hf.info.max_source_tokens)["input_ids"]
    assert ct2.token_ids(texts) == expected
    assert max(map(len, expected)) == hf.info.max_source_tokens  # truncation was reached, and matched
    decoded = [hf.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
               for ids in expected[::25]]
    assert [ct2.tokenizer.decode(ids, skip_special_tokens=False) for ids in expected[::25]] == decoded


def test_a_t5_tokenizer_is_exported_as_transformers_runs_it(tmp_path, real_prompts, torch_one_thread):
    """A T5-family tokenizer (sentencepiece-style Unigram, <extra_id_N> sentinels): transformers' T5Tokenizer sets
    its own normalizer and pre-tokenizer, so the export writes the tokenizer it runs; the ids match on the corpora."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import AutoTokenizer, T5TokenizerFast

    from bridge.testing import t5_from_config

    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(real_prompts[::10], vocab_size=1000, special_tokens=["<pad>", "</s>", "<unk>"],
                                unk_token="<unk>", show_progress=False)
    unigram.save(str(tmp_path / "unigram.json"))
    folder = tmp_path / "t5bridge"
    T5TokenizerFast(tokenizer_file=str(tmp_path / "unigram.json"), extra_ids=100).save_pretrained(folder)
    hf = AutoTokenizer.from_pretrained(folder)
    t5_from_config(len(hf), d_model=16, layers=1, heads=2, d_ff=32).save_pretrained(folder)
    BridgeInfo("sd15", "sd2", max_source_tokens=64).save(folder)
    assert bridge.export.main([str(folder), "--quantization", "float32"]) == 0

    ct2 = Seq2SeqTranslator.from_pretrained(folder, backend="ct2", threads=1)
    texts = [*real_prompts, "sd15 to sd2: a <extra_id_0>castle<extra_id_1> on  a hill negative: blurry"]
    assert ct2.token_ids(texts) == hf(texts, truncation=True, max_length=64)["input_ids"]


# 3. generation on both backends --------------------------------------------------------------------------------------


def test_fp32_greedy_output_equals_transformers(both, inputs):
    ct2, hf = both
    outputs = ct2.generate(inputs)
    assert outputs == hf.generate(inputs)
    assert len({o[0] for o in outputs}) > 10  # the outputs depend on the input: the comparison means something
    recipes = [Recipe(prompt="a (castle:1.3) on a hill BREAK fog, by greg rutkowski", negative_prompt="blurry"),
               Recipe(prompt="portrait of a woman <lora:detail:0.6>, 8k", width=512, height=768)]
    fast_results, hf_results = ct2.translate_batch(recipes), hf.translate_batch(recipes)
    assert ct2.last_raw == hf.last_raw
    for a, b in zip(fast_results, hf_results, strict=True):
        assert (a.prompt, a.negative_prompt, a.recipe, a.warnings) == (b.prompt, b.negative_prompt, b.recipe,
                                                                         b.warnings)


def test_beam_search_on_both_backends(both, inputs):
    ct2 = both[0]
    beams = {t.backend: t.generate(inputs[:24], num_beams=3, num_return_sequences=3) for t in both}
    # (beam search is not compared output for output: the two implementations part ways on hypotheses that reach
    # the length limit, as this barely trained model's do)
    for groups in beams.values():
        assert all(len(group) == 3 for group in groups)
        assert sum(len(set(group)) == 3 for group in groups) > len(groups) // 2  # three different hypotheses
    recipe = Recipe(prompt="a castle on a hill, 8k")
    ct2.info.num_beams = 3  # translate() decodes with bridge.json's num_beams
    try:
        ct2.translate(recipe)
    finally:
        ct2.info.num_beams = 1
    assert ct2.last_raw == [ct2.generate([ct2.encode(recipe).input_text], num_beams=3)[0][0]]


@pytest.mark.parametrize("backend", ["ct2", "hf"])
def test_sampling_and_candidates_on_both_backends(both, inputs, backend):
    translator = {t.backend: t for t in both}[backend]
    settings = {"do_sample": True, "num_return_sequences": 4, "temperature": 1.5, "top_p": 0.95}
    sampled = translator.generate(inputs[:5], seed=7, **settings)
    assert [len(s) for s in sampled] == [4] * 5
    assert translator.generate(inputs[:5], seed=7, **settings) == sampled  # a seed repeats itself
    assert translator.generate(inputs[:5], seed=8, **settings) != sampled
    assert len({s for group in sampled for s in group}) > 5  # different candidates
    unseeded = [translator.generate(inputs[:5], **settings) for _ in range(2)]
    assert unseeded[0] != unseeded[1] and sampled not in unseeded  # without a seed, each call draws afresh
    [candidates] = translator.candidates(["a (castle:1.3) on a hill"], seed=3, **settings)
    example = translator.encode(Recipe(prompt="a (castle:1.3) on a hill"))
    assert len(candidates) == 4
    for candidate in candidates:
        assert candidate.problems == example.problems(candidate.raw)
        if not candidate.problems:
            assert "(" in candidate.prompt and ":1.3)" in candidate.prompt


def test_several_workers_give_the_same_outputs_in_input_order(trained, both, inputs):
    """Three one-thread workers (inter_threads) take the batches together: greedy outputs, beams and seeded samples
    are the one-worker translator's, input by input, over many small batches that finish out of order."""
    ct2 = both[0]
    workers = Seq2SeqTranslator.from_pretrained(trained, backend="ct2", threads=3)
    assert (workers.model.workers, workers.model.translator.num_translators) == (3, 3)
    assert (ct2.model.workers, ct2.model.translator.num_translators) == (1, 1)
    assert workers.generate(inputs, batch_size=4) == ct2.generate(inputs, batch_size=4) == ct2.generate(inputs)
    beams = {"num_beams": 2, "num_return_sequences": 2, "batch_size": 3}
    assert workers.generate(inputs[:20], **beams) == ct2.generate(inputs[:20], **beams)
    sampling = {"do_sample": True, "num_return_sequences": 2, "temperature": 1.5, "batch_size": 2, "seed": 5}
    sampled = workers.generate(inputs[:12], **sampling)
    assert workers.generate(inputs[:12], **sampling) == sampled  # a seeded call samples on one worker: it repeats
    assert fast.cpu_cores() >= 1
    with pytest.raises(ValueError, match="threads must be 0 .every core. or more, got -1"):
        Seq2SeqTranslator.from_pretrained(trained, backend="ct2", threads=-1)


def test_loading_keeps_the_hosts_torch_thread_count(trained, torch_one_thread):
    """CTranslate2 sets the loading thread's OpenMP thread count to its workers' (one); torch in the same process (an
    A1111 or ComfyUI host, the HF backend) shares OpenMP and keeps its own."""
    torch = torch_one_thread
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert torch.get_num_threads() == 3
        Seq2SeqTranslator.from_pretrained(trained, backend="ct2", threads=2)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_ct2_samples_without_beams(both, inputs):
    with pytest.raises(ValueError, match="samples without beams: give num_beams=1 with do_sample, not 2"):
        both[0].generate(inputs[:1], do_sample=True, num_beams=2)


def test_min_new_tokens_fixes_the_output_length_on_both_backends(both, inputs):
    """What the benchmark relies on: with min = max new tokens every output has that many tokens, whatever the model
    would have ended with, and the two backends agree."""
    ct2, hf = both
    settings = {"num_return_sequences": 1, "do_sample": False, "num_beams": 1, "max_new_tokens": 12,
                "min_new_tokens": 12}
    source = [[ct2.tokenizer.id_to_token(i) for i in ids] for ids in ct2.token_ids(inputs[:8])]
    results = ct2.model.translator.translate_batch(source, **fast.translate_options(settings))
    assert [len(r.hypotheses[0]) for r in results] == [12] * 8
    assert fast.translate_options({**settings, "min_new_tokens": None})["min_decoding_length"] == 0  # may end at once
    assert ct2.generate(inputs, min_new_tokens=12, max_new_tokens=12) == hf.generate(inputs, min_new_tokens=12,
                                                                                     max_new_tokens=12)


# 4. export -----------------------------------------------------------------------------------------------------------


def test_export_command_writes_int8_by_default(trained, tmp_path, capsys, both, inputs):
    folder = without_ct2(trained, tmp_path / "bridge")
    assert bridge.export.main([str(folder)]) == 0
    assert f"wrote {folder / 'ct2'} (int8)" in capsys.readouterr().out
    info = BridgeInfo.load(folder)
    assert info.copies["ct2"]["quantization"] == "int8"
    assert (folder / "ct2" / "model.bin").stat().st_size < (trained / "ct2" / "model.bin").stat().st_size / 2
    int8 = load_translator(str(folder))
    assert int8.backend == "ct2" and int8.model.compute_type == "int8"
    assert all(o[0] for o in int8.generate(inputs[:8]))

    assert bridge.export.main([str(folder), "--quantization", "int8_float16"]) == 0
    assert "note: a CPU runs int8_float16 as int8_float32" in capsys.readouterr().err
    assert load_translator(str(folder)).model.compute_type == "int8_float32"


def test_export_errors_are_one_line(trained, tmp_path, capsys, monkeypatch):
    for argv, message in [
        ([str(tmp_path)], "no bridge.json in"),
        ([str(tmp_path / "missing" / "folder")], "no bridge folder at"),
        (["user/sd15-to-sd2"], "is a hub id: give --out DIR"),
        ([str(trained), "--out", str(tmp_path / "x")], "--out is for a hub id"),
    ]:
        assert bridge.export.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exit_code:
        bridge.export.main([str(trained), "--quantization", "int4"])
    assert exit_code.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    monkeypatch.setattr(bridge.export.importlib.util, "find_spec", lambda name: None)
    assert bridge.export.main([str(trained)]) == 1
    assert "needs the fast and ml extras" in capsys.readouterr().err


def test_a_hub_id_is_downloaded_into_out_and_exported_there(trained, tmp_path, monkeypatch):
    import huggingface_hub

    source = without_ct2(trained, tmp_path / "published")
    asked = []

    def snapshot_download(repo_id, local_dir):
        asked.append(repo_id)
        shutil.copytree(source, local_dir)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    out = tmp_path / "downloaded"
    assert bridge.export.main(["user/sd15-to-sd2", "--out", str(out), "--quantization", "float32"]) == 0
    assert asked == ["user/sd15-to-sd2"] and load_translator(str(out)).backend == "ct2"


def test_lora_export_merges_the_adapter_into_its_base(tmp_path, torch_one_thread):
    """The CTranslate2 copy of a LoRA bridge scores a target as the merged transformers model does, and not as the
    base alone (the base is a local folder inside the bridge)."""
    torch = torch_one_thread
    out = tmp_path / "lora"
    assert train.main(["--tiny", "--lora", "--tiny-pairs", "60", "--steps", "5", "--lr", "0.01", "--eval-every", "0",
                       "--save-every", "0", "--eval-pairs", "4", "--ct2-quantization", "float32",
                       "--out", str(out)]) == 0
    assert BridgeInfo.load(out).copies["ct2"]["quantization"] == "float32"
    hf = Seq2SeqTranslator.from_pretrained(out, backend="hf", device="cpu")  # merged at load
    ct2 = Seq2SeqTranslator.from_pretrained(out, backend="ct2", threads=1)
    from transformers import AutoModelForSeq2SeqLM

    base = AutoModelForSeq2SeqLM.from_pretrained(out / "base").eval()
    source = hf.tokenizer("sd15 to sd2: a castle on a hill negative: ")["input_ids"]
    target = hf.tokenizer("a stone castle, fog negative: blurry")["input_ids"]

    def log_probs(model) -> list[float]:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([source]), labels=torch.tensor([target])).logits[0]
        return logits.log_softmax(-1).gather(1, torch.tensor(target)[:, None])[:, 0].tolist()

    [scored] = ct2.model.translator.score_batch([[ct2.tokenizer.id_to_token(i) for i in source]],
                                                [[ct2.tokenizer.id_to_token(i) for i in target[:-1]]])
    assert scored.log_probs == pytest.approx(log_probs(hf.model), abs=1e-4)
    assert scored.log_probs != pytest.approx(log_probs(base), abs=1e-3)
