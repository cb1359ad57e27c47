"""training/README.md's "Bridge the next model" guide, walked end to end for a toy pair (CPU, well under a minute).

Two tiny pipelines with different text encoders stand for two model generations: "toy-old" (SD1-style: a 32-d CLIP
text encoder, last layer, epsilon prediction) and "toy-new" (SD2-style: a 48-d OpenCLIP-style encoder, penultimate
layer, v-prediction, native size 48). A user registry file registers both and a rules bridge between them with its
own knowledge file; then only the public commands run, in process, as the guide gives them: data/build_pairs.py
(renders with toy-new's folder, scores against toy-old's renders too), training/train.py, eval/evaluate.py and
translate-prompt (with --model, then with the trained bridge registered as a seq2seq bridge).
"""

import csv
import io
import json
import re
import shlex
import time
from itertools import pairwise
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("open_clip")
datasets = pytest.importorskip("datasets")

from script_loader import load_script

from bridge import cli
from bridge.models import use_registry

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a castle on a hill, trending on artstation, 8k"
QUALITY_TAGS = ["8k", "4k", "trending on artstation", "masterpiece", "best quality"]
TOY_NEGATIVE = "blurry, lowres"
PROMPTS = [
    "a castle on a hill, by greg rutkowski, trending on artstation, 8k",
    "portrait of a knight, masterpiece, best quality, highly detailed",
    "a lighthouse on a cliff at dusk, octane render, 4k",
    "a red fox in the snow, soft light, 8k",
    "a busy market street, rain, neon signs, trending on artstation",
    "an old sailing ship in a storm, oil painting, masterpiece",
    "a bowl of fruit on a table, still life, best quality",
    "a dragon flying over mountains, epic, 4k, trending on artstation",
    "a cat sleeping on a windowsill, morning light, 8k",
    "a futuristic city at night, cyberpunk, masterpiece, 4k",
    "a forest path in autumn, fog, golden hour, best quality",
    "an astronaut riding a horse, digital art, 8k",
]
MAX_SECONDS = 150

KNOWLEDGE = f"""
[meta]
id = "toy_old_to_new"

[[rule]]
id = "magic.quality"
action = "drop"
match = {json.dumps(QUALITY_TAGS)}
fact = "F-QUALITY-TAGS"
reason = "toy-new ignores quality tags"

[[rule]]
id = "negative"
kind = "negative"
fact = "F-NEGATIVE"
reason = "toy-new needs a negative prompt"

[[negative]]
kind = "default"
prompt = "{TOY_NEGATIVE}"

[[rule]]
id = "size"
kind = "size"
fact = "F-SIZE"
multiple = 16
reason = "toy-new renders best at its native size"

[[rule]]
id = "settings"
kind = "settings"
fact = "F-SIZE"
reason = "steps, CFG scale and sampler from toy-new's defaults"
"""

MODELS = """
[models.toy-old]
name = "Toy old generation (tiny SD1-style pipeline)"
hub_id = "toy/toy-old"
family = "sd1"
text_encoder = "tiny CLIP, 32-d, last layer"
text_encoder_id = "tiny-clip-32"
clip_layer = "last"
text_dim = 32
native_size = 32
prediction_type = "epsilon"
chunk_tokens = 75
pad_token = "<|endoftext|>"
default_steps = 2
default_cfg_scale = 7.0
default_sampler = "Euler"

[models.toy-new]
name = "Toy new generation (tiny SD2-style pipeline)"
hub_id = "toy/toy-new"
family = "sd2"
text_encoder = "tiny OpenCLIP, 48-d, penultimate layer"
text_encoder_id = "tiny-openclip-48"
clip_layer = "penultimate"
text_dim = 48
native_size = 48
prediction_type = "v_prediction"
chunk_tokens = 75
pad_token = "!"
default_steps = 2
default_cfg_scale = 6.0
default_sampler = "Euler"
"""


build_pairs = load_script("build_pairs_script", REPO / "data" / "build_pairs.py")
train = load_script("train_script", REPO / "training" / "train.py")
evaluate = load_script("evaluate_script", REPO / "eval" / "evaluate.py")


def translate_prompt(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdin=io.StringIO(""), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def bridge_table(**fields: str) -> str:
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in fields.items())
    return f'\n[[bridges]]\nsource = "toy-old"\ntarget = "toy-new"\n{lines}\n'


def learned_rewrite(translation: dict, bridge: str, hop: str | None = None) -> bool:
    """Whether the learned bridge at ``bridge`` rewrote the prompt (its "seq2seq" change, naming the bridge)."""
    return any(c["rule"] == "seq2seq" and f"learned bridge {bridge} " in c["reason"] and c.get("hop") == hop
               for c in translation["changes"])


