"""The ComfyUI node (integrations/comfyui) against ComfyUI's contracts, read in ComfyUI's source, without ComfyUI.

- comfy/sd1_clip.py, SDTokenizer.tokenize_with_weights / _try_get_embedding / load_embed: ``embedding:NAME`` words.
- execution.py, validate_inputs: VALIDATE_INPUTS gets the constant inputs its signature names (None for a linked
  one), and anything but True is reported as the error, before the queue runs.
- nodes.py, init_external_custom_nodes / load_custom_node: each entry of custom_nodes is imported by its path there
  (a link is not resolved) with importlib.util.spec_from_file_location(<path, '.' -> '_x_'>, <path>/__init__.py);
  NODE_CLASS_MAPPINGS registers the nodes, and a module without it is skipped and listed as IMPORT FAILED.
"""

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from script_loader import load_script

from bridge.models import find_path

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = REPO / "integrations" / "comfyui"


@pytest.fixture(scope="module")
def pack():
    return load_script("prompt_bridge_comfyui_pack", NODE_DIR / "__init__.py")


@pytest.fixture()
def node(pack):
    return pack.NODE_CLASS_MAPPINGS["PromptBridge"]()


def run(node, text, negative="", source="sd15", target="sd21", **options):
    return node.translate(text, negative, source, target, 512, 512, **options)


# 1. embedding:NAME ---------------------------------------------------------------------------------------------------


def test_embedding_words_are_flagged_and_removed_like_a1111_names(node):
    """The issue's prompt: ``a castle, embedding:easynegative`` used to come out as ``a castle, embedding:, ...``."""
    positive, negative, *_, report = run(node, "a castle, embedding:easynegative", "embedding:easynegative, blurry")
    assert positive == "a castle"
    assert "embedding" not in negative and negative.startswith("blurry")
    assert "removed embedding 'easynegative' from the prompt" in report
    assert "removed embedding 'easynegative' from the negative prompt" in report


def test_embedding_of_the_users_own_is_flagged_and_a_kept_one_keeps_its_prefix(node):
    """An embedding: word names an SD1 embedding even when the bridge does not know the name (it goes to translate's
    ``embeddings``); kept (networks=keep), it is written back with its prefix and spelling."""
    positive, *_, report = run(node, "portrait, (embedding:chars/my_char.pt:1.2)")
    assert positive == "portrait" and "removed embedding 'my_char'" in report
    positive, negative, *_, report = run(node, "portrait, (embedding:chars/my_char.pt:1.2)", "embedding:easynegative",
                                         networks="keep")
    assert "(embedding:chars/my_char.pt:" in positive and "embedding:easynegative" in negative
    assert "kept embedding 'my_char'" in report


# 2. report -----------------------------------------------------------------------------------------------------------


def test_report_is_the_last_output_and_lists_warnings_and_notices(node, caplog):
    """A removed LoRA says which ComfyUI node loads one; the rules' command-line hint is worded for the node; every
    warning is logged too."""
    assert type(node).RETURN_TYPES[-1] == "STRING" and type(node).RETURN_NAMES[-1] == "report"
    with caplog.at_level(logging.INFO, logger="prompt_bridge"):
        *_, report = run(node, "a castle, by greg rutkowski, <lora:detail:0.6>, 8k")
    lines = report.splitlines()
    assert lines[0].startswith("Prompt Bridge sd15 -> sd21: ")
    assert any("<lora:detail:0.6>" in line and "LoraLoader node" in line for line in lines)
    assert any(line.startswith("changed (networks)") for line in lines)
    assert "--keep-networks" not in report and "networks input to keep" in report
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("LoraLoader" in message for message in logged)


# 3. VALIDATE_INPUTS --------------------------------------------------------------------------------------------------


def test_validate_inputs_rejects_pairs_without_a_bridge(pack):
    cls = pack.NODE_CLASS_MAPPINGS["PromptBridge"]
    assert cls.VALIDATE_INPUTS(source="sd15", target="sd21") is True
    assert cls.VALIDATE_INPUTS(source="sd15", target="sd14") == (
        "Prompt Bridge: " + _no_bridge("sd15", "sd14"))
    assert "unknown target model 'sd9'" in cls.VALIDATE_INPUTS(source="sd15", target="sd9")
    assert cls.VALIDATE_INPUTS(source=None, target="sd21") is True  # linked: known only when it runs


