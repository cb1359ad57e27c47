"""Hostile input through the library and the CLI (issue 17): big folders, bombs, odd numbers, links, special files,
surrogates, broken outputs, racing writers, killed writes. Every case ends in a faithful pass-through or a one-line
error, never a traceback, a hang or lost data.

Each kind has several cases of its own; the slow-looking ones (thousands of files, a 256 MiB bomb, 1 MB prompts) run
in seconds once fixed, so they stay in the default run. Subprocesses carry a generous timeout as a hang guard.
"""

import json
import os
import re
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from test_library import make_png, png_chunk  # PNGs built with the stdlib, apart from the code tested

from bridge import library as library_module
from bridge.cli import main
from bridge.datafiles import atomic_write, read_toml, remove_stale_temporaries
from bridge.library import MAX_SIZE, PNG_TEXT_LIMIT, LibraryError, LibraryWarning, read_library, write_library
from bridge.migration import word_diff
from bridge.recipe import Recipe

HANG_GUARD = 120  # seconds: a subprocess past this has hung
INFOTEXT = "a castle on a hill\nNegative prompt: lowres\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768"
POSIX = pytest.mark.skipif(os.name != "posix", reason="FIFOs, links and signals as on POSIX")


def zeros_deflated(size: int) -> bytes:
    """`size` zero bytes, zlib-compressed in steps (a bomb: about a thousandth of its inflated size)."""
    packer, block = zlib.compressobj(9), bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def cli(*args, env: dict | None = None, stdin: bytes = b"", **kwargs) -> subprocess.CompletedProcess:
    """translate-prompt in a subprocess (bytes in and out), with the hang guard."""
    if "stdout" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "bridge", *args], check=False, input=stdin, timeout=HANG_GUARD,
                          env={**os.environ, **(env or {})}, **kwargs)


