"""The A1111 extension against a stand-in of A1111 (tests/a1111_standin: the hooks in A1111's order); no torch."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import a1111_standin as a1111
import pytest

from bridge.load import translate

EXTENSION = Path(__file__).resolve().parent.parent / "integrations" / "a1111"
SCRIPT = EXTENSION / "scripts" / "prompt_bridge.py"
SD1 = "a castle, by greg rutkowski, <lora:detail:0.6>, 8k"


@pytest.fixture
def host():
    with a1111.install() as env:
        env.module = a1111.load_extension(SCRIPT)
        env.script = env.module.Script()
        yield env


def args(enabled=True, source="sd15", target="sd21", keep=False, size=True, folder=""):
    return [enabled, source, target, keep, size, folder]


def run(host, p, extension_args, *others):
    return a1111.process_images(p, [(host.script, extension_args), *others])


# 1. install --------------------------------------------------------------------------------------------------------


def test_script_imports_bridge_from_the_clone_behind_a_link(tmp_path):
    """A linked folder finds the clone (links resolved) and adds its root to sys.path only when bridge is missing."""
    link = tmp_path / "extensions" / "prompt-bridge"
    link.parent.mkdir()
    os.symlink(EXTENSION, link)
    code = ("import sys, importlib.util, runpy; sys.modules['gradio']=type(sys)('gradio');"
            "m=type(sys)('modules'); m.scripts=type(sys)('s'); m.shared=type(sys)('sh');"
            "m.scripts.Script=object; m.scripts.AlwaysVisible=1; sys.modules.update({'modules':m,"
            "'modules.scripts':m.scripts,'modules.shared':m.shared});"
            f"g=runpy.run_path({str(link / 'scripts' / 'prompt_bridge.py')!r});"
            "print(g['PROBLEM'], g['translate'].__module__, sys.path[0])")
    out = subprocess.run([sys.executable, "-S", "-c", code], check=False, capture_output=True, text=True,
                         cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": ""})
    clone = str(EXTENSION.parent.parent)
    if out.returncode:  # -S drops site-packages, so an installed bridge (and tomli on 3.10) is gone too
        assert "tomli" in out.stderr, out.stderr
        return
    assert out.stdout.split() == ["None", "bridge.load", clone]


def test_copied_folder_says_what_to_do_in_one_line(tmp_path, host, monkeypatch):
    copy = tmp_path / "extensions" / "prompt-bridge"
    shutil.copytree(EXTENSION, copy)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bridge" else real(name, *a))
    monkeypatch.setattr(sys, "path", list(sys.path))
    message = host.module.MISSING_CORE
    assert host.module.locate_core(copy / "scripts" / "prompt_bridge.py") == message
    assert host.module.locate_core(SCRIPT) is None and sys.path[0] == str(EXTENSION.parent.parent)
    assert "\n" not in message and "ln -s" in message and "integrations/a1111" in message


def test_install_py_installs_only_missing_extras_from_the_clone(host):
    install = a1111.load_extension(EXTENSION / "install.py", "prompt_bridge_a1111_install")
    assert install.wanted(EXTENSION / "requirements.txt", (3, 10)) == [("tomli", 'tomli>=1.1')]
    assert install.wanted(EXTENSION / "requirements.txt", (3, 11)) == []
    install.main()
    expected = [("install \"tomli>=1.1\"", "tomli>=1.1 for prompt-bridge")] if sys.version_info < (3, 11) else []
    assert host.launch.pip_calls == expected
    host.launch.pip_calls.clear()
    host.launch.installed.add("tomli")
    install.main()
    assert host.launch.pip_calls == []
    text = (EXTENSION / "README.md").read_text()
    assert "ln -s" in text and "mklink /J" in text and "PyPI" in text


# 2, 3. styles and sd-dynamic-prompts -------------------------------------------------------------------------------


def test_styles_are_translated_with_the_prompt(host):
    host.shared.prompt_styles.styles["sd1 look"] = ("{prompt}, by greg rutkowski, <lora:detail:0.6>", "easynegative")
    p = a1111.Processing(prompt="a castle", negative_prompt="blurry", styles=["sd1 look"])
    out = run(host, p, args())
    expected = translate("a castle, by greg rutkowski, <lora:detail:0.6>", source="sd15", target="sd21",
                         negative_prompt="blurry, easynegative")
    image = out.images[0]
    assert (image["prompt"], image["negative"]) == (expected.prompt, expected.negative_prompt)
    assert "lora" not in image["prompt"] and "easynegative" not in image["negative"]
    assert image["infotext"].startswith(expected.prompt + "\nNegative prompt: " + expected.negative_prompt)


@pytest.mark.parametrize("dynamic_first", [False, True])
def test_dynamic_prompts_final_prompts_are_translated_and_saved_in_the_infotext(host, dynamic_first):
    dynamic = (a1111.DynamicPrompts({"artist": ["greg rutkowski", "alphonse mucha"]}), [True])
    p = a1111.Processing(prompt="a {castle|tower}, by __artist__, 8k", negative_prompt="blurry", batch_size=2,
                         n_iter=2, width=512, height=768)
    mine = (host.script, args())
    out = a1111.process_images(p, [dynamic, mine] if dynamic_first else [mine, dynamic])
    assert len(out.images) == 4
    for i, image in enumerate(out.images):
        final = f"a {['castle', 'tower'][i % 2]}, by {['greg rutkowski', 'alphonse mucha'][i % 2]}, 8k"
        expected = translate(final, source="sd15", target="sd21", negative_prompt="blurry")
        assert image["prompt"] == expected.prompt != final
        assert image["infotext"].split("\n")[0] == expected.prompt  # the PNG's parameters, re-sliced by A1111
        assert image["size"] == (640, 960)  # changed before p.init: the batch's rng is built at the new size
    assert out.params_txt.split("\n")[0] == out.images[0]["prompt"]
    assert not [c for c in out.comments.splitlines() if "{" in c or "__" in c]  # the template drew no warning


# 4. hires fix ------------------------------------------------------------------------------------------------------


def test_hires_fix_keeps_the_final_size_and_translates_hires_prompts(host):
    p = a1111.Processing(prompt=SD1, width=512, height=768, enable_hr=True, hr_scale=2.0)
    image = run(host, p, args()).images[0]
    assert image["size"] == (640, 960) and image["final_size"] == (1024, 1536)  # not 1280x1920
    assert "Hires upscale: 1.6" in image["infotext"]
    assert image["hr_prompt"] == image["prompt"] == translate(SD1, source="sd15", target="sd21").prompt

    square = a1111.Processing(prompt="a castle", enable_hr=True, hr_scale=2.0)  # 768 * 1.33 misses 1024: ask for it
    image = run(host, square, args()).images[0]
    assert image["size"] == (768, 768) and image["final_size"] == (1024, 1024)

    small = a1111.Processing(prompt="a castle", enable_hr=True, hr_scale=1.25)  # 640 < 768: no second pass needed
    out = run(host, small, args())
    assert out.images[0]["size"] == (768, 768) and "final_size" not in out.images[0]
    assert "hires fix not needed" in out.comments

    separate = a1111.Processing(prompt="a castle", enable_hr=True, hr_prompt="a castle, by greg rutkowski, 8k")
    out = run(host, separate, args())
    hr = translate("a castle, by greg rutkowski, 8k", source="sd15", target="sd21")
    assert out.images[0]["hr_prompt"] == hr.prompt
    assert f'Hires prompt: "{hr.prompt}"' in out.images[0]["infotext"] or f"Hires prompt: {hr.prompt}" in \
        out.images[0]["infotext"]


# 5. prompt matrix --------------------------------------------------------------------------------------------------


def test_prompt_matrix_lists_are_handled(host):
    prompts = ["a castle, 8k", "a castle, by greg rutkowski"]
    p = a1111.Processing(prompt=prompts, negative_prompt=["blurry", "ugly"], n_iter=2)
    out = run(host, p, args())
    assert [i["prompt"] for i in out.images] == [translate(x, source="sd15", target="sd21").prompt for x in prompts]


# 6. model dropdowns ------------------------------------------------------------------------------------------------


def test_dropdowns_offer_only_routes_that_exist(host):
    module = host.module
    controls = host.script.ui(False)
    source, target = controls[1], controls[2]
    assert source.kwargs["choices"] == ["sd14", "sd15", "sd2-base", "sd2", "sd21-base", "sd21"]
    assert target.kwargs["choices"][:2] == [module.LOADED, "sd15"]
    for src in source.kwargs["choices"]:
        for dst in module.target_choices(src)[2:]:
            assert module.route(src, dst)
    target.value = "sd2"
    source.fire("sd21")
    assert target.kwargs["choices"] == [module.LOADED, "sd21", "sdxl"] and target.value == module.LOADED


def test_same_model_passes_through_and_target_defaults_to_the_loaded_checkpoint(host):
    p = a1111.Processing(prompt=SD1)
    out = run(host, p, args(target="sd15"))
    assert out.images[0]["infotext"].startswith(SD1) and "same model" in out.comments
    assert "Prompt bridge:" not in out.images[0]["infotext"]

    host.shared.sd_model = a1111.SdModel(name="v2-1_768-ema-pruned")  # found by name
    out = run(host, a1111.Processing(prompt=SD1), args(target=host.module.LOADED))
    assert "Prompt bridge: \"sd15->sd21, rules\"" in out.images[0]["infotext"]
    host.shared.sd_model = a1111.SdModel(name="my-merge", is_sd1=False, is_sdxl=True)  # by the family flags
    out = run(host, a1111.Processing(prompt=SD1), args(target=host.module.LOADED))
    assert "sd15->sdxl" in out.images[0]["infotext"] and out.images[0]["size"] == (1024, 1024)
    host.shared.sd_model = a1111.SdModel(name="mystery", is_sd1=False)
    out = run(host, a1111.Processing(prompt=SD1), args(target=host.module.LOADED))
    assert "cannot tell which model" in out.comments and out.images[0]["prompt"] == a1111._NETWORK.sub("", SD1)


def test_no_route_is_a_comment_not_a_traceback(host):
    out = run(host, a1111.Processing(prompt=SD1), args(source="sdxl", target="sd15"))
    assert "no bridge from sdxl to sd15" in out.comments


# 7. img2img --------------------------------------------------------------------------------------------------------


def test_img2img_keeps_its_size_by_default(host):
    controls = host.script.ui(True)
    assert controls[4].value is False
    assert host.script.ui(False)[4].value is True
    p = a1111.Processing(prompt=SD1, img2img=True, width=512, height=512)
    out = run(host, p, args(size=controls[4].value))
    assert out.images[0]["size"] == (512, 512) and "lora" not in out.images[0]["prompt"]


# 8, 9. warnings, infotext, paste ------------------------------------------------------------------------------------


def test_warnings_shown_in_the_ui_and_the_infotext(host):
    out = run(host, a1111.Processing(prompt=SD1, negative_prompt="easynegative"), args())
    assert "removed <lora:detail:0.6>" in out.comments and "easynegative" in out.comments
    # the hint names this extension's checkbox, not the command line's flags
    assert 'tick "Keep SD1 LoRA/hypernetwork tags and embeddings" to keep it' in out.comments
    assert "--keep-networks" not in out.comments and "--network-map" not in out.comments
    assert "Prompt bridge warnings:" in out.images[0]["infotext"]
    assert 'Prompt bridge: "sd15->sd21, rules"' in out.images[0]["infotext"]


def test_pasting_translated_infotext_turns_the_checkbox_off(host):
    controls = host.script.ui(False)
    enabled = controls[0]
    enabled.value = True
    out = run(host, a1111.Processing(prompt="a ((castle)), (hill:1.5)"), args(target="sd2"))
    a1111.paste(host.script, "a castle\nSteps: 20, Size: 512x512")
    assert enabled.value is True  # infotext without the key leaves it
    a1111.paste(host.script, out.images[0]["infotext"])
    assert enabled.value is False
    assert a1111.parse_infotext(out.images[0]["infotext"])["Prompt bridge"] == "sd15->sd2, rules"


# 10. conventions ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accordion", [True, False])
def test_components_have_elem_ids_and_use_input_accordion_where_available(accordion):
    with a1111.install(with_input_accordion=accordion) as env:
        module = a1111.load_extension(SCRIPT)
        script = module.Script()
        assert script.show(False) is env.scripts.AlwaysVisible and script.title() == "Prompt bridge"
        controls = script.ui(False)
        assert len(controls) == 6 and all(c.elem_id and c.elem_id.startswith("script_txt2img_prompt_bridge_")
                                          for c in controls)
        assert (type(controls[0]).__name__ == "InputAccordion") == accordion
        assert all(c.elem_id for c in env.gradio.ui)
    doc = module.__doc__
    assert "before_process`` (there since 1.4)" in doc and "setup_prompts" in doc


def test_disabled_changes_nothing(host):
    p = a1111.Processing(prompt=SD1, width=512, height=768, enable_hr=True)
    out = run(host, p, args(enabled=False))
    assert out.images[0]["size"] == (512, 768) and out.images[0]["infotext"].startswith(SD1)
    assert "Prompt bridge" not in out.images[0]["infotext"]


# 11. a learned bridge folder -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bridge_folder(tmp_path_factory):
    """A tiny sd15 -> sd21 learned bridge with its CTranslate2 copy (tests/tiny_bridge.py)."""
    for name in ("torch", "transformers", "ctranslate2", "tokenizers"):
        pytest.importorskip(name)
    from tiny_bridge import make_bridge

    return make_bridge(tmp_path_factory.mktemp("a1111") / "bridge")


def test_a_learned_bridge_folder_runs_on_ctranslate2_loaded_once_per_process(host, bridge_folder, monkeypatch):
    module = host.module
    loads = []
    real_load = module.load_translator
    monkeypatch.setattr(module, "load_translator", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    out = run(host, a1111.Processing(prompt="a (castle:1.3), 8k"), args(folder=str(bridge_folder)))
    [learned] = module._LEARNED.values()
    assert learned.backend == "ct2"
    assert 'Prompt bridge: "sd15->sd21, seq2seq"' in out.images[0]["infotext"]
    raw = "a stone <extra_id_0>castle<extra_id_1> on a hill negative: blurry"  # what a trained model would write
    monkeypatch.setattr(learned, "generate", lambda texts, **kw: [[raw] for _ in texts])
    p = a1111.Processing(prompt=["a (castle:1.3)", "a (castle:1.3), 8k"], negative_prompt="lowres", width=512,
                         height=768, n_iter=2)
    out = run(host, p, args(folder=str(bridge_folder)))
    assert [(i["prompt"], i["negative"], i["size"]) for i in out.images] == [
        ("a stone (castle:1.3) on a hill", "blurry", (640, 960))] * 2
    assert len(loads) == 1  # loaded by the first generation, reused by the next


def test_a_learned_bridge_for_another_pair_or_no_folder_is_a_comment(host, bridge_folder, tmp_path):
    out = run(host, a1111.Processing(prompt=SD1), args(target="sdxl", folder=str(bridge_folder)))
    assert "translates sd15 -> sd21, not sd15 -> sdxl; the prompt is left as written" in out.comments
    assert out.images[0]["prompt"] == a1111._NETWORK.sub("", SD1)  # untouched: A1111 strips the tag itself
    out = run(host, a1111.Processing(prompt=SD1), args(folder=str(tmp_path)))
    assert "no bridge.json in the learned bridge folder" in out.comments