def _no_bridge(source, target):
    with pytest.raises(ValueError) as error:
        find_path(source, target)
    return str(error.value)


# 4. installing -------------------------------------------------------------------------------------------------------

LOADER = textwrap.dedent("""
    import importlib.util, json, logging, os, sys
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    assert importlib.util.find_spec("bridge") is None, "bridge must not be installed here"
    module_path = sys.argv[1]
    name = module_path.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(module_path, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    out = None
    if mappings:
        out = mappings["PromptBridge"]().translate("a castle, embedding:easynegative", "", "sd15", "sd21", 512, 512)
    print(json.dumps({"nodes": sorted(mappings or {}), "out": out}))
""")


def _load_as_comfyui(module_path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """ComfyUI's load_custom_node, in a Python where ``bridge`` is not installed (no site-packages: -S; tomli on
    Python 3.10 is copied to a folder of its own, since its site-packages may hold an installed ``bridge``)."""
    extra = []
    if sys.version_info < (3, 11):
        deps = tmp_path / "deps"
        shutil.copytree(Path(importlib.util.find_spec("tomli").origin).parent, deps / "tomli")
        extra.append(str(deps))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join(extra)
    env["PROMPT_BRIDGE_NO_CACHE"] = "1"
    return subprocess.run([sys.executable, "-S", "-c", LOADER, str(module_path)], check=False, cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


def test_linked_folder_imports_the_core_from_its_clone(tmp_path):
    custom_nodes = tmp_path / "ComfyUI" / "custom_nodes"
    custom_nodes.mkdir(parents=True)
    link = custom_nodes / "prompt_bridge"
    try:
        link.symlink_to(NODE_DIR, target_is_directory=True)
    except OSError:
        pytest.skip("no symlinks here")
    done = _load_as_comfyui(link, tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["nodes"] == ["PromptBridge", "PromptBridgeParts"] and result["out"][0] == "a castle"


def test_copied_folder_says_what_to_do_in_one_line(tmp_path, pack):
    copy = tmp_path / "ComfyUI" / "custom_nodes" / "prompt_bridge"
    shutil.copytree(NODE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    done = _load_as_comfyui(copy, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"] == []  # no NODE_CLASS_MAPPINGS: ComfyUI lists it as IMPORT FAILED
    assert done.stderr.strip() == pack.MISSING_CORE and "\n" not in pack.MISSING_CORE
    assert "ln -s" in pack.MISSING_CORE


def test_requirements_hold_only_what_the_project_declares():
    """requirements.txt (run by ComfyUI-Manager, or by hand) adds nothing the package does not already declare."""
    toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = toml.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)}
    lines = (NODE_DIR / "requirements.txt").read_text(encoding="utf-8").splitlines()
    requirements = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert requirements and all(r in declared for r in requirements)
    assert not any(r.split(">")[0].split("=")[0] in ("torch", "prompt-bridge") for r in requirements)


# 5. BREAK and AND: the parts node --------------------------------------------------------------------------------------


def test_parts_node_returns_break_and_and_parts_for_concat_and_combine(pack):
    """ComfyUI's nodes.py: ConditioningConcat.concat(conditioning_to, conditioning_from) appends the first cond of
    conditioning_from along the token axis (A1111's BREAK: a new 75-token chunk); ConditioningCombine.combine(
    conditioning_1, conditioning_2) returns both conds (AND: composable diffusion). The parts node gives each part
    for its own CLIPTextEncode, how many there are and the layout that says which join goes where."""
    cls = pack.NODE_CLASS_MAPPINGS["PromptBridgeParts"]
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["PromptBridgeParts"] == "Prompt Bridge (parts)"
    assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS)
    assert cls.RETURN_NAMES[-1] == "report" and cls.INPUT_TYPES()["optional"]["dialect"][1]["default"] == "a1111"
    out = dict(zip(cls.RETURN_NAMES, cls().translate_parts(
        "a castle on a hill, (stone:1.3) BREAK thick fog AND a dragon", "blurry", "sd15", "sd21", 512, 512,
        disable_rules="emphasis")))
    assert [out["part_1"], out["part_2"], out["part_3"], out["part_4"]] == [
        "a castle on a hill, (stone:1.3)", "thick fog", "a dragon", ""]
    assert out["count"] == 3 and out["layout"] == "part_1 BREAK part_2 AND part_3"
    assert "layout: part_1 BREAK part_2 AND part_3" in out["report"] and "BREAK:" not in out["report"]
    assert out["negative"].startswith("blurry") and (out["width"], out["height"]) == (768, 768)


def test_parts_node_joins_what_does_not_fit_into_the_last_output(pack):
    node = pack.NODE_CLASS_MAPPINGS["PromptBridgeParts"]()
    parts = node.translate_parts("a BREAK b BREAK c AND d BREAK e", "", "sd15", "sd21", 512, 512)
    assert parts[:6] == ("a", "b", "c", "d, e", 4, "part_1 BREAK part_2 BREAK part_3 AND part_4")
    assert "5 parts: this node has 4 outputs" in parts[-1]
    assert node.translate_parts(" ", "", "sd15", "sd21", 512, 512)[4:6] == (0, "")


# 6. weight strength ----------------------------------------------------------------------------------------------------


def test_weights_option_rescales_by_a1111s_mean_factor(node):
    """comfy/sd1_clip.py, ClipTokenWeightEncoder.encode_token_weights: z = (z - z_empty) * w + z_empty, no mean
    restored; A1111's process_tokens multiplies z by the weights and rescales the chunk to its original mean. The
    option multiplies each weight by 77 / (77 + sum(w - 1)) over its chunk's tokens; 'as written' is unchanged."""
    prompt = ", ".join(["(castle:1.5)"] * 20)  # 20 weighted tokens: 77 / (77 + 10) = 0.885 -> 1.33
    as_written, *_, report = run(node, prompt, disable_rules="emphasis")
    assert as_written == prompt and "rescaled" not in report and "strength can differ" in report
    rescaled, *_, report = run(node, prompt, disable_rules="emphasis", weights="rescale for ComfyUI")
    assert rescaled == ", ".join(["(castle:1.33)"] * 20)
    assert "notice: weights rescaled for ComfyUI" in report
    assert type(node).INPUT_TYPES()["optional"]["weights"][0] == ["as written", "rescale for ComfyUI"]
    with pytest.raises(ValueError, match="unknown weights option"):
        run(node, prompt, weights="louder")


# 7. a learned bridge folder --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bridge_folder(tmp_path_factory):
    """A tiny sd15 -> sd21 learned bridge with its CTranslate2 copy (tests/tiny_bridge.py)."""
    for name in ("torch", "transformers", "ctranslate2", "tokenizers"):
        pytest.importorskip(name)
    from tiny_bridge import make_bridge

    return make_bridge(tmp_path_factory.mktemp("comfyui") / "bridge")


def test_bridge_folder_runs_the_learned_bridge_on_ctranslate2_loaded_once(pack, bridge_folder, monkeypatch):
    node_module = sys.modules[pack.NODE_CLASS_MAPPINGS["PromptBridge"].__module__]
    monkeypatch.setattr(node_module, "_LEARNED", {})
    loads = []
    real_load = node_module.load_translator
    monkeypatch.setattr(node_module, "load_translator", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    node = pack.NODE_CLASS_MAPPINGS["PromptBridge"]()
    first = run(node, "a (castle:1.3), 8k", "", bridge_folder=str(bridge_folder))
    [learned] = node_module._LEARNED.values()
    assert learned.backend == "ct2" and (learned.source, learned.target) == ("sd15", "sd21")
    assert f"note: translated by the learned bridge in {bridge_folder} on ct2" in first[-1]
    raw = "a stone <extra_id_0>castle<extra_id_1> on a hill negative: blurry"  # what a trained model would write
    monkeypatch.setattr(learned, "generate", lambda texts, **kw: [[raw] for _ in texts])
    positive, negative, width, height, report = run(node, "a (castle:1.3), 8k", "", bridge_folder=str(bridge_folder))
    assert (positive, negative, width, height) == ("a stone (castle:1.3) on a hill", "blurry", 768, 768)
    assert "changed (seq2seq)" in report
    parts = pack.NODE_CLASS_MAPPINGS["PromptBridgeParts"]().translate_parts(
        "a (castle:1.3), 8k", "", "sd15", "sd21", 512, 512, bridge_folder=str(bridge_folder) + "/")
    assert parts[0] == "a stone (castle:1.3) on a hill"
    assert len(loads) == 1  # one load per process, whichever node and however the folder is written


def test_bridge_folder_errors_say_what_to_do(pack, bridge_folder, tmp_path):
    cls = pack.NODE_CLASS_MAPPINGS["PromptBridge"]
    assert cls.VALIDATE_INPUTS(source="sd15", target="sd21", bridge_folder=str(bridge_folder)) is True
    assert cls.VALIDATE_INPUTS(source="sd15", target="sd21", bridge_folder="") is True
    problem = cls.VALIDATE_INPUTS(source="sd15", target="sd21", bridge_folder=str(tmp_path))
    assert problem.startswith("Prompt Bridge: no bridge.json in bridge_folder") and "\n" not in problem
    with pytest.raises(ValueError, match="translates sd15 -> sd21, not sd15 -> sdxl: set source and target"):
        run(cls(), "a castle", target="sdxl", bridge_folder=str(bridge_folder))


# Issue 17: the same model, reverse pairs, hostile weights --------------------------------------------------------


@pytest.mark.parametrize("dialect", ["comfyui", "a1111"])
def test_the_same_model_on_both_sides_passes_the_prompt_through_unchanged(pack, node, dialect):
    cls = pack.NODE_CLASS_MAPPINGS["PromptBridge"]
    assert cls.VALIDATE_INPUTS(source="sd15", target="sd15") is True
    text, negative = "a (castle:1.2), by greg rutkowski, <lora:detail:0.6> BREAK 8k", "ugly, (blurry)"

    positive, negative_out, width, height, report = run(node, text, negative, target="sd15", dialect=dialect)

    assert (positive, negative_out, width, height) == (text, negative, 512, 512)
    assert report == "Prompt Bridge sd15 -> sd15: the same model on both sides: the prompt passes through unchanged"


def test_the_parts_node_splits_a_same_model_prompt_without_translating_it(pack):
    parts = pack.NODE_CLASS_MAPPINGS["PromptBridgeParts"]()
    out = parts.translate_parts("a castle, by greg rutkowski BREAK sunset", "", "sd15", "sd15", 512, 512)

    assert out[:6] == ("a castle, by greg rutkowski", "sunset", "", "", 2, "part_1 BREAK part_2")
    assert out[7:9] == (512, 512) and "passes through unchanged" in out[9]


@pytest.mark.parametrize(("source", "target"), [("sd21", "sd15"), ("sdxl", "sd15"), ("sd2", "sd15")])
def test_a_reverse_pair_is_rejected_by_validate_inputs_and_is_a_clear_error_when_wired(pack, node, source, target):
    cls = pack.NODE_CLASS_MAPPINGS["PromptBridge"]
    assert cls.VALIDATE_INPUTS(source=source, target=target) == "Prompt Bridge: " + _no_bridge(source, target)
    with pytest.raises(ValueError) as error:  # wired inputs reach translate unchecked
        run(node, "a castle", source=source, target=target)
    assert str(error.value) == "Prompt Bridge: " + _no_bridge(source, target)


def test_a_weight_that_is_no_number_keeps_its_meaning_in_comfyui(pack, node):
    from bridge.dialects import comfy_weights

    text = "a (castle:1.2.3), sunset"
    positive, *_, report = run(node, text, target="sd21")

    assert comfy_weights(positive) == comfy_weights(text)  # ComfyUI reads 'castle:1.2.3' at 1.1 both ways
    assert "Traceback" not in report


def test_three_thousand_nested_brackets_are_clamped_with_a_warning(node):
    import re

    text = "(" * 3000 + "castle" + ")" * 3000 + ", sunset"
    positive, _, _, _, report = run(node, text)  # read and written in ComfyUI's syntax

    weights = [float(w) for w in re.findall(r":(-?[\d.e+]+)\)", positive)]
    assert weights and max(weights) <= 100 and "castle" in positive and "sunset" in positive
    assert re.search(r"warning: reading comfyui: weight [\d.e+]+ on 'castle' .*written as 100", report), report


def test_three_thousand_nested_brackets_in_a1111_syntax_are_kept_as_written_with_a_warning(node):
    text = "(" * 3000 + "castle" + ")" * 3000 + ", sunset"
    positive, _, _, _, report = run(node, text, dialect="a1111")

    assert positive == text  # what A1111 itself would read; the warning says the weight is out of range
    assert "on 'castle' is outside (0, 3]; kept as written" in report