def one_line_error(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [line for line in text.splitlines() if line.startswith("translate-prompt: error: ")]
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert len(lines) == 1, text
    return lines[0]


# 1. The folder plan is linear: each path resolved once.


def count_realpath(monkeypatch) -> list[int]:
    calls = [0]
    real = os.path.realpath

    def counting(path, *args, **kwargs):
        calls[0] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", counting)
    return calls


@pytest.mark.parametrize("files", [300, 1200])
def test_folder_plan_resolves_each_path_a_bounded_number_of_times(tmp_path, monkeypatch, files):
    for i in range(files):
        (tmp_path / "in" / f"s{i % 7}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / f"s{i % 7}" / f"{i}.txt").write_text(f"prompt {i}\n")
    items = read_library(tmp_path / "in")
    calls = count_realpath(monkeypatch)

    written = write_library(items, [item.recipe for item in items], tmp_path / "out")

    assert len(written) == files
    assert calls[0] <= 3 * files + 10  # one per source, one per target (the old plan: two per pair, millions)
    assert (tmp_path / "out" / "s3" / "3.txt").read_text() == "prompt 3\n"


def migrate_folder(tmp_path: Path, files: int) -> None:
    for i in range(files):
        folder = tmp_path / "in" / f"{i // 500:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.txt").write_text(f"a castle number {i}\n")

    code, _, err = run("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "-q")

    assert code == 0, err
    assert len(list((tmp_path / "out").rglob("*.txt"))) == files
    last = files - 1
    assert (tmp_path / "out" / f"{last // 500:02d}" / f"{last}.txt").read_text() == f"a castle number {last}\n"


def test_a_two_thousand_file_folder_migrates_through_the_cli(tmp_path):
    migrate_folder(tmp_path, 2_000)  # over 300 s with the quadratic plan


@pytest.mark.slow
def test_a_ten_thousand_file_folder_migrates_through_the_cli(tmp_path):
    migrate_folder(tmp_path, 10_000)  # 13-40 s here, most of it fsync (one per file, as before)


def test_the_plan_still_refuses_an_input_reached_through_another_path(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.txt").write_text("a cat\n")
    (tmp_path / "alias").symlink_to(tmp_path / "lib")
    items = read_library(tmp_path / "lib")

    for out in (tmp_path / "alias", tmp_path / "lib" / ".." / "lib"):
        with pytest.raises(LibraryError, match="is an input of the library"):
            write_library(items, [Recipe(prompt="new")], out)
    one = read_library(tmp_path / "lib" / "a.txt")
    for out in (tmp_path / "alias" / "a.txt", tmp_path / "alias" / ".." / "alias" / "a.txt"):
        with pytest.raises(LibraryError, match="is an input of the library"):
            write_library(one, [Recipe(prompt="new")], out)
    assert (tmp_path / "lib" / "a.txt").read_text() == "a cat\n"


# 2. PNG text chunks: 1 MiB of "parameters" text at most, inflated in steps, one error per file.


def text_png(kind: bytes, text: bytes) -> bytes:
    if kind == b"tEXt":
        return make_png(png_chunk(kind, b"parameters\0" + text))
    if kind == b"zTXt":
        return make_png(png_chunk(kind, b"parameters\0\0" + text))
    return make_png(png_chunk(kind, b"parameters\0\1\0en\0\0" + text))  # iTXt, compressed


@pytest.mark.parametrize(("kind", "body", "needle"), [
    (b"tEXt", b"a castle, " * (PNG_TEXT_LIMIT // 10 + 1), "holds 1,048,580 bytes of text, over the limit of 1,048,576"),
    (b"tEXt", b"x" * (50 << 20), "holds 52,428,800 bytes of text, over the limit"),
    (b"zTXt", None, "inflates to more than 1,048,576 bytes"),
    (b"iTXt", None, "inflates to more than 1,048,576 bytes"),
])
def test_oversized_and_bomb_text_chunks_are_one_error_naming_file_and_limit(tmp_path, kind, body, needle):
    path = tmp_path / "bomb.png"
    path.write_bytes(text_png(kind, body if body is not None else zeros_deflated(256 << 20)))

    with pytest.raises(LibraryError, match=rf"bomb\.png: its {kind.decode()} 'parameters' chunk {needle}"):
        read_library(path)


def test_text_at_the_limit_is_read_and_a_cut_stream_is_damaged(tmp_path):
    prompt = "a castle, " * ((PNG_TEXT_LIMIT - 200) // 10)
    infotext = f"{prompt}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768".encode()
    assert len(infotext) <= PNG_TEXT_LIMIT
    (tmp_path / "big.png").write_bytes(text_png(b"zTXt", zlib.compress(infotext)))
    (tmp_path / "cut.png").write_bytes(text_png(b"zTXt", zlib.compress(infotext)[:-50]))

    assert read_library(tmp_path / "big.png")[0].recipe.prompt == prompt.strip()
    with pytest.raises(LibraryError, match=r"cut\.png: damaged zTXt 'parameters' chunk: its compressed text is cut"):
        read_library(tmp_path / "cut.png")


def test_a_bomb_in_a_folder_is_one_error_and_the_rest_migrates(tmp_path):
    source = tmp_path / "outputs"
    source.mkdir()
    (source / "a.png").write_bytes(make_png(png_chunk(b"tEXt", b"parameters\0" + INFOTEXT.encode())))
    (source / "b.png").write_bytes(text_png(b"zTXt", zeros_deflated(64 << 20)))
    (source / "c.png").write_bytes(text_png(b"iTXt", zlib.compress(INFOTEXT.encode())))
    errors = []

    items = read_library(source, on_error=errors.append)

    assert [item.key for item in items] == ["a.png", "c.png"]
    limit = "inflates to more than 1,048,576 bytes (1 MiB), the limit per PNG text chunk; not read"
    assert [str(e) for e in errors] == [f"{source / 'b.png'}: its zTXt 'parameters' chunk {limit}"]
    code, _, err = run("--input", str(source), "--output", str(tmp_path / "out"), "-q")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    assert err.count("b.png") == 1 and "1,048,576" in err
    assert "1 file or folder of the library could not be read" in err.splitlines()[-1]


def test_other_text_chunks_are_copied_without_being_inflated(tmp_path):
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zeros_deflated(64 << 20))
    (tmp_path / "a.png").write_bytes(make_png(bomb, png_chunk(b"tEXt", b"parameters\0" + INFOTEXT.encode())))
    items = read_library(tmp_path / "a.png")

    (out,) = write_library(items, [items[0].recipe.replace(prompt="new")], tmp_path / "new.png")

    assert bomb in out.read_bytes()
    assert read_library(out)[0].recipe.prompt == "new"


# 3. Word diffs stay fast: exact while small, by phrase then coarse past the documented limit.


def diff_text(before: str, after: str) -> tuple[str, str]:
    pieces = word_diff(before, after)
    return "".join(t for op, t in pieces if op != "+"), "".join(t for op, t in pieces if op != "-")


@pytest.mark.parametrize("size", [2_000, 16_000, 1_000_000])
@pytest.mark.parametrize("shape", ["repeated", "alternating", "distinct"])
def test_long_diffs_finish_and_still_rebuild_both_sides(size, shape):
    if shape == "repeated":
        before = ("masterpiece, castle, " * size)[:size]
        after = ("castle, " * size)[: size // 2]
    elif shape == "alternating":
        before = ("x y " * size)[:size]
        after = (" x x y" * size)[:size]
    else:
        before = " ".join(f"w{i}" for i in range(size // 7))
        after = before.replace("w1", "v1").replace("w5", "")

    assert diff_text(before, after) == (before, after)


def test_a_short_diff_is_exact_and_a_long_one_marks_only_what_changed():
    assert word_diff("a castle, 8k, masterpiece", "a castle, detailed") == [
        ("=", "a castle, "), ("-", "8k, masterpiece"), ("+", "detailed")]
    start, end = ", ".join(f"start{i}" for i in range(3000)), ", ".join(f"end{i}" for i in range(3000))
    before, after = f"{start}, masterpiece, {end}", f"{start}, {end}"

    pieces = word_diff(before, after)

    assert [op for op, _ in pieces] == ["=", "-", "="]
    assert "masterpiece" in pieces[1][1] and "start5" not in pieces[1][1] and "end5" not in pieces[1][1]


def test_diff_and_report_of_a_long_prompt_through_the_cli(tmp_path):
    prompt = ("masterpiece, best quality, castle, " * 500)[:16_000]
    (tmp_path / "p.txt").write_text(prompt + "\na cat\n")

    code, out, err = run("--input", str(tmp_path / "p.txt"), "--diff", "--report", str(tmp_path / "r.md"), "-q")

    assert code == 0, err
    assert out.count("\n") >= 4 and "[-" in out
    assert "a cat" in (tmp_path / "r.md").read_text(encoding="utf-8")


# 5. Odd numbers in libraries: sizes in range or an error naming the row; deep JSON is an error for its row.


@pytest.mark.parametrize(("cell", "shown"), [
    ('"width": 0', "width 0 is not a size"),
    ('"width": -512', "width -512 is not a size"),
    ('"width": 512.5', "width 512.5 is not a size"),
    ('"width": 1e400', "width inf is not a size"),
    ('"width": NaN', "width nan is not a size"),
    ('"width": 100000', "width 100000 is not a size"),
    ('"width": ' + "9" * 4000, "width (a number of about 4000 digits) is not a size"),
    ('"width": "99999999999999999999"', "width '99999999999999999999' is not a size"),
    ('"width": "0"', "width '0' is not a size"),
])
def test_a_size_out_of_range_is_an_error_naming_the_row(tmp_path, cell, shown):
    path = tmp_path / "lib.jsonl"
    path.write_text(f'{{"prompt": "a cat", "width": 512, "height": 512}}\n{{"prompt": "a dog", {cell}, "height": 512}}\n')

    with pytest.raises(LibraryError, match=rf"lib\.jsonl:2: {re.escape(shown)}: give a whole number of pixels from 1 to"):
        read_library(path)


@pytest.mark.parametrize("cell", ["²", "٣٢٠", "auto", "", "1e400", "inf", "-5", "true"])
def test_a_size_cell_that_is_not_a_number_is_kept_as_it_was(tmp_path, cell):
    path = tmp_path / "lib.csv"
    path.write_text(f"prompt,width,height\na cat,{cell},512\n", encoding="utf-8")

    (item,) = read_library(path)

    assert item.recipe.width is None and item.fields["width"] == cell
    (out,) = write_library([item], [item.recipe], tmp_path / "out.csv")
    assert out.read_text(encoding="utf-8") == f"prompt,width,height\na cat,{cell},512\n"


def test_sizes_at_the_ends_of_the_range_are_read(tmp_path):
    path = tmp_path / "lib.csv"
    path.write_text(f"prompt,width,height\na,1,{MAX_SIZE}\nb, 0512 ,512.0\nc, 0512 ,512\n")

    assert [(i.recipe.width, i.recipe.height) for i in read_library(path)] == [(1, MAX_SIZE), (None, None), (512, 512)]


@pytest.mark.parametrize(("row", "message"), [
    ('{"prompt": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"prompt": "a", "x": ' + "{\"k\": " * 50_000 + "1" + "}" * 50_000 + "}", "nested too deeply"),
    ('{"prompt": "a", "seed": ' + "7" * 5000 + "}", "has more than 4300 digits"),
])
def test_deep_or_huge_json_rows_are_an_error_for_their_row(tmp_path, row, message):
    path = tmp_path / "lib.jsonl"
    path.write_text('{"prompt": "fine"}\n' + row + "\n")

    with pytest.raises(LibraryError, match=rf"lib\.jsonl:2: .*{message}"):
        read_library(path)


def test_a_png_with_an_impossible_size_is_an_error_naming_the_file(tmp_path):
    for name, size in (("huge.png", "99999999x5"), ("zero.png", "0x0"), ("long.png", "9" * 5000 + "x5")):
        text = INFOTEXT.replace("512x768", size).encode()
        (tmp_path / name).write_bytes(make_png(png_chunk(b"tEXt", b"parameters\0" + text)))
        with pytest.raises(LibraryError, match=rf"{name}: "):
            read_library(tmp_path / name)


# 7. A damaged or foreign TOML cache is ignored and written again.


@pytest.mark.parametrize("blob", [
    b"",
    b"\x00garbage",
    None,  # a valid marshal of a list, as an older version or another program might leave
    "tag-only",
    "flipped",
])
def test_a_bad_cache_is_ignored_and_rebuilt(tmp_path, monkeypatch, blob):
    import marshal

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PROMPT_BRIDGE_NO_CACHE", raising=False)
    path = tmp_path / "data.toml"
    path.write_text('a = 1\n[t]\nb = ["x"]\n')
    assert read_toml(path) == {"a": 1, "t": {"b": ["x"]}}
    (cached,) = (tmp_path / "cache" / "prompt-bridge").iterdir()
    good = cached.read_bytes()
    if blob is None:
        blob = marshal.dumps(["not", "a", "table"])
    elif blob == "tag-only":
        blob = good[: good.index(b"\n") + 1]
    elif blob == "flipped":
        blob = good[:-3] + bytes([good[-3] ^ 1]) + good[-2:]
    cached.write_bytes(blob)

    assert read_toml(path) == {"a": 1, "t": {"b": ["x"]}}
    assert cached.read_bytes() == good  # written again


def test_a_cache_holding_another_type_with_a_valid_header_is_rebuilt(tmp_path, monkeypatch):
    import marshal

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PROMPT_BRIDGE_NO_CACHE", raising=False)
    path = tmp_path / "data.toml"
    path.write_text("a = 1\n")
    read_toml(path)
    (cached,) = (tmp_path / "cache" / "prompt-bridge").iterdir()
    good = cached.read_bytes()
    payload = marshal.dumps([1, 2, 3])
    tag = good[: good.index(b"\n") + 1]
    cached.write_bytes(tag + zlib.crc32(payload).to_bytes(4, "big") + payload)

    assert read_toml(path) == {"a": 1}


# 4. Text the system cannot encode: unpaired surrogates are refused per item; output failures are one line, exit 1.


def test_a_surrogate_escaped_argument_is_one_error_line(tmp_path):
    done = cli(os.fsencode("caf\udce9 castle"), "a dog")

    assert done.returncode == 1 and done.stdout == b""
    assert "prompt argument 1 holds an unpaired surrogate (U+DCE9 at character 4)" in one_line_error(done.stderr)
    done = cli("--negative", os.fsencode("bad\udcff"), "a dog")
    assert done.returncode == 1 and "--negative holds an unpaired surrogate" in one_line_error(done.stderr)


def test_a_surrogate_in_json_lines_is_an_error_for_its_row_which_is_kept(tmp_path):
    source = tmp_path / "lib.jsonl"
    source.write_text('{"prompt": "a castle, 8k"}\n{"prompt": "bad \\ud800 row", "id": 2}\n'
                      '{"prompt": "a dog", "negative_prompt": "x\\udfff"}\n{"prompt": "ok \\ud83d\\ude00"}\n')

    code, _, err = run("--input", str(source), "--output", str(tmp_path / "out.jsonl"))

    assert code == 1
    assert "lib.jsonl:2 holds an unpaired surrogate (U+D800 at character 5)" in err
    assert "lib.jsonl:3: the negative prompt holds an unpaired surrogate (U+DFFF" in err
    assert "2 prompts could not be translated" in err.splitlines()[-1]
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines[1] == '{"prompt": "bad \\ud800 row", "id": 2}'  # written back as it was, escape and all
    assert json.loads(lines[2])["negative_prompt"] == "x\udfff"
    assert json.loads(lines[0])["prompt"] == "a castle" and json.loads(lines[3])["prompt"] == "ok \U0001f600"


def test_a_surrogate_row_in_json_output_and_a_report_is_escaped_not_a_crash(tmp_path):
    source = tmp_path / "lib.jsonl"
    source.write_text('{"prompt": "bad \\ud800"}\n{"prompt": "a castle"}\n')

    code, out, _ = run("--input", str(source), "--format", "json", "--report", str(tmp_path / "r.html"))

    assert code == 1
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["source_prompt"] == "bad \ud800" and first["warnings"] and second["prompt"] == "a castle"
    assert "\\ud800" in (tmp_path / "r.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("lib.csv", b"prompt\ncaf\xed\xa0\x80\n", "not UTF-8"),  # a surrogate encoded as UTF-8 is not UTF-8
    ("lib.txt", b"a \xed\xbf\xbf castle\n", "not UTF-8"),
    ("a.png", make_png(png_chunk(b"iTXt", b"parameters\0\0\0en\0\0a \xed\xa0\x80\nSteps: 20, Sampler: Euler a, "
                                 b"CFG scale: 7, Seed: 1, Size: 512x512")), "damaged iTXt 'parameters' chunk"),
])
def test_encoded_surrogates_in_files_are_clean_errors(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)

    code, _, err = run("--input", str(tmp_path / name))

    assert code == 1 and needle in one_line_error(err)


@POSIX
def test_a_file_name_that_is_not_utf8_is_escaped_in_json_and_reports(tmp_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    (Path(os.fsdecode(bytes(folder) + b"/caf\xe9.txt"))).write_text("a castle, 8k\n")

    code, out, err = run("--input", str(folder), "--format", "json", "--report", str(tmp_path / "r.md"))

    assert code == 0, err
    assert json.loads(out)["key"] == "caf\udce9.txt:1"
    assert "caf\\udce9.txt" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_an_ascii_stdout_is_one_error_line_and_ascii_text_still_passes():
    done = cli("a castle, café", env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 1
    assert "its encoding (ascii) cannot hold the character U+00E9; set PYTHONIOENCODING=utf-8" in one_line_error(done.stderr)
    done = cli("a castle, 8k", env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and done.stdout == b"a castle\n"
    done = cli("--format", "json", "a castle, café", env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 1 and "cannot write to stdout" in one_line_error(done.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["a castle"], ["--format", "json", "a castle"], ["--help"], ["--list-models"]])
def test_a_full_disk_on_stdout_is_one_error_line(args):
    with open("/dev/full", "wb") as full:
        done = cli(*args, stdout=full, stderr=subprocess.PIPE)

    assert done.returncode == 1
    assert "cannot write to stdout: No space left on device" in one_line_error(done.stderr)


@POSIX
@pytest.mark.parametrize("args", [["a castle"], ["--diff", "a castle, 8k"], ["--help"]])
def test_a_closed_pipe_on_stdout_is_one_error_line(args):
    reader, writer = os.pipe()
    os.close(reader)  # `| head -c0`: nobody reads
    try:
        done = cli(*args, stdout=writer, stderr=subprocess.PIPE)
    finally:
        os.close(writer)

    assert done.returncode == 1
    assert "the program reading it has closed the pipe" in one_line_error(done.stderr)


@POSIX
def test_a_closed_stdout_is_one_error_line_unless_the_output_goes_to_a_file(tmp_path):
    close_stdout = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "preexec_fn": lambda: os.close(1)}
    done = cli("a castle", **close_stdout)
    assert done.returncode == 1 and "stdout is closed; give --output FILE" in one_line_error(done.stderr)
    done = cli("a castle", "--output", str(tmp_path / "o.txt"), **close_stdout)
    assert done.returncode == 0 and (tmp_path / "o.txt").read_text() == "a castle\n"


def test_stdout_through_head_c0_in_a_shell():
    done = subprocess.run(f"{sys.executable} -m bridge --diff 'a castle, 8k' | head -c0; exit ${{PIPESTATUS[0]}}",
                          check=False, shell=True, executable="/bin/bash", capture_output=True, timeout=HANG_GUARD)
    assert done.returncode in (0, 1)  # 0 when the answer fit the pipe before head left
    assert "Traceback" not in done.stderr.decode() and "Exception ignored" not in done.stderr.decode()


# 7. The output side: folders that cannot be written or created are one error line.


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc, where nobody may create a file")
@pytest.mark.parametrize("format", ["text", "json"])
def test_an_unwritable_output_is_one_error_line(tmp_path, format):
    (tmp_path / "in.txt").write_text("a castle\n")
    for out in ("/proc/self/out.txt", "/proc/self/sd2"):
        code, _, err = run("--input", str(tmp_path / "in.txt"), "--output", out, "--format", format)
        assert code == 1 and "cannot write" in one_line_error(err)


def test_an_output_subfolder_that_cannot_be_created_is_one_error_line(tmp_path):
    (tmp_path / "lib" / "sub").mkdir(parents=True)
    (tmp_path / "lib" / "sub" / "a.txt").write_text("a castle\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("a file where the folder goes\n")
    (tmp_path / "file").write_text("x\n")

    code, _, err = run("--input", str(tmp_path / "lib"), "--output", str(tmp_path / "out"))
    assert code == 1 and "out/sub: is a file, but migrated files go into it" in one_line_error(err)
    (tmp_path / "lib" / "sub" / "deeper").mkdir()
    (tmp_path / "lib" / "sub" / "deeper" / "b.txt").write_text("a dog\n")
    (tmp_path / "out" / "sub").unlink()
    (tmp_path / "out" / "sub").mkdir()
    (tmp_path / "out" / "sub" / "deeper").write_text("in the way\n")
    code, _, err = run("--input", str(tmp_path / "lib"), "--output", str(tmp_path / "out"))
    assert code == 1 and "out/sub/deeper: is a file" in one_line_error(err)
    assert os.listdir(tmp_path / "out" / "sub") == ["deeper"]  # nothing moved in
    (tmp_path / "out" / "sub" / "deeper").unlink()
    (tmp_path / "out" / "sub").rmdir()
    (tmp_path / "out" / "sub").write_text("a file where the folder goes\n")
    code, _, err = run("--input", str(tmp_path / "lib"), "--output", str(tmp_path / "file" / "out"))
    assert code == 1 and "cannot write" in one_line_error(err)
    assert (tmp_path / "out" / "sub").read_text() == "a file where the folder goes\n"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_output_folder_is_one_error_line(tmp_path):
    (tmp_path / "in.txt").write_text("a castle\n")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        for out in (tmp_path / "ro" / "o.txt", tmp_path / "ro" / "sub" / "o.txt"):
            code, _, err = run("--input", str(tmp_path / "in.txt"), "--output", str(out))
            assert code == 1 and "Permission denied" in one_line_error(err)
    finally:
        (tmp_path / "ro").chmod(0o700)


# 9. Links in an --input folder: never read outside it unless --follow-symlinks; loops end.


def linked_library(tmp_path: Path) -> Path:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "keys.txt").write_text("the secret prompt\n")
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    (lib / "own.txt").write_text("a castle\n")
    (lib / "sub" / "inner.txt").write_text("a dog\n")
    (lib / "leak.txt").symlink_to(tmp_path / "secret" / "keys.txt")
    (lib / "leakdir").symlink_to(tmp_path / "secret")
    (lib / "alias.txt").symlink_to(lib / "sub" / "inner.txt")
    (lib / "sub" / "loop").symlink_to(lib)
    (lib / "self.txt").symlink_to(lib / "self.txt")
    (lib / "broken.txt").symlink_to(tmp_path / "nowhere.txt")
    return lib


@POSIX
def test_links_leaving_the_folder_are_skipped_with_a_warning(tmp_path):
    lib = linked_library(tmp_path)
    warnings = []

    items = read_library(lib, on_warning=warnings.append)

    assert sorted(item.key for item in items) == ["alias.txt:1", "own.txt:1", "sub/inner.txt:1"]
    assert all("secret" not in item.recipe.prompt for item in items)
    joined = "\n".join(warnings)
    assert f"leak.txt: skipped, a link to {tmp_path / 'secret' / 'keys.txt'}, outside the folder read" in joined
    assert f"leakdir: skipped, a link to {tmp_path / 'secret'}, outside" in joined
    assert "self.txt: skipped, a broken link or a link loop" in joined and "broken.txt: skipped" in joined
    with pytest.warns(LibraryWarning) as caught:
        read_library(lib)
    assert sorted(str(w.message) for w in caught) == sorted(warnings)


@POSIX
def test_follow_symlinks_reads_outside_and_walks_each_folder_once(tmp_path):
    lib = linked_library(tmp_path)
    warnings = []

    items = read_library(lib, follow_symlinks=True, on_warning=warnings.append)

    keys = sorted(item.key for item in items)
    assert keys == ["alias.txt:1", "leak.txt:1", "leakdir/keys.txt:1", "own.txt:1", "sub/inner.txt:1"]
    assert any("sub/loop: skipped, a link loop or a folder already read" in w for w in warnings)


@POSIX
def test_the_cli_warns_about_skipped_links_and_never_writes_their_content(tmp_path):
    lib = linked_library(tmp_path)

    code, _, err = run("--input", str(lib), "--output", str(tmp_path / "out"), "--warnings-summary")

    assert code == 0
    written = "".join(p.read_text() for p in (tmp_path / "out").rglob("*.txt"))
    assert "secret" not in written and "a castle" in written
    assert "warning: " in err and "outside the folder read (--follow-symlinks reads it)" in err
    code, _, err = run("--input", str(lib), "--output", str(tmp_path / "out2"), "--follow-symlinks", "-q")
    assert code == 0 and (tmp_path / "out2" / "leak.txt").read_text() == "the secret prompt\n"


@POSIX
def test_a_deep_chain_of_links_between_two_folders_ends(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "p.txt").write_text("a castle\n")
    (tmp_path / "a" / "to_b").symlink_to(tmp_path / "b")
    (tmp_path / "b" / "to_a").symlink_to(tmp_path / "a")
    for name in ("x", "y", "z"):
        (tmp_path / "a" / name).symlink_to(tmp_path / "a")

    items = read_library(tmp_path / "a", follow_symlinks=True, on_warning=lambda message: None)

    assert [item.key for item in items] == ["p.txt:1"]


# 10. FIFOs, sockets and devices: refused as --input, skipped inside a folder, never opened.


@POSIX
def test_a_fifo_as_input_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "queue.txt"
    os.mkfifo(fifo)

    done = cli("--input", str(fifo))

    assert done.returncode == 1
    assert f"cannot read --input {fifo}: it is a FIFO (named pipe), not a file or folder" in one_line_error(
        done.stderr)
    with pytest.raises(LibraryError, match=r"queue\.txt: a FIFO \(named pipe\), not a file or folder"):
        read_library(fifo)


@POSIX
@pytest.mark.parametrize("flag", ["--network-map", "--knowledge", "--registry"])
def test_a_fifo_for_a_file_flag_is_refused_without_waiting(tmp_path, flag):
    fifo = tmp_path / "map.txt"
    os.mkfifo(fifo)

    done = cli(flag, str(fifo), "a castle")

    assert done.returncode == 1 and f"cannot read {flag} {fifo}: it is a FIFO" in one_line_error(done.stderr)


@POSIX
def test_special_files_in_a_folder_are_skipped_with_a_warning(tmp_path):
    import socket

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.txt").write_text("a castle\n")
    os.mkfifo(tmp_path / "lib" / "b.txt")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "lib" / "c.jsonl"))
        (tmp_path / "lib" / "d.txt").symlink_to("/dev/zero")
        warnings = []
        items = read_library(tmp_path / "lib", follow_symlinks=True, on_warning=warnings.append)
        assert [item.key for item in items] == ["a.txt:1"]
        assert [w.split(": ", 1)[1] for w in warnings] == ["skipped, a FIFO (named pipe), not a regular file",
                                                         "skipped, a socket, not a regular file",
                                                         "skipped, a character device, not a regular file"]
        done = cli("--input", str(tmp_path / "lib"), "--input-dialect", "a1111")
        assert done.returncode == 0 and done.stdout == b"a castle\n"
        assert b"b.txt: skipped, a FIFO" in done.stderr
        done = cli("--input", str(tmp_path / "lib" / "c.jsonl"))
        assert done.returncode == 1 and "it is a socket" in one_line_error(done.stderr)
    finally:
        server.close()


# 11. Two writers of one file: each its own temporary, one whole file wins.


def _write_report_many_times(path: str, label: str, rounds: int, ready) -> None:
    from bridge.migration import MigrationRow, write_report
    from bridge.translation import Translation

    rows = [MigrationRow(f"{label}{i}", "a castle", "", Translation(Recipe(prompt=f"{label} {i} " * 50),
                                                                     source="sd15", target="sd2"))
            for i in range(300)]
    ready.wait()
    for _ in range(rounds):
        write_report(path, rows, source="sd15", target="sd2")


def test_two_processes_writing_one_report_many_times_leave_one_whole_report(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    path = tmp_path / "report.md"
    ready = context.Event()
    writers = [context.Process(target=_write_report_many_times, args=(str(path), label, 40, ready))
               for label in ("first", "second")]
    for writer in writers:
        writer.start()
    ready.set()
    for writer in writers:
        writer.join(HANG_GUARD)

    assert [writer.exitcode for writer in writers] == [0, 0]
    text = path.read_text(encoding="utf-8")
    assert text.count("### ") == 300 and text.endswith("\n")
    assert ("first0" in text) != ("second0" in text)  # one writer's report, whole
    assert os.listdir(tmp_path) == ["report.md"]


def test_two_cli_runs_writing_one_report_and_output_at_once(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.txt").write_text("".join(f"{name} castle {i}, 8k\n" for i in range(300)))
    for _ in range(5):
        runs = [subprocess.Popen([sys.executable, "-m", "bridge", "--input", str(tmp_path / f"{name}.txt"), "-q",
                                  "--report", str(tmp_path / "r.md"), "--output", str(tmp_path / "o.txt"),
                                  "--format", "json"], stderr=subprocess.PIPE) for name in ("a", "b")]
        errors = [run.communicate(timeout=HANG_GUARD)[1] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], errors
        report, output = (tmp_path / "r.md").read_text(), (tmp_path / "o.txt").read_text()
        assert report.count("### ") == 300 and len(output.splitlines()) == 300
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt", "o.txt", "r.md"]


def test_writers_in_threads_never_share_a_temporary(tmp_path):
    path = tmp_path / "out.txt"
    errors = []

    def write(label: str) -> None:
        try:
            for _ in range(100):
                atomic_write(path, label * 10_000, fsync=False)
        except OSError as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(label,)) for label in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [] and path.read_text() in {label * 10_000 for label in "abcd"}
    assert os.listdir(tmp_path) == ["out.txt"]


# 12. Nothing lost: outputs that would replace an input, each other, or skip what cannot be read.


@pytest.mark.parametrize("format", ["text", "json", "a1111"])
@pytest.mark.parametrize("name", ["lib.txt", "lib.csv", "lib.jsonl"])
def test_output_naming_the_input_is_a_usage_error_in_every_format(tmp_path, format, name):
    source = tmp_path / name
    content = {"lib.txt": "a castle, 8k\n", "lib.csv": "prompt\na castle\n", "lib.jsonl": '{"prompt": "a"}\n'}[name]
    source.write_text(content)
    (tmp_path / "alias").symlink_to(source)

    for out in (source, tmp_path / "alias", tmp_path / "." / name):
        code, _, err = run("--input", str(source), "--output", str(out), "--format", format)
        assert code == 2 and "is an input of this run" in one_line_error(err)
    assert source.read_text() == content


def test_output_inside_an_input_folder_naming_one_of_its_files_is_refused(tmp_path):
    (tmp_path / "lib" / "sub").mkdir(parents=True)
    (tmp_path / "lib" / "sub" / "a.jsonl").write_text('{"prompt": "a castle"}\n')

    code, _, err = run("--input", str(tmp_path / "lib"), "--output", str(tmp_path / "lib" / "sub" / "a.jsonl"),
                       "--format", "json")

    assert code == 2 and "is an input of this run" in one_line_error(err)
    code, _, err = run("--input", str(tmp_path / "lib"), "--output", str(tmp_path / "lib"))
    assert code == 2 and "is an input of this run" in one_line_error(err)


def test_output_and_report_naming_one_file_is_a_usage_error(tmp_path):
    (tmp_path / "in.txt").write_text("a castle\n")
    (tmp_path / "o.md").write_text("kept\n")
    (tmp_path / "link.md").symlink_to(tmp_path / "o.md")

    for report in (tmp_path / "o.md", tmp_path / "link.md", tmp_path / "." / "o.md"):
        code, _, err = run("--output", str(tmp_path / "o.md"), "--report", str(report), "a castle")
        assert code == 2 and "--output and --report both name" in one_line_error(err)
    (tmp_path / "map.md").write_text("detail=detail_sd2\n")
    code, _, err = run("--input", str(tmp_path / "in.txt"), "--report", str(tmp_path / "map.md"),
                       "--network-map", str(tmp_path / "map.md"))
    assert code == 2 and "--report" in one_line_error(err) and "is an input of this run" in err
    assert (tmp_path / "o.md").read_text() == "kept\n" and (tmp_path / "map.md").read_text() == "detail=detail_sd2\n"


def test_an_unreadable_subfolder_is_an_error_and_the_rest_migrates(tmp_path, monkeypatch):
    (tmp_path / "lib" / "locked").mkdir(parents=True)
    (tmp_path / "lib" / "locked" / "hidden.txt").write_text("a dog\n")
    (tmp_path / "lib" / "a.txt").write_text("a castle\n")
    locked = str(tmp_path / "lib" / "locked")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(library_module.os, "scandir", scandir)
    code, _, err = run("--input", str(tmp_path / "lib"), "--output", str(tmp_path / "out"))

    assert code == 1
    assert f"error: {locked}: cannot read this folder: Permission denied; its files were not read" in err
    assert "1 file or folder of the library could not be read" in err.splitlines()[-1]
    assert (tmp_path / "out" / "a.txt").read_text() == "a castle\n"
    with pytest.raises(LibraryError, match="cannot read this folder: Permission denied"):
        read_library(tmp_path / "lib")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads every folder")
def test_a_folder_without_read_permission_is_an_error(tmp_path):
    (tmp_path / "lib" / "locked").mkdir(parents=True)
    (tmp_path / "lib" / "locked" / "b.txt").write_text("a dog\n")
    (tmp_path / "lib" / "a.txt").write_text("a castle\n")
    (tmp_path / "lib" / "locked").chmod(0)
    try:
        code, out, err = run("--input", str(tmp_path / "lib"))
    finally:
        (tmp_path / "lib" / "locked").chmod(0o700)
    assert code == 1 and out == "a castle\n" and "cannot read this folder" in err


# 13. Folder output whole: built beside and renamed, or moved into an existing folder at the end.


def png_library(tmp_path: Path, count: int) -> list:
    source = tmp_path / "outputs"
    source.mkdir()
    for i in range(count):
        text = INFOTEXT.replace("castle", f"castle {i}").encode()
        (source / f"{i:05d}.png").write_bytes(make_png(png_chunk(b"tEXt", b"parameters\0" + text)))
    return read_library(source)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_migration_killed_while_writing_leaves_no_half_folder(tmp_path, monkeypatch, failure):
    items = png_library(tmp_path, 200)
    written = []
    real = library_module.file_bytes

    def slow(fmt, group):
        if len(written) == 103:
            raise failure
        written.append(group)
        return real(fmt, group)

    monkeypatch.setattr(library_module, "file_bytes", slow)
    with pytest.raises(type(failure)):
        write_library(items, [item.recipe for item in items], tmp_path / "sd2")

    assert sorted(os.listdir(tmp_path)) == ["outputs"]  # no sd2, no temporary folder


def test_into_an_existing_folder_nothing_moves_until_every_file_is_built(tmp_path, monkeypatch):
    items = png_library(tmp_path, 50)
    out = tmp_path / "sd2"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    (out / "00003.png").write_bytes(b"an older migration")
    real = library_module.file_bytes
    calls = []

    def failing(fmt, group):
        calls.append(1)
        if len(calls) == 40:
            raise OSError(28, "No space left on device")
        return real(fmt, group)

    monkeypatch.setattr(library_module, "file_bytes", failing)
    with pytest.raises(OSError):
        write_library(items, [item.recipe for item in items], out)
    assert sorted(os.listdir(out)) == ["00003.png", "notes.txt"] and sorted(os.listdir(tmp_path)) == ["outputs", "sd2"]

    monkeypatch.setattr(library_module, "file_bytes", real)
    write_library(items, [item.recipe for item in items], out)
    assert len(os.listdir(out)) == 51 and (out / "notes.txt").read_text() == "mine\n"
    assert read_library(out / "00003.png")[0].recipe.prompt.startswith("a castle 3")


def test_a_killed_cli_migration_leaves_nothing_and_a_rerun_completes(tmp_path):
    png_library(tmp_path, 200)
    script = ("import sys, bridge.library as l\n"
              "real = l.file_bytes\n"
              "count = [0]\n"
              "def dying(fmt, group):\n"
              "    count[0] += 1\n"
              "    if count[0] == 100:\n"
              "        import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
              "    return real(fmt, group)\n"
              "l.file_bytes = dying\n"
              "from bridge.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    args = ["--input", str(tmp_path / "outputs"), "--output", str(tmp_path / "sd2"), "-q"]
    done = subprocess.run([sys.executable, "-c", script, *args], check=False, capture_output=True,
                          timeout=HANG_GUARD)
    assert done.returncode == -9
    assert not (tmp_path / "sd2").exists()  # the half-built folder is hidden beside it, not in its place

    assert cli(*args).returncode == 0
    assert len(os.listdir(tmp_path / "sd2")) == 200
    assert sorted(os.listdir(tmp_path)) == ["outputs", "sd2"]  # the killed run's temporary folder is gone


def test_stale_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out.txt"
    stale = tmp_path / f".out.txt.{dead.pid}-0a1b2c.tmp"
    live = tmp_path / f".out.txt.{os.getpid()}-0a1b2c.tmp"
    old = tmp_path / f".out.txt.{os.getpid()}-ffffff.tmp"
    other = tmp_path / f".other.txt.{dead.pid}-0a1b2c.tmp"
    for path in (stale, live, old, other):
        path.write_text("half")
    os.utime(old, (1, 1))  # untouched for decades

    code, _, _ = run("--output", str(out), "a castle")

    assert code == 0 and out.read_text() == "a castle\n"
    assert sorted(os.listdir(tmp_path)) == sorted(["out.txt", live.name, other.name])
    remove_stale_temporaries(tmp_path / "other.txt")
    assert other.name not in os.listdir(tmp_path)


def test_help_tells_how_outputs_are_written_and_the_limits():
    code, out, _ = run("--help")

    assert code == 0
    for needle in ("a new folder appears whole at the end", "into an existing folder the files are built beside",
                   "--follow-symlinks", "1 MiB", "16384", "unpaired surrogate", "25 million steps",
                   "naming an input"):
        assert needle in " ".join(out.split()), needle


# Dialect errors reach the CLI as warnings, the prompt kept as written (what the A1111 path answers a prompt it rejects).


@pytest.mark.parametrize("flag", ["--input-dialect", "--dialect"])
@pytest.mark.parametrize("dialect", ["compel", "comfyui"])
@pytest.mark.parametrize("prompt", ["(a:1.2.3)", "a" + "+" * 10_000, "a.blend(nan, inf)", "a.and(1e309)",
                                    "(" * 5000 + "a" + ")" * 5000, "a castle" + "-" * 10_000])
def test_malformed_dialect_prompts_are_kept_with_a_warning(flag, dialect, prompt):
    for argv in ([flag, dialect, prompt, "a castle, 8k"], [flag, dialect, "--input", "-"]):
        code, out, err = run(*argv, stdin=f"{prompt}\na castle, 8k\n")
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 2 and lines[1] == "a castle"


def test_a_prompt_the_input_dialect_cannot_read_is_kept_as_written(monkeypatch):
    from bridge import dialects

    def unreadable(text, dialect):
        if "bad" in text:
            raise OverflowError(34, "Numerical result out of range")
        return dialects.Converted(text)

    monkeypatch.setattr(dialects, "to_a1111", unreadable)
    code, out, err = run("--input-dialect", "compel", "--format", "json", "a bad one", "a castle, 8k")

    first, second = (json.loads(line) for line in out.splitlines())
    assert code == 0 and first["prompt"] == "a bad one" and first["changes"] == [] and second["prompt"] == "a castle"
    assert "reading compel: the prompt cannot be converted (OverflowError" in first["warnings"][0]
    assert "kept as written" in err


# 14. Smaller holes: HTML in Markdown reports, stale caches, empty or odd option values, narrow Parquet columns,
# API items leading out of the output folder, huge infotext numbers.

HOSTILE_HTML = '<img src=x onerror="alert(1)"> <script>alert(2)</script> a castle & a moat'


def test_a_markdown_report_escapes_html_from_the_prompts(tmp_path):
    library = tmp_path / "lib.txt"
    library.write_text(HOSTILE_HTML + ", by greg rutkowski\n<b>bold</b> | pipe\n")
    report = tmp_path / "report.md"

    code, _, _ = run("--input", str(library), "--output", str(tmp_path / "out.txt"), "--report", str(report))

    text = report.read_text()
    assert code == 0
    assert "<img" not in text and "<script" not in text and "<b>" not in text
    assert "&lt;img src=x onerror=" in text and "&lt;script&gt;" in text and "&amp; a moat" in text
    assert "&lt;b&gt;bold&lt;/b&gt; \\| pipe" in text  # a pipe still cannot break the table


def test_a_cache_of_another_version_is_not_used(tmp_path, monkeypatch):
    import marshal

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PROMPT_BRIDGE_NO_CACHE", raising=False)
    path = tmp_path / "data.toml"
    path.write_text("a = 1\n")
    read_toml(path)
    (cached,) = (tmp_path / "cache" / "prompt-bridge").iterdir()
    payload = marshal.dumps({"a": 2, "injected": True})  # a table, well formed, but not what the file says
    old_tag = b"prompt-bridge toml cache 1\n"
    cached.write_bytes(old_tag + zlib.crc32(payload).to_bytes(4, "big") + payload)

    assert read_toml(path) == {"a": 1}
    assert cached.read_bytes().startswith(b"prompt-bridge toml cache ") and not cached.read_bytes().startswith(old_tag)


@pytest.mark.parametrize("jobs", ["0", "-3", "1e3", "two", "", "99999999999999999999999", "257"])
def test_jobs_must_be_a_whole_number_of_workers(jobs):
    code, out, err = run("--jobs", jobs, "a castle")

    assert code == 2 and out == ""
    assert f"--jobs: invalid value {jobs!r}: give a whole number of worker processes from 1 to 256" in err


@pytest.mark.parametrize("flag", ["--input", "--output", "--report", "--from", "--to", "--column", "--network-map",
                                  "--embeddings", "--knowledge", "--registry", "--model", "--disable-rule"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_value_is_a_usage_error_never_the_default(flag, value):
    code, out, err = run(flag, value, "a castle")

    assert code == 2 and out == ""
    assert err.startswith(f"translate-prompt: error: {flag} is empty; give ") and err.count("\n") == 1


def test_an_empty_negative_means_none_and_jobs_within_range_work(tmp_path):
    assert run("--negative", "", "a castle")[:2] == run("a castle")[:2]
    library = tmp_path / "lib.txt"
    library.write_text("a castle\n")
    code, out, _ = run("--input", str(library), "--jobs", "256")
    assert (code, out) == (0, run("a castle")[1])


@pytest.mark.parametrize("kind", ["int8", "uint8", "int16", "null"])
def test_a_narrow_parquet_size_column_is_widened(tmp_path, kind):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "lib.parquet"
    sizes = [None, None] if kind == "null" else [64, 100]
    table = pa.table({"prompt": ["a castle, by greg rutkowski", "a dog"], "width": pa.array(sizes, getattr(pa, kind)()),
                      "height": pa.array(sizes, getattr(pa, kind)()), "id": pa.array([1, 2], pa.int8())})
    pq.write_table(table, path)
    items = read_library(path)
    recipes = [Recipe(prompt=item.recipe.prompt, width=768, height=1024) for item in items]

    (out,) = write_library(items, recipes, tmp_path / "out.parquet")

    written = pq.read_table(out)
    assert written.column("width").to_pylist() == [768, 768]
    assert written.column("height").to_pylist() == [1024, 1024]
    assert written.schema.field("id").type == pa.int8()  # a column whose values fit keeps its type


@pytest.mark.parametrize(("source", "root"), [
    ("lib/../../evil.txt", "lib"),
    ("lib/a/../../../evil.txt", "lib"),
    ("/etc/evil.txt", "lib"),
    ("elsewhere/evil.txt", "lib"),
    ("..", None),
    ("/", None),
])
def test_an_api_item_leading_out_of_the_output_folder_is_refused(tmp_path, source, root):
    from bridge.library import LibraryItem

    out = tmp_path / "deep" / "out"
    item = LibraryItem(Recipe(prompt="a castle"), source, 1, "k", root=root)
    other = LibraryItem(Recipe(prompt="a dog"), "lib/fine.txt", 1, "fine", root="lib")

    with pytest.raises(LibraryError, match="leads out of the output folder"):
        write_library([other, item], [Recipe(prompt="x"), Recipe(prompt="y")], out)
    assert sorted(path.name for path in tmp_path.rglob("*")) == []  # nothing written anywhere, not even `out`


@pytest.mark.parametrize(("line", "key"), [
    ("Steps: 20, Sampler: Euler a, Size: " + "9" * 5000 + "x5", "Size"),
    ("Steps: " + "9" * 5000 + ", Sampler: Euler a, Size: 512x512", "Steps"),
    ("Steps: 20, Sampler: Euler a, CFG scale: 1e400, Size: 512x512", "CFG scale"),
    ("Steps: 20, Sampler: Euler a, Size: ５１２x512", "Size"),
])
def test_huge_infotext_numbers_are_a_short_error(tmp_path, line, key):
    from bridge.recipe import InfotextError

    with pytest.raises(InfotextError) as error:
        Recipe.from_infotext("a castle\n" + line)
    message = str(error.value)
    assert message.startswith(f"infotext key {key!r} has value ") and len(message) < 200
    assert "Exceeds the limit" not in message and "\n" not in message
    png = tmp_path / "huge.png"
    png.write_bytes(make_png(png_chunk(b"tEXt", b"parameters\0" + ("a castle\n" + line).encode())))
    code, _, err = run("--input", str(png), "--output", str(tmp_path / "out"))
    assert code == 1 and "huge.png" in err and f"infotext key {key!r}" in err and len(err) < 400
