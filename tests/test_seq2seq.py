"""The learned bridge's translator (bridge/learned/seq2seq.py) on a tiny random T5 built from a config: loading, batched
generation, the Translation it returns and its fallback to the rules bridge; its text format (textformat.py), bridge.json
(bridge_info.py) and metrics (metrics.py). Training is tested in test_train.py."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.learned.bridge_info import BridgeInfo
from bridge.learned.metrics import chrf
from bridge.learned.placeholders import protect
from bridge.learned.seq2seq import Seq2SeqTranslator, rerank
from bridge.learned.textformat import encode_example, format_input, format_output, split_output
from bridge.load import load_translator
from bridge.recipe import Recipe
from bridge.testing import t5_from_config, train_tokenizer
from bridge.translation import Translation, TranslationOptions

REPO = Path(__file__).resolve().parents[1]

TEXTS = [
    "sd15 to sd2: a castle on a hill negative: blurry",
    "sd15 to sd2: <extra_id_0>portrait<extra_id_1> of a woman, highly detailed, by greg rutkowski negative: ",
    "sd15 to sd2: cat negative: ",
    "sd15 to sd2: a very long prompt about a city street at night, neon lights, rain, reflections, 8k negative: x",
    "sd15 to sd2: dog",
    "sd15 to sd2: a forest <extra_id_0> a river negative: lowres, text",
    "sd15 to sd2: spaceship over the ocean, matte painting",
]


@pytest.fixture(scope="module")
def bridge_dir(tmp_path_factory, torch_one_thread):
    """A bridge folder holding a tiny random T5 (untrained: its outputs break placeholders)."""
    pytest.importorskip("transformers")
    lines = (REPO / "data" / "corpora" / "diffusiondb_prompts.jsonl").read_text(encoding="utf-8").splitlines()
    tokenizer = train_tokenizer([json.loads(line)["prompt"] for line in lines[:300]], vocab_size=400)
    model = t5_from_config(len(tokenizer), d_model=32, layers=2, heads=2, d_ff=64)
    # T5's initialisation makes a model this small repeat one token whatever the input; larger random weights make
    # its outputs depend on the input, so comparing outputs means something.
    generator = torch_one_thread.Generator().manual_seed(1)
    with torch_one_thread.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch_one_thread.randn(parameter.shape, generator=generator) * 0.3)
    folder = tmp_path_factory.mktemp("bridge")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BridgeInfo("sd15", "sd2", max_target_tokens=24, metrics={"chrf": 1.0}).save(folder)
    return folder


@pytest.fixture(scope="module")
def translator(bridge_dir):
    return Seq2SeqTranslator.from_pretrained(bridge_dir, device="cpu")


def test_importing_the_bridge_modules_imports_no_torch():
    code = ("import sys, bridge.learned.seq2seq, bridge.learned.placeholders, bridge.learned.textformat, "
            "bridge.learned.bridge_info, bridge.learned.metrics, bridge.seq2seq; bridge.seq2seq.Seq2SeqTranslator; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# What training/train.py, data/build_pairs.py, the tests, the benchmarks and the docs import from the old paths.
OLD_NAMES = ["BRIDGE_FILE", "FORMAT_VERSION", "BridgeInfo", "Candidate", "Example", "Seq2SeqTranslator", "chrf",
             "encode_example", "evaluate_examples", "format_input", "format_output", "rerank", "split_output"]


@pytest.mark.parametrize("path", ["bridge.learned.seq2seq", "bridge.seq2seq"])
def test_the_old_import_paths_still_work(path):
    import bridge.learned.bridge_info
    import bridge.learned.metrics
    import bridge.learned.textformat
    import bridge.testing

    module = importlib.import_module(path)
    homes = [bridge.learned.bridge_info, bridge.learned.metrics, bridge.learned.textformat, bridge.testing]
    for name in OLD_NAMES:
        home = next((m for m in homes if name in m.__all__), module)
        assert getattr(module, name) is getattr(home, name), name


def test_bridge_json_round_trips_and_is_checked(tmp_path):
    info = BridgeInfo("sd15", "sd2", weights="lora", base_model="t5-small", negatives=False, metrics={"chrf": 50.0})
    path = info.save(tmp_path)
    assert path.name == "bridge.json" and json.loads(path.read_text())["kind"] == "seq2seq"
    assert [p.name for p in tmp_path.iterdir()] == ["bridge.json"]  # no temporary file left behind
    assert BridgeInfo.load(tmp_path) == info
    assert info.text_format["input"] == "{source} to {target}: {prompt}"  # no negative part without negatives
    with pytest.raises(ValueError, match="needs base_model"):
        BridgeInfo("sd15", "sd2", weights="lora")
    with pytest.raises(ValueError, match="upgrade prompt-bridge"):
        BridgeInfo("sd15", "sd2", format_version=99)
    path.write_text(json.dumps({"source": "sd15", "target": "sd2", "colour": "red"}))
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        BridgeInfo.load(tmp_path)


def test_text_format():
    assert format_input("a cat", "blurry", source="sd15", target="sd2") == "sd15 to sd2: a cat negative: blurry"
    assert format_input("a cat", source="sd15", target="sd2") == "sd15 to sd2: a cat"
    assert split_output(format_output("a cat", "blurry, text")) == ("a cat", "blurry, text")
    assert split_output(format_output("a cat", "")) == ("a cat", "")
    assert split_output("a cat") == ("a cat", None)


def test_chrf_matches_sacrebleu():
    # reference values: sacrebleu's CHRF() (char order 6, beta 2) as quoted by the datasets chrF metric card
    assert chrf(["The relationship between Obama and Netanyahu is not exactly friendly."],
                ["The ties between Obama and Netanyahu are not particularly friendly."]) == pytest.approx(61.5763794)
    assert chrf(["The relationship between cats and dogs is not exactly friendly.",
                 "a good bookshop is just a genteel black hole that knows how to read."],
                ["The relationship between dogs and cats is not exactly friendly.",
                 "A good bookshop is just a genteel Black Hole that knows how to read."]) == pytest.approx(84.6421489)
    assert chrf(["abc"], ["xyz"]) == 0.0


def test_load_translator_loads_the_folder(bridge_dir, translator):
    loaded = load_translator(str(bridge_dir))
    assert isinstance(loaded, Seq2SeqTranslator)
    assert (loaded.name, loaded.source, loaded.target) == ("seq2seq", "sd15", "sd2")
    assert loaded.info.metrics == {"chrf": 1.0}
    assert loaded.generate(TEXTS[:2]) == translator.generate(TEXTS[:2])


def test_missing_bridge_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no bridge.json"):
        Seq2SeqTranslator.from_pretrained(tmp_path)


def test_batched_generation_equals_one_at_a_time_in_input_order(translator):
    one_by_one = [translator.generate([t])[0] for t in TEXTS]
    assert len({o[0] for o in one_by_one}) == len(TEXTS)  # outputs differ by input: the comparison means something
    assert translator.generate(TEXTS, batch_size=3) == one_by_one
    assert translator.generate(TEXTS, batch_size=32) == one_by_one
    assert translator.generate([]) == []


def test_beams_sampling_and_several_sequences(translator):
    beams = translator.generate(TEXTS[:3], num_beams=3, num_return_sequences=3)
    assert [len(b) for b in beams] == [3, 3, 3]
    sampled = translator.generate(TEXTS[:3], do_sample=True, num_return_sequences=4, temperature=1.5, seed=7)
    assert [len(s) for s in sampled] == [4, 4, 4]
    assert translator.generate(TEXTS[:3], do_sample=True, num_return_sequences=4, temperature=1.5, seed=7) == sampled
    assert len({s for group in sampled for s in group}) > 3  # sampling gives different candidates
    unseeded = [translator.generate(TEXTS[:3], do_sample=True, num_return_sequences=4, temperature=1.5)
                for _ in range(2)]
    assert unseeded[0] != unseeded[1]  # without a seed, each call draws afresh
    with pytest.raises(ValueError, match="num_beams"):
        translator.generate(TEXTS[:1], num_return_sequences=2)


def test_translation_has_the_rules_bridges_recipe_and_falls_back_on_broken_syntax(translator):
    recipe = Recipe(prompt="a (castle:1.3) on a hill, 8k", negative_prompt="blurry", width=512, height=512)
    rules = load_translator("rules").translate(recipe)
    result = translator.translate(recipe)
    assert isinstance(result, Translation)
    assert (result.recipe.width, result.recipe.height, result.recipe.model) == (768, 768, "sd2")
    raw = translator.last_raw[0]
    if translator.encode(recipe).problems(raw):  # the untrained model breaks a placeholder: the rules' prompt
        assert result.prompt == rules.prompt
        assert any("broke protected syntax" in w and "used the rules bridge's prompt" in w for w in result.warnings)
    else:
        assert result.prompt != rules.prompt


def test_an_intact_output_is_restored_with_the_rules_bridges_size(translator, monkeypatch):
    recipe = Recipe(prompt="a (castle:1.3) <lora:detail:0.6> BREAK fog", negative_prompt="(blurry:1.2)",
                    width=512, height=768)
    example = translator.encode(recipe)
    assert example.input_text == ("sd15 to sd2: a <extra_id_0>castle<extra_id_1> <extra_id_2> fog"
                                  " negative: <extra_id_3>blurry<extra_id_4>")
    raw = "a <extra_id_0>stone castle<extra_id_1> <extra_id_2> morning fog negative: <extra_id_3>blurry<extra_id_4>, text"
    monkeypatch.setattr(translator, "generate", lambda texts, **kw: [[raw] for _ in texts])
    [result] = translator.translate_batch([recipe])
    assert result.prompt == "a (stone castle:1.3) BREAK morning fog"
    assert result.negative_prompt == "(blurry:1.2), text"
    assert (result.recipe.width, result.recipe.height) == (640, 960)
    assert [c.rule for c in result.changes] == ["networks", "seq2seq", "seq2seq", "size"]
    assert any("removed <lora:detail:0.6>" in w for w in result.warnings)
    assert translator.last_raw == [raw]


def test_a_pair_without_rules_bridge_keeps_the_prompt_and_takes_size_from_the_structural_stages(translator):
    reverse = Seq2SeqTranslator(translator.model, translator.tokenizer, BridgeInfo("sdxl", "sd15"))
    prompt = "a castle, by greg rutkowski, 8k <lora:x:1>"
    result = reverse.translate(Recipe(prompt=prompt, width=1024, height=1024))
    assert (result.recipe.width, result.recipe.model) == (512, "sd15")
    assert any("removed <lora:x:1>" in w for w in result.warnings)
    if reverse.encode(Recipe(prompt=prompt)).problems(reverse.last_raw[0]):
        assert result.prompt == "a castle, by greg rutkowski, 8k"  # no rule rewrote it: only the network policy


def test_keep_networks_carries_the_tag_through_a_placeholder(translator, monkeypatch):
    options = TranslationOptions(networks="keep")
    example = translator.encode(Recipe(prompt="a cat <lora:x:1>"), options)
    assert example.prompt.slots == {"<extra_id_0>": "<lora:x:1>"}
    monkeypatch.setattr(translator, "generate", lambda texts, **kw: [["a tabby cat <extra_id_0> negative: "]])
    assert translator.translate("a cat <lora:x:1>", options).prompt == "a tabby cat <lora:x:1>"


def test_candidates_restore_and_report_problems(translator):
    [candidates] = translator.candidates(["a (castle:1.3)"], num_beams=2, num_return_sequences=2)
    assert len(candidates) == 2
    for c in candidates:
        assert c.problems == translator.encode(Recipe(prompt="a (castle:1.3)")).problems(c.raw)


def test_encode_example_aligns_targets_and_skips_those_that_drop_syntax():
    example = encode_example("a (castle:1.3)", "", source="sd15", target="sd2", target_prompt="a (stone castle:1.2)",
                             target_negative="blurry")
    assert example.target_text == "a <extra_id_0>stone castle<extra_id_1> negative: blurry"
    assert example.reference == "a (stone castle:1.3) negative: blurry"
    assert encode_example("a (castle:1.3)", "", source="sd15", target="sd2", target_prompt="a castle") is None
    assert protect("a (castle:1.3)").text in example.input_text


def test_rerank_orders_by_score_best_first():
    ranked = rerank("a cat", ["a dog", "a cat, photo", "a cat"], lambda p, cands: [len(set(p) & set(c)) for c in cands])
    assert ranked[0][0] in ("a cat, photo", "a cat") and ranked[-1] == ("a dog", 2.0)
    with pytest.raises(ValueError, match="2 scores for 3 candidates"):
        rerank("a", ["x", "y", "z"], lambda p, c: [1, 2])


# Issue 17: pickled weights run code as they load; only safetensors unless trusted.


@pytest.fixture(scope="module")
def pickled_dir(bridge_dir, tmp_path_factory, translator):
    """The same bridge with its weights pickled (pytorch_model.bin) instead of safetensors."""
    import shutil

    import torch

    folder = tmp_path_factory.mktemp("pickled")
    for path in bridge_dir.iterdir():
        if path.suffix != ".safetensors" and path.is_file():
            shutil.copy(path, folder / path.name)
    torch.save(translator.model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_pickled_weights_are_refused_unless_trusted(pickled_dir, translator):
    from bridge.learned.seq2seq import PickledWeightsError

    with pytest.raises(PickledWeightsError, match=r"pickled weights \(pytorch_model\.bin\).*--trust-pickle"):
        Seq2SeqTranslator.from_pretrained(pickled_dir, device="cpu")
    with pytest.raises(PickledWeightsError):
        load_translator(str(pickled_dir))
    trusted = Seq2SeqTranslator.from_pretrained(pickled_dir, device="cpu", backend="hf", trust_pickle=True)
    assert trusted.generate(TEXTS[:2]) == translator.generate(TEXTS[:2])


def test_a_hostile_pickle_is_never_opened(tmp_path, bridge_dir):
    import pickle
    import shutil

    marker = tmp_path / "ran"
    for path in bridge_dir.iterdir():
        if path.suffix != ".safetensors" and path.is_file():
            shutil.copy(path, tmp_path / path.name)
    payload = pickle.dumps(_Touch(str(marker)))  # unpickling it creates `marker`
    (tmp_path / "pytorch_model.bin").write_bytes(payload)

    from bridge.cli import main

    assert main(["--model", str(tmp_path), "a castle"]) == 2
    assert not marker.exists()


def test_the_cli_and_export_take_trust_pickle(pickled_dir, capsys):
    from bridge.cli import main
    from bridge.export import main as export_main

    assert main(["--model", str(pickled_dir), "--backend", "hf", "a castle"]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert main(["--model", str(pickled_dir), "--backend", "hf", "--trust-pickle", "--format", "json", "a castle"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"]
    assert main(["--trust-pickle", "a castle"]) == 2
    assert "--trust-pickle applies to a learned bridge" in capsys.readouterr().err
    pytest.importorskip("ctranslate2")
    assert export_main([str(pickled_dir)]) == 2
    assert "pickled weights" in capsys.readouterr().err and not (pickled_dir / "ct2").exists()


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))