@pytest.fixture(autouse=True)
def packaged_registry_after_each_test():
    yield
    use_registry(None)


@pytest.fixture(scope="module")
def walk(tmp_path_factory, torch_one_thread):
    """The guide's steps 1-5 for the toy pair; the folders they wrote and the seconds they took."""
    from bridge.testing import save_tiny_pipeline

    root = tmp_path_factory.mktemp("next_model")
    started = time.perf_counter()
    old, new = save_tiny_pipeline("sd1", root / "toy-old"), save_tiny_pipeline("sd2", root / "toy-new")
    # 1. the models and the rules bridge in a user registry file; 2. the bridge's knowledge file
    knowledge = root / "toy_old_to_new.toml"
    knowledge.write_text(KNOWLEDGE, encoding="utf-8")
    registry = root / "models.toml"
    registry.write_text(MODELS + bridge_table(kind="rules", knowledge=str(knowledge), description="toy rules"),
                        encoding="utf-8")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    try:
        # 3. build pairs: render with toy-new's folder, score against toy-old's images of the source prompts too
        assert build_pairs.main(["--registry", str(registry), "--source", "toy-old", "--target", "toy-new",
                                 "--target-weights", str(new), "--sd1-weights", str(old), "--tiny",
                                 "--corpus", str(root / "prompts.txt"), "--margin", "0",
                                 "--out", str(root / "pairs")]) == 0
        # 4. train
        assert train.main(["--registry", str(registry), "--source", "toy-old", "--target", "toy-new", "--tiny",
                           "--data", str(root / "pairs"), "--steps", "60", "--eval-every", "0", "--save-every", "0",
                           "--out", str(root / "bridge")]) == 0
        # 5. evaluate
        assert evaluate.main(["--registry", str(registry), "--source", "toy-old", "--target", "toy-new",
                              "--target-weights", str(new), "--tiny", "--prompts", str(root / "prompts.txt"),
                              "--limit", "4", "--learned", str(root / "bridge"), "--out", str(root / "eval")]) == 0
    finally:
        use_registry(None)
    return {"root": root, "old": old, "new": new, "registry": registry, "knowledge": knowledge,
            "seconds": time.perf_counter() - started}


def test_the_toy_models_have_different_text_encoders(walk):
    old, new = (json.loads((walk[k] / "text_encoder" / "config.json").read_text()) for k in ("old", "new"))
    assert (old["hidden_size"], new["hidden_size"]) == (32, 48)
    assert old["hidden_act"] != new["hidden_act"]


def test_the_walk_is_fast(walk):
    assert walk["seconds"] < MAX_SECONDS


def test_pairs_are_built_with_the_toy_models_and_load_with_datasets(walk):
    out = walk["root"] / "pairs"
    pairs = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert len(pairs) == len(PROMPTS) and (out / "index.json").is_file() and (out / "README.md").is_file()
    assert set(pairs["model"]) == {str(walk["new"])}  # rendered by toy-new's pipeline, not a random one
    assert any(pairs["kept"]) and set(pairs["split"]) <= {"train", "rejected"}
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["source"], config["target"], config["registry"]) == ("toy-old", "toy-new", str(walk["registry"]))
    for row in pairs:
        candidates = {c["name"]: c for c in json.loads(row["candidates"])}
        rules = candidates["rules"]  # the toy knowledge: quality tags dropped, the toy negative added
        assert rules["negative_prompt"] == TOY_NEGATIVE
        assert not {p.strip() for p in rules["prompt"].split(",")} & set(QUALITY_TAGS)
        for candidate in candidates.values():
            # toy-old's pipeline rendered each source prompt: the image-image signal is there for every render
            assert all(score["sd1_image"] is not None for score in candidate["scores"])
        used = json.loads(row["recipe"])  # what the renderer used: toy-new's spec, --tiny's size and steps
        assert (used["model"], used["prediction_type"], used["width"], used["steps"]) == ("toy-new", "v_prediction",
                                                                                           32, 2)


def test_a_bridge_is_trained_for_the_toy_pair(walk):
    bridge = walk["root"] / "bridge"
    info = json.loads((bridge / "bridge.json").read_text())
    assert (info["source"], info["target"]) == ("toy-old", "toy-new")
    assert info["data"]["train_pairs"] >= 1
    config = tomllib.loads((bridge / "train_config.toml").read_text())
    assert config["registry"] == str(walk["registry"])


