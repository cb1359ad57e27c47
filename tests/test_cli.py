"""translate-prompt, called in-process: output, formats, exit codes, and every kind of bad input."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main


class Run:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*argv: str, stdin: str | None = None, tty_stdin: bool = False) -> Run:
    out, err = io.StringIO(), io.StringIO()
    if tty_stdin:
        inp: io.StringIO = FakeTTY("")
    else:
        inp = io.StringIO(stdin or "")
    code = main(list(argv), stdin=inp, stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


def one_line_error(result: Run) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert lines[0].startswith("translate-prompt: error: ")
    return lines[0]


def test_one_prompt_text_output():
    r = run("a castle, by greg rutkowski, 8k")
    assert r.code == 0
    assert r.out.startswith("a castle, ") and r.out.count("\n") == 1
    assert "rutkowski" not in r.out.lower()


def test_explain_prints_recipe_negative_size_and_reasons():
    r = run("--explain", "a castle, by greg rutkowski, <lora:detail:0.6>, 8k")
    assert r.code == 0
    assert "Negative prompt: " in r.out and "Size: 768x768" in r.out
    assert "Changes (sd15 -> sd2):" in r.out
    assert "why: " in r.out and "[F-ARTISTS]" in r.out and "[F-NETWORKS]" in r.out
    assert "lora:detail" in r.err  # the warning naming the removed LoRA


def test_json_has_the_documented_keys():
    r = run("--format", "json", "a castle, 8k", "a dog")
    assert r.code == 0
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert len(rows) == 2
    for row in rows:
        for key in ("prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "sampler", "seed", "model",
                    "changes", "warnings"):
            assert key in row
        for change in row["changes"]:
            assert {"rule", "before", "after", "reason"} <= set(change)
    assert rows[0]["prompt"] == "a castle" and rows[0]["width"] == 768


def test_a1111_format_reads_back_as_infotext():
    from bridge.recipe import Recipe

    r = run("--format", "a1111", "--to", "sd21-base", "a castle, 8k")
    recipe = Recipe.from_infotext(r.out.strip())
    assert recipe.prompt == "a castle" and (recipe.width, recipe.height) == (512, 512)
    assert recipe.negative_prompt and recipe.steps


def test_prompts_on_stdin_one_per_line_blank_lines_answered_by_blank_lines():
    r = run(stdin="a castle, 8k\n\n  \na dog, 4k\n")
    assert r.code == 0
    assert r.out == "a castle\n\n\na dog\n"  # line N of the output answers line N of the input
    assert run("--format", "a1111", stdin="a castle, 8k\n\n").out.endswith("\n\n\n")


def test_input_and_output_files(tmp_path):
    src = tmp_path / "prompts.txt"
    src.write_text("a castle, 8k\na dog, trending on artstation\n", encoding="utf-8")
    dst = tmp_path / "out.jsonl"
    r = run("--input", str(src), "--output", str(dst), "--format", "json")
    assert r.code == 0 and r.out == ""
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [row["prompt"] for row in rows] == ["a castle", "a dog, artstation"]


def test_from_to_and_list_models():
    r = run("--to", "sd2-base", "--format", "json", "a fox")
    assert json.loads(r.out)["width"] == 512
    listed = run("--list-models")
    assert listed.code == 0
    for key in ("sd14", "sd15", "sd2-base", "sd2", "sd21-base", "sd21", "sdxl"):
        assert key in listed.out
    assert "sd15 -> sd2" in listed.out


def test_diff_marks_removed_and_added_words():
    r = run("--diff", "a castle, 8k, trending on artstation")
    assert "[-" in r.out and "{+" in r.out
    assert "8k" in r.out


def test_keep_networks_network_map_embeddings_and_disable(tmp_path):
    assert "<lora:detail:0.6>" in run("--keep-networks", "a castle, <lora:detail:0.6>").out
    mapping = tmp_path / "map.txt"
    mapping.write_text("# mine\ndetail = detail_sd2\n")
    assert "<lora:detail_sd2:0.6>" in run("--network-map", str(mapping), "a castle, <lora:detail:0.6>").out
    folder = tmp_path / "embeddings"
    folder.mkdir()
    (folder / "my_style.pt").write_bytes(b"")
    r = run("--embeddings", str(folder), "a castle, my_style")
    assert r.out.strip() == "a castle" and "my_style" in r.err
    assert "greg rutkowski" in run("--disable-rule", "artist.*", "a castle, by greg rutkowski").out


def test_help_teaches_with_examples():
    r = run("--help")
    assert r.code == 0 and r.err == ""
    assert r.out.startswith("usage: translate-prompt") and "examples:" in r.out and "exit codes:" in r.out
    assert run("-h").out == r.out


@pytest.mark.parametrize(
    "argv,code,needle",
    [
        (["--to", "sd3", "a cat"], 2, "unknown model 'sd3'; known models: sd14"),
        (["--from", "nope", "a cat"], 2, "unknown model 'nope'"),
        (["--format", "yaml", "a cat"], 2, "unknown format 'yaml'; valid formats: text, a1111, json"),
        (["--bogus"], 2, "unrecognized arguments: --bogus"),
        ([""], 2, "empty prompt"),
        (["   "], 2, "empty prompt"),
        (["--disable-rule", "no-such", "a cat"], 2, "unknown rule 'no-such'"),
        (["--input", "/nonexistent/prompts.txt"], 1, "no such file or folder: /nonexistent/prompts.txt"),
        (["--to", "sd15", "--from", "sd2", "a cat"], 2, "no bridge from 'sd2' to 'sd15'"),
        (["--color", "sometimes", "a cat"], 2, "unknown --color 'sometimes'; valid values: auto, always, never"),
    ],
)
def test_bad_input_is_one_line_error_with_exit_code(argv, code, needle):
    r = run(*argv)
    assert r.code == code
    assert needle in one_line_error(r)


def test_one_usage_error_for_translate_prompt_and_the_scripts():
    from bridge import cli
    from bridge.workflows.common import UsageError
    from bridge.workflows.corpora import CorpusError

    assert cli.UsageError is UsageError and issubclass(CorpusError, UsageError)


def test_no_prompt_on_a_terminal_is_a_usage_error():
    r = run(tty_stdin=True)
    assert r.code == 2 and "no prompt given" in one_line_error(r)


@pytest.mark.parametrize("argv", [[], ["-"], ["--input", "-"]])
def test_empty_stdin_exits_0_with_no_output(argv):
    r = run(*argv, stdin="")
    assert (r.code, r.out, r.err) == (0, "", "")


def test_non_utf8_file_is_exit_1_naming_the_offset(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("a caf\xe9 on a hill\n".encode("latin-1"))
    r = run("--input", str(bad))
    error = one_line_error(r)
    assert r.code == 1 and "latin1.txt: not UTF-8" in error and "offset 5" in error


def test_directory_as_input_and_bad_network_map(tmp_path):
    assert run("--input", str(tmp_path)).code == 1
    mapping = tmp_path / "map.txt"
    mapping.write_text("just a name\n")
    r = run("--network-map", str(mapping), "a cat")
    assert r.code == 2 and "line 1" in one_line_error(r)


def test_output_is_written_whole_or_not_at_all(tmp_path):
    dst = tmp_path / "out.txt"
    dst.write_text("previous results\n")
    r = run("--output", str(dst), "--to", "sd3", "a cat")
    assert r.code == 2
    assert dst.read_text() == "previous results\n"  # nothing already written is lost
    r = run("--output", str(tmp_path / "missing-dir" / "out.txt"), "a cat")
    assert r.code == 1 and f"folder {tmp_path / 'missing-dir'} does not exist" in one_line_error(r)
    assert run("--output", str(dst), "a cat").code == 0
    assert dst.read_text().startswith("a cat") and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_output_is_written_as_it_comes_and_renamed_at_the_end(tmp_path, monkeypatch):
    """The translations go to a temporary file beside --output as they come (memory holds none it is done with) and
    replace the old file only when the run ends: a run that dies half way leaves the old results as they were."""
    from bridge import cli

    src, dst = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("".join(f"a castle number {i}, 8k\n" for i in range(300)))
    dst.write_text("previous results\n")
    written = []
    emit = cli._Run.emit

    def dying_emit(self, *args, **kwargs):
        emit(self, *args, **kwargs)
        written.append(os.path.getsize(self.out.name))  # the temporary file grows as the prompts come
        if len(written) == 200:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli._Run, "emit", dying_emit)
    assert run("--input", str(src), "--format", "json", "--output", str(dst)).code == 130  # Ctrl-C
    assert written == sorted(written) and written[0] < written[-1]
    assert dst.read_text() == "previous results\n" and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt",
                                                                                                       "out.jsonl"]
    monkeypatch.setattr(cli._Run, "emit", emit)
    assert run("--input", str(src), "--format", "json", "--output", str(dst)).code == 0
    assert len(dst.read_text().splitlines()) == 300


@pytest.mark.parametrize(("content", "code", "needle"), [
    (None, 1, "knowledge file not found: "),  # missing: an input failure
    (b"\xff\xfe", 1, "cannot read knowledge file "),  # not UTF-8
    ("folder", 1, "cannot read knowledge file "),
    (b"x = [", 2, "is not valid TOML"),  # malformed: a usage error, as a bad flag value
    (b'[[rule]]\nid = "x"\n', 2, "'match' is missing"),
])
def test_a_knowledge_file_that_cannot_be_read_is_exit_1_a_malformed_one_exit_2(tmp_path, content, code, needle):
    path = tmp_path / "mine.toml"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    r = run("--knowledge", str(path), "a cat")
    assert r.code == code and needle in one_line_error(r)


@pytest.mark.parametrize("prompt", ["(x:nan)", "(x:inf)", "(x:1e309)", "(x:-3)", "((a:1.2.3))", "((((a", "a]]]]",
                                    "a\x00b\x01c"])
def test_odd_prompts_pass_through_with_exit_0(prompt):
    r = run(prompt)
    assert r.code == 0
    assert r.out == prompt + "\n"


def test_ten_thousand_nested_parentheses_and_a_megabyte_prompt():
    deep = "(" * 10_000 + "a cat" + ")" * 10_000
    assert run(deep).out == deep + "\n"
    big = "a castle on a hill, " * 50_000
    r = run(big)
    assert r.code == 0 and len(r.out) > 500_000


def test_python_dash_m_bridge_and_non_utf8_stdin():
    result = subprocess.run([sys.executable, "-m", "bridge"], input=b"a caf\xe9\n", capture_output=True, check=False)
    assert result.returncode == 1
    assert b"stdin is not UTF-8" in result.stderr and b"Traceback" not in result.stderr
    ok = subprocess.run([sys.executable, "-m", "bridge", "a castle, 8k"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout == "a castle\n"


# Library migration ---------------------------------------------------------------------------------------------------


def test_csv_library_is_written_back_in_its_own_format_with_a_report(tmp_path):
    import csv

    src = tmp_path / "prompts.csv"
    src.write_text("id,prompt,negative_prompt\n1,\"a castle, 8k\",blurry\n2,,\n3,\"a dog, by greg rutkowski\",\n",
                   encoding="utf-8")
    out, report = tmp_path / "sd2.csv", tmp_path / "report.md"
    r = run("--input", str(src), "--output", str(out), "--report", str(report))
    assert r.code == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["id"] for row in rows] == ["1", "2", "3"]  # order kept, the empty row kept
    assert rows[0]["prompt"] == "a castle" and rows[0]["negative_prompt"].startswith("blurry, ")
    assert rows[1]["prompt"] == ""
    assert "rutkowski" not in rows[2]["prompt"] and rows[2]["width"] == "768"
    assert "prompts.csv:3: empty prompt" in r.err or "empty prompt" in r.err
    text = report.read_text(encoding="utf-8")
    assert "| `magic.8k` | 1 |" in text and "artist.greg-rutkowski" in text and "empty prompt" in text
    assert "~~" in text and "**" in text  # the word diff


def test_png_folder_migrated_as_copies_with_an_html_report(tmp_path):
    from html.parser import HTMLParser

    from test_library import make_png, text_chunk

    from bridge.library import read_library

    folder = tmp_path / "outputs"
    (folder / "day1").mkdir(parents=True)
    infotext = ("a castle, by greg rutkowski, <lora:detail:0.6>\nNegative prompt: easynegative\n"
                "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x768, Model hash: 6ce0161689")
    original = make_png(text_chunk(infotext))
    (folder / "day1" / "00001.png").write_bytes(original)
    out, report = tmp_path / "sd2", tmp_path / "report.html"
    r = run("--input", str(folder), "--output", str(out), "--report", str(report))
    assert r.code == 0, r.err
    assert (folder / "day1" / "00001.png").read_bytes() == original
    (item,) = read_library(out)
    assert item.recipe.prompt.startswith("a castle, ") and "<lora" not in item.recipe.prompt
    assert (item.recipe.width, item.recipe.height, item.recipe.seed) == (640, 960, 5)
    assert "easynegative" not in item.recipe.negative_prompt
    page = report.read_text(encoding="utf-8")
    HTMLParser().feed(page)
    assert "<del>" in page and "<ins>" in page and "networks" in page and "00001.png" in page
    assert "lora:detail" in r.err


def test_json_output_of_a_library_names_each_row(tmp_path):
    src = tmp_path / "prompts.jsonl"
    src.write_text('{"prompt": "a castle, 8k", "id": 7}\n{"prompt": "a dog"}\n', encoding="utf-8")
    r = run("--input", str(src), "--format", "json")
    keys = [json.loads(line)["key"] for line in r.out.splitlines()]
    assert keys == ["prompts.jsonl:1", "prompts.jsonl:2"]


def test_progress_bar_on_a_terminal_for_long_jobs(tmp_path):
    src = tmp_path / "many.txt"
    src.write_text("a castle, 8k\n" * 300, encoding="utf-8")
    out, err = io.StringIO(), FakeTTY()
    code = main(["--input", str(src)], stdin=io.StringIO(""), stdout=out, stderr=err)
    assert code == 0 and out.getvalue().count("a castle\n") == 300
    assert "300/300" in err.getvalue() and "ETA" in err.getvalue()
    quiet = run("--input", str(src))
    assert "ETA" not in quiet.err  # not a terminal: no bar


def test_bad_report_suffix_and_bad_library_rows(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text('{"prompt": "a cat"}\nnot json\n', encoding="utf-8")
    r = run("--input", str(src))
    assert r.code == 1 and "p.jsonl:2: not valid JSON" in one_line_error(r)
    report = tmp_path / "report.txt"
    r = run("--report", str(report), "a cat")
    assert r.code == 2 and "report.txt" in one_line_error(r) and ".md or .html" in one_line_error(r)
    assert not report.exists()


def test_dialects_in_and_out():
    comfy = run("--dialect", "comfyui", "a ((castle:1.5)), [[fog]]")
    assert comfy.code == 0 and comfy.out == "a (castle:1.4), (fog:0.83)\n"  # 1.65 capped; [[fog]] as ComfyUI writes it
    assert "writing comfyui" in comfy.err
    compel_in = run("--input-dialect", "compel", "a castle++, (blue sky)1.3")
    assert compel_in.out == "a (castle:1.21), (blue sky:1.3)\n"  # under the cap: the same weights, A1111 notation
    comfy_in = run("--input-dialect", "comfyui", "--dialect", "comfyui", "a [castle], ((sky:1.5))")
    assert comfy_in.out == "a [castle], (sky:1.4)\n"  # [x] is plain text in ComfyUI; 1.5 capped
    bad = run("--input-dialect", "invoke", "a cat")
    assert bad.code == 2 and "valid dialects: a1111, compel, comfyui" in one_line_error(bad)


def test_comfyui_embedding_words_are_the_users_embeddings_in_a_batch(tmp_path):
    """--input-dialect comfyui: embedding:NAME names one of the user's SD1 embeddings, flagged and removed even when
    the bridge does not know the name. A file is read whole before translating, so one options object holds the
    names of every recipe (line 2's bare my_char is then an embedding too); kept, a name gets its prefix back."""
    src = tmp_path / "p.txt"
    src.write_text("portrait, embedding:my_char\na castle, my_char\n", encoding="utf-8")
    r = run("--input-dialect", "comfyui", "--dialect", "comfyui", "--input", str(src))
    assert r.code == 0 and r.out == "portrait\na castle\n"
    assert "p.txt:1: removed embedding 'my_char'" in r.err and "p.txt:2: removed embedding 'my_char'" in r.err
    kept = run("--keep-networks", "--input-dialect", "comfyui", "--dialect", "comfyui", "--input", str(src))
    assert kept.out == "portrait, embedding:my_char\na castle, embedding:my_char\n"
    assert run("--input-dialect", "comfyui", "--input", str(src)).out == "portrait\na castle\n"  # written as A1111


def test_comfyui_embedding_words_streamed_belong_to_their_line():
    r = run("--input-dialect", "comfyui", "--dialect", "comfyui", stdin="portrait, embedding:chars/my_char.pt\n"
            "a castle, my_char\n")
    assert r.out == "portrait\na castle, my_char\n"  # line 2 never named my_char an embedding
    assert "line 1: removed embedding 'my_char'" in r.err and "line 2" not in r.err
    kept = run("--keep-networks", "--input-dialect", "comfyui", "--dialect", "comfyui",
               stdin="portrait, (embedding:chars/my_char.pt:1.2)\n")
    assert kept.out.startswith("portrait, (embedding:chars/my_char.pt:1.")


def test_large_library_in_worker_processes_gives_the_same_output(tmp_path):
    from itertools import cycle, islice

    corpus = (Path(__file__).resolve().parent.parent / "data" / "corpora" / "diffusiondb_prompts.jsonl")
    prompts = [json.loads(line)["prompt"].replace("\n", " ") for line in corpus.open(encoding="utf-8")]
    src = tmp_path / "library.txt"
    src.write_text("\n".join(islice(cycle(p for p in prompts if p.strip()), 2500)) + "\n", encoding="utf-8")
    serial = run("--input", str(src), "--format", "json", "--jobs", "1")
    parallel = run("--input", str(src), "--format", "json", "--jobs", "2")
    auto = run("--input", str(src), "--format", "json")  # 2,500 prompts: workers by default on a multi-core CPU
    assert serial.code == parallel.code == auto.code == 0
    assert serial.out == parallel.out == auto.out
    assert serial.out.count("\n") == 2500
    written = tmp_path / "out.jsonl"  # written as the workers' answers come (the file is open when they fork)
    assert run("--input", str(src), "--format", "json", "--jobs", "2", "--output", str(written)).code == 0
    assert written.read_text(encoding="utf-8") == serial.out
    assert run("--jobs", "x", "a cat").code == 2


def test_style_budget_flag():
    none = run("--style-budget", "0", "a castle, by greg rutkowski")
    assert none.code == 0 and none.out.strip() == "a castle"
    explained = run("--style-budget", "4", "--explain", "a castle, by greg rutkowski and artgerm")
    assert "over the style budget of 4 tokens" in explained.out
    bad = run("--style-budget", "-3", "a castle")
    assert bad.code == 2 and "'-3'" in bad.err and "whole number" in bad.err


# Shell conventions ----------------------------------------------------------------------------------------------------


def test_version_prints_the_package_version():
    import bridge

    r = run("--version")
    assert (r.code, r.out, r.err) == (0, f"translate-prompt {bridge.__version__}\n", "")


@pytest.mark.parametrize(("flag", "env", "tty", "coloured"), [
    ("auto", {}, True, True),
    ("auto", {}, False, False),
    ("auto", {"NO_COLOR": "1"}, True, False),
    ("auto", {"NO_COLOR": ""}, True, True),  # set but empty: ignored
    ("auto", {"TERM": "dumb"}, True, False),
    ("auto", {"FORCE_COLOR": "1"}, False, True),
    ("auto", {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False),
    ("always", {"NO_COLOR": "1", "TERM": "dumb"}, False, True),  # the flag wins over the environment
    ("never", {"FORCE_COLOR": "1"}, True, False),
])
def test_color_flag_and_environment(monkeypatch, flag, env, tty, coloured):
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out, err = (FakeTTY() if tty else io.StringIO()), io.StringIO()
    code = main(["--diff", "--color", flag, "a castle, 8k"], stdin=io.StringIO(""), stdout=out, stderr=err)
    assert code == 0
    assert ("\x1b[31m" in out.getvalue()) is coloured
    assert ("[-" in out.getvalue()) is not coloured


def test_dash_and_input_dash_read_stdin():
    for argv in (["-"], ["--input", "-"], []):
        r = run(*argv, stdin="a castle, 8k\na dog, 4k\n")
        assert (r.code, r.out) == (0, "a castle\na dog\n")
    r = run("-", "a cat", stdin="a dog\n")
    assert r.code == 2 and "'-' reads the prompts from stdin" in one_line_error(r)


def test_blank_lines_in_json_are_records_with_an_empty_prompt_and_the_line():
    r = run("--format", "json", stdin="a castle, 8k\n\na dog\n")
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert [(row["line"], row["source_prompt"], row["prompt"]) for row in rows] == [
        (1, "a castle, 8k", "a castle"), (2, "", ""), (3, "a dog", "a dog")]
    assert rows[1]["width"] is None and rows[1]["changes"] == [] and rows[1]["warnings"] == []
    assert set(rows[1]) == set(rows[0])  # the same keys in every record


def test_a_text_file_keeps_its_blank_lines_and_a_csv_its_empty_rows(tmp_path):
    src = tmp_path / "prompts.txt"
    src.write_text("a castle, 8k\n\n\na dog, 4k\n", encoding="utf-8")
    assert run("--input", str(src)).out == "a castle\n\n\na dog\n"
    rows = [json.loads(line) for line in run("--input", str(src), "--format", "json").out.splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3, 4] and rows[1]["prompt"] == ""
    out = tmp_path / "out.txt"  # written back with --output: line N still answers line N
    assert run("--input", str(src), "--output", str(out)).code == 0
    assert out.read_text(encoding="utf-8") == "a castle\n\n\na dog\n"
    table = tmp_path / "p.csv"
    table.write_text("id,prompt\n1,a castle\n2,\n", encoding="utf-8")
    rows = [json.loads(line) for line in run("--input", str(table), "--format", "json").out.splitlines()]
    assert [(row["key"], row["prompt"]) for row in rows] == [("p.csv:2", "a castle"), ("p.csv:3", "")]
    assert rows[1]["warnings"] == ["empty prompt, kept as it was"]


class _Log:
    """A stdin and a stdout that record, in order, each line read and each flushed output."""

    def __init__(self, lines: list[str]):
        self.lines, self.events, self.pending = list(lines), [], ""

    def readline(self) -> str:
        line = self.lines.pop(0) if self.lines else ""
        self.events.append(("read", line))
        return line

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self.pending += text
        return len(text)

    def flush(self) -> None:
        self.events.append(("flushed", self.pending))
        self.pending = ""


def test_stdin_is_streamed_each_answer_flushed_before_the_next_line_is_read():
    log = _Log(["a castle, 8k\n", "\n", "a dog, 4k\n"])
    assert main([], stdin=log, stdout=log, stderr=io.StringIO()) == 0  # type: ignore[arg-type]
    assert log.events == [("read", "a castle, 8k\n"), ("flushed", "a castle\n"), ("read", "\n"), ("flushed", "\n"),
                          ("read", "a dog, 4k\n"), ("flushed", "a dog\n"), ("read", "")]


def test_stdin_streams_through_a_real_pipe():
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "bridge", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    timer = threading.Timer(60, proc.kill)  # were the output held until EOF, readline would wait for ever
    timer.start()
    try:
        assert proc.stdin and proc.stdout
        proc.stdin.write(b"a castle, 8k\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"a castle\n"  # answered while stdin is still open
        proc.stdin.write(b"a dog, 4k\n")
        proc.stdin.close()
        assert proc.stdout.read() == b"a dog\n" and proc.wait() == 0
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()


def test_quiet_silences_warnings_which_stay_in_json():
    prompt = "a castle, <lora:detail:0.6>"
    assert "lora:detail" in run(prompt).err
    quiet = run("-q", "--format", "json", prompt)
    assert quiet.code == 0 and quiet.err == ""
    assert any("lora:detail" in w for w in json.loads(quiet.out)["warnings"])
    assert run("--quiet", stdin=prompt + "\n").err == ""


def test_warnings_summary_counts_by_kind(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a castle, <lora:detail:0.6>\na dog, <lora:fur:1>\na cat, easynegative\n", encoding="utf-8")
    r = run("-q", "--warnings-summary", "--input", str(src))
    assert r.code == 0
    lines = r.err.splitlines()
    assert lines[0] == "warnings: 3 in all, by kind:"
    assert lines[1] == "       2  removed … from the prompt: an SD1 lora"
    assert len(lines) == 3 and "embedding" in lines[2]
    assert run("--warnings-summary", "a castle").err == "warnings: 0 in all\n"


def test_json_records_carry_the_input_to_join_back(tmp_path):
    (row,) = [json.loads(line) for line in run("--format", "json", "a castle, 8k").out.splitlines()]
    assert row["source_prompt"] == "a castle, 8k" and "line" not in row and "key" not in row
    src = tmp_path / "prompts.jsonl"
    src.write_text('{"prompt": "a castle, 8k"}\n{"prompt": "a dog"}\n', encoding="utf-8")
    rows = [json.loads(line) for line in run("--input", str(src), "--format", "json").out.splitlines()]
    assert [(r["key"], r["line"], r["source_prompt"]) for r in rows] == [
        ("prompts.jsonl:1", 1, "a castle, 8k"), ("prompts.jsonl:2", 2, "a dog")]
    assert list(rows[0])[:3] == ["key", "line", "source_prompt"]


def test_diff_and_explain_with_json_are_included_in_the_record():
    plain = json.loads(run("--format", "json", "a castle, 8k").out)
    assert json.loads(run("--format", "json", "--explain", "a castle, 8k").out) == plain  # changes already there
    with_diff = json.loads(run("--format", "json", "--diff", "--color", "always", "a castle, 8k").out)
    assert with_diff.pop("diff") == "a castle[-, 8k-]" and with_diff == plain
    assert "--diff adds" in run("--help").out


def test_to_help_lists_every_registered_target():
    from bridge.cli_output import target_keys
    from bridge.models import list_bridges

    assert target_keys() == [m for m in ("sd15", "sd2-base", "sd2", "sd21-base", "sd21", "sdxl")
                             if m in {b.target for b in list_bridges()}]
    help_text = " ".join(run("--help").out.split())
    assert "(default: sd2): sd15, sd2-base, sd2, sd21-base, sd21, sdxl" in help_text
    assert "sdxl" in help_text and "examples:" in help_text and "translate-prompt -" in help_text