def test_evaluation_compares_the_learned_bridge_on_toy_new(walk):
    out = walk["root"] / "eval"
    results = json.loads((out / "results.json").read_text())
    assert (results["source"], results["target"], results["model"]) == ("toy-old", "toy-new", str(walk["new"]))
    assert list(results["translators"]) == ["identity", "rules", "learned"] and results["skipped"] == {}
    assert results["translators"]["learned"]["rows"] == 4 * len(results["seeds"])
    with open(out / "rows.csv", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert {row["translator"] for row in rows} == {"identity", "rules", "learned"}
    assert all(row["negative_prompt"] == TOY_NEGATIVE for row in rows if row["translator"] == "rules")


def test_translate_prompt_uses_the_rules_bridge_and_the_trained_bridge(walk):
    registry, bridge = str(walk["registry"]), str(walk["root"] / "bridge")
    code, out, err = translate_prompt("--registry", registry, "--from", "toy-old", "--to", "toy-new",
                                      "--format", "json", PROMPT)
    assert code == 0, err
    ruled = json.loads(out)
    assert (ruled["prompt"], ruled["negative_prompt"], ruled["width"]) == ("a castle on a hill", TOY_NEGATIVE, 48)

    code, out, err = translate_prompt("--registry", registry, "--model", bridge, "--format", "json", PROMPT)
    assert code == 0, err
    learned = json.loads(out)
    assert (learned["source"], learned["target"], learned["width"]) == ("toy-old", "toy-new", 48)
    assert learned_rewrite(learned, bridge) and not any(c["rule"].startswith("magic.") for c in learned["changes"])


def test_a_registered_seq2seq_bridge_is_used_by_from_and_to_and_by_chains(walk):
    bridge = str(walk["root"] / "bridge")
    # 6. the trained bridge replaces the rules bridge on the route; an older model reaches toy-new through it
    registry = walk["root"] / "models-learned.toml"
    registry.write_text(MODELS + bridge_table(kind="seq2seq", model=bridge, description="toy learned")
                        + f'\n[[bridges]]\nsource = "sd15"\ntarget = "toy-old"\nkind = "rules"\n'
                          f'knowledge = {json.dumps(str(walk["knowledge"]))}\n', encoding="utf-8")
    code, out, err = translate_prompt("--registry", str(registry), "--list-models")
    assert code == 0 and "toy-old -> toy-new  (seq2seq)" in out, err

    code, out, err = translate_prompt("--registry", str(registry), "--from", "toy-old", "--to", "toy-new",
                                      "--format", "json", PROMPT)
    assert code == 0, err
    direct = json.loads(out)
    assert (direct["source"], direct["target"]) == ("toy-old", "toy-new")
    assert learned_rewrite(direct, bridge) and not any(c["rule"].startswith("magic.") for c in direct["changes"])

    code, out, err = translate_prompt("--registry", str(registry), "--from", "sd15", "--to", "toy-new",
                                      "--format", "json", PROMPT)
    assert code == 0, err
    chained = json.loads(out)
    assert (chained["source"], chained["target"]) == ("sd15", "toy-new")
    assert {c["hop"] for c in chained["changes"]} == {"sd15->toy-old", "toy-old->toy-new"}
    assert learned_rewrite(chained, bridge, hop="toy-old->toy-new")  # the second hop is the learned bridge


# ---- the guide itself: its TOML examples load and its commands parse, so it cannot drift from the code

GUIDE, SDXL_EXAMPLE = ((REPO / "training" / "README.md").read_text(encoding="utf-8")
                       .split("## Bridge the next model", 1)[1].split("### Example: SD 2.1 → SDXL", 1))
SCRIPTS = {"data/build_pairs.py": lambda argv: build_pairs.parse_args(argv),
           "eval/evaluate.py": lambda argv: evaluate.parse_args(argv),
           "training/train.py": lambda argv: train.parse_config(argv),
           "translate-prompt": lambda argv: cli.build_parser().parse_args(argv)}


def guide_blocks(language: str, text: str = GUIDE) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def command_words(block: str) -> list[str]:
    """A guide command as the script's argv, its first word the script's name (accelerate and python dropped)."""
    words = shlex.split(block.replace("\\\n", " "))
    words = words[2:] if words[:2] == ["accelerate", "launch"] else words
    return words[1:] if words[0] == "python" else words


def test_the_guides_registry_and_knowledge_examples_work(tmp_path):
    registry_toml, knowledge_toml, learned_toml = guide_blocks("toml")
    knowledge = tmp_path / "sd21_to_newgen.toml"
    knowledge.write_text(knowledge_toml, encoding="utf-8")
    registry = tmp_path / "my_models.toml"
    registry.write_text(re.sub(r'knowledge = "[^"]*"', f"knowledge = {json.dumps(str(knowledge))}", registry_toml),
                        encoding="utf-8")
    code, out, err = translate_prompt("--registry", str(registry), "--from", "sd21", "--to", "newgen", "--format",
                                      "json", "a castle on a hill, trending on artstation, 8k")
    assert code == 0, err
    row = json.loads(out)
    assert (row["prompt"], row["width"], row["negative_prompt"]) == ("a castle on a hill", 768,
                                                                     "blurry, lowres, watermark")
    assert tomllib.loads(learned_toml)["bridges"][0]["kind"] == "seq2seq"


def test_the_guides_commands_parse(tmp_path, monkeypatch):
    registry = tmp_path / "my_models.toml"
    registry.write_text(guide_blocks("toml")[0], encoding="utf-8")
    monkeypatch.chdir(REPO)  # --config training/configs/...
    parsed = set()
    for block in guide_blocks("bash"):
        command = " ".join(block.replace("\\\n", " ").split())
        words = command.replace("my_models.toml", str(registry)).split()
        words = words[2:] if words[:2] == ["accelerate", "launch"] else words
        words = words[1:] if words[0] == "python" else words
        assert words[0] in SCRIPTS, command
        args = SCRIPTS[words[0]](words[1:])
        assert args.registry == str(registry), command
        if words[0] != "translate-prompt":
            assert (args.source, args.target) == ("sd21", "newgen"), command
        parsed.add(words[0])
    assert parsed == set(SCRIPTS)


def test_a_missing_or_broken_registry_is_a_usage_error(tmp_path, capsys):
    broken = tmp_path / "broken.toml"
    broken.write_text('[models.newgen]\nname = "no other field"\n', encoding="utf-8")
    for registry, says in ((tmp_path / "missing.toml", "no such registry file"), (broken, "missing field(s)")):
        common = ["--registry", str(registry), "--source", "toy-old", "--target", "toy-new", "--tiny",
                  "--out", str(tmp_path / "out")]
        assert build_pairs.main(common) == 2
        assert evaluate.main(common) == 2
        assert train.main(common) == 2
        err = capsys.readouterr().err
        assert err.count(says) == 3 and err.count(str(registry)) >= 3, err


def test_the_guides_sdxl_example_walks_on_tiny_models(tmp_path, monkeypatch, torch_one_thread):
    """The SD 2.1 -> SDXL example's commands, each run as written with --tiny in place of --target-weights, small
    inputs and outputs under tmp_path: pairs rendered by the tiny SDXL pipeline, a bridge trained on them, an
    evaluation on SDXL, and translate-prompt with the bridge."""
    monkeypatch.chdir(REPO)  # --config training/configs/...
    blocks = [command_words(block) for block in guide_blocks("bash", SDXL_EXAMPLE)]
    assert [words[0] for words in blocks] == ["data/build_pairs.py", "training/train.py", "eval/evaluate.py",
                                             "translate-prompt"]
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    small = {"--corpus": str(tmp_path / "prompts.txt"), "--prompts": str(tmp_path / "prompts.txt"), "--limit": "4"}
    scripts = {"data/build_pairs.py": (build_pairs.main, ["--margin", "0"]),
               # accelerate keeps one state per process: the guide's config asks for bf16, the walk above ran with none
               "training/train.py": (train.main, ["--steps", "20", "--eval-every", "0", "--save-every", "0",
                                                  "--mixed-precision", "no"]),
               "eval/evaluate.py": (evaluate.main, [])}
    for words in blocks[:3]:
        argv = ["--tiny"]
        for previous, word in pairwise(words):
            if "--target-weights" in (previous, word):
                continue  # --tiny renders with the tiny SDXL pipeline instead
            if previous in ("--out", "--data", "--learned"):
                word = str(tmp_path / word)
            argv.append(small.get(previous, word))
        assert ("--source", "sd21") == tuple(argv[argv.index("--source"):][:2])
        assert ("--target", "sdxl") == tuple(argv[argv.index("--target"):][:2])
        main, extra = scripts[words[0]]
        assert main(argv + extra) == 0, words
    pairs = json.loads((tmp_path / "runs/pairs_sd21_sdxl/config.json").read_text())["config"]
    assert (pairs["target"], pairs["model_id"]) == ("sdxl", "tiny-sdxl-seed0")
    info = json.loads((tmp_path / "runs/sd21_to_sdxl/bridge.json").read_text())
    assert (info["source"], info["target"]) == ("sd21", "sdxl")
    results = json.loads((tmp_path / "runs/eval-sd21_to_sdxl/results.json").read_text())
    assert (results["target"], results["model"]) == ("sdxl", "tiny-sdxl-seed0")
    assert list(results["translators"]) == ["identity", "rules", "learned"]
    translate = blocks[3]
    model = translate.index("--model") + 1
    translate[model] = str(tmp_path / translate[model])
    code, out, err = translate_prompt(*translate[1:], "--format", "json")
    assert code == 0, err
    assert (json.loads(out)["source"], json.loads(out)["target"]) == ("sd21", "sdxl")
