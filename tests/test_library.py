"""Tests for bridge.library: every library format read and written back, errors that name file and line."""

import csv
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from bridge import library
from bridge.library import FORMATS, SUPPORTED_SUFFIXES, LibraryError, detect_format, read_library, write_library
from bridge.recipe import Recipe

INFOTEXT = (
    "a castle on a hill, by greg rutkowski\n"
    "Negative prompt: lowres\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, Model: v1-5"
)

# PNGs are built here with the stdlib, independently of the code under test.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png(*extra_chunks: bytes) -> bytes:
    """A valid 1x1 grey PNG with `extra_chunks` between IHDR and IDAT."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    pixels = png_chunk(b"IDAT", zlib.compress(b"\x00\x80"))
    return PNG_SIGNATURE + header + b"".join(extra_chunks) + pixels + png_chunk(b"IEND", b"")


def text_chunk(text: str, keyword: bytes = b"parameters") -> bytes:
    return png_chunk(b"tEXt", keyword + b"\0" + text.encode("latin-1"))


def ztxt_chunk(text: str) -> bytes:
    return png_chunk(b"zTXt", b"parameters\0\0" + zlib.compress(text.encode("latin-1")))


def itxt_chunk(text: str, *, compressed: bool) -> bytes:
    body = zlib.compress(text.encode("utf-8")) if compressed else text.encode("utf-8")
    return png_chunk(b"iTXt", b"parameters\0" + bytes([int(compressed), 0]) + b"en\0\0" + body)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Parse a PNG, checking its signature, every length and every CRC, and that it ends with IEND."""
    assert data.startswith(PNG_SIGNATURE)
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset < len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        offset += 12 + length
    assert offset == len(data)
    assert chunks[-1][0] == b"IEND"
    return chunks


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def prompts(items: list[library.LibraryItem]) -> list[str]:
    return [item.recipe.prompt for item in items]


# Reading, format by format.


def test_text_reads_one_prompt_per_line_and_skips_blank_lines(tmp_path):
    path = write(tmp_path / "prompts.txt", "\ufeffa cat\r\n\n   \n  a dog, 8k  \nBREAK <lora:x:1>")

    items = read_library(path)

    assert prompts(items) == ["a cat", "a dog, 8k", "BREAK <lora:x:1>"]
    assert [item.line for item in items] == [1, 4, 5]
    assert [item.key for item in items] == ["prompts.txt:1", "prompts.txt:4", "prompts.txt:5"]
    assert {item.kind for item in items} == {"text"}
    assert {item.source for item in items} == {str(path)}


def test_csv_reads_prompts_negatives_sizes_and_other_columns(tmp_path):
    path = write(
        tmp_path / "lib.csv",
        'id,prompt,negative_prompt,width,height\n1,a cat,blurry,512,768\n2,"a dog,\nin a park",,,\n3,,,,\n',
    )

    items = read_library(path)

    assert prompts(items) == ["a cat", "a dog,\nin a park", ""]  # the row with an empty prompt is kept
    assert [item.recipe.negative_prompt for item in items] == ["blurry", "", ""]
    assert [item.line for item in items] == [2, 3, 5]  # where each row starts, the header being line 1
    assert [item.key for item in items] == ["lib.csv:2", "lib.csv:3", "lib.csv:5"]
    assert (items[0].recipe.width, items[0].recipe.height) == (512, 768)
    assert items[1].recipe.width is None
    assert items[0].fields == {"id": "1", "width": "512", "height": "768"}
    assert items[0].kind == "csv"


def test_csv_default_prompt_column_is_the_first_known_name(tmp_path):
    path = write(tmp_path / "captions.csv", "file,caption,text\na.png,a red fox,a fox from text\n")

    (item,) = read_library(path)

    assert item.recipe.prompt == "a fox from text"  # "text" comes before "caption" in PROMPT_COLUMNS
    assert item.fields == {"file": "a.png", "caption": "a red fox"}


def test_csv_column_and_negative_column_choose_the_columns(tmp_path):
    path = write(tmp_path / "lib.csv", "title,sd1,avoid\nx,a fox,blurry\n")

    (item,) = read_library(path, column="sd1", negative_column="avoid")

    assert (item.recipe.prompt, item.recipe.negative_prompt) == ("a fox", "blurry")
    assert item.fields == {"title": "x"}


@pytest.mark.parametrize(
    ("name", "text"), [("lib.csv", "negative_prompt\nblurry\n"), ("lib.jsonl", '{"negative_prompt": "blurry"}\n')]
)
def test_prompt_column_named_negative_prompt_is_not_also_the_negative(tmp_path, name, text):
    items = read_library(write(tmp_path / name, text), column="negative_prompt")
    assert (items[0].recipe.prompt, items[0].recipe.negative_prompt) == ("blurry", "")

    (out,) = write_library(items, [Recipe(prompt="sharp")], tmp_path / f"out{Path(name).suffix}")

    assert read_library(out, column="negative_prompt")[0].recipe.prompt == "sharp"


def test_tsv_reads_tab_separated_rows(tmp_path):
    path = write(tmp_path / "lib.tsv", "prompt\tnegative_prompt\na cat, 8k\tugly\n")

    (item,) = read_library(path)

    assert (item.recipe.prompt, item.recipe.negative_prompt, item.kind) == ("a cat, 8k", "ugly", "tsv")


def test_jsonl_reads_objects_in_order(tmp_path):
    lines = [{"prompt": "a cat", "negative_prompt": "blurry", "seed": 1}, {"prompt": "a dog", "tags": ["x"]}]
    path = write(tmp_path / "lib.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")

    items = read_library(path)

    assert prompts(items) == ["a cat", "a dog"]
    assert [item.recipe.negative_prompt for item in items] == ["blurry", ""]
    assert [item.fields for item in items] == [{"seed": 1}, {"tags": ["x"]}]
    assert [item.key for item in items] == ["lib.jsonl:1", "lib.jsonl:2"]


MALFORMED = [
    ("lib.csv", b"title,sd1\nx,a fox\n", {}, r"lib\.csv: no prompt column .*\['title', 'sd1'\].*column="),
    (
        "lib.csv",
        b"title,sd1\nx,a fox\n",
        {"column": "nope"},
        r"lib\.csv: no column 'nope'; columns found: \['title', 'sd1'\]",
    ),
    (
        "lib.csv",
        b"prompt\na\n",
        {"negative_column": "neg"},
        r"lib\.csv: no negative prompt column 'neg'; columns found",
    ),
    ("lib.csv", b"prompt,seed\na cat,1\na dog\n", {}, r"lib\.csv:3: 1 fields but the header has 2"),
    ("lib.csv", b'prompt\n"a cat\n', {}, r"lib\.csv:2: malformed csv row"),
    (
        "lib.csv",
        b"\n\nprompt,prompt\na,b\n",
        {},
        r"lib\.csv:3: the header repeats a column name: \['prompt', 'prompt'\]",
    ),
    ("styles.csv", b"prompt,negative_prompt\na,b\n", {}, r"styles\.csv:1: a styles file needs a 'name' column"),
    ("lib.jsonl", b'{"prompt": "a cat"}\n\n{"prompt": "a dog"\n', {}, r"lib\.jsonl:3: not valid JSON"),
    ("lib.jsonl", b'["a cat"]\n', {}, r"lib\.jsonl:1: expected a JSON object, got list"),
    (
        "lib.jsonl",
        b'{"prompt": "a"}\n{"caption": "b"}\n',
        {},
        r"lib\.jsonl:2: no key 'prompt'; keys found: \['caption'\]",
    ),
    (
        "lib.jsonl",
        b'{"prompt": "a"}\n',
        {"column": "caption"},
        r"lib\.jsonl:1: no key 'caption'; keys found: \['prompt'\]",
    ),
    ("lib.jsonl", b'{"prompt": 3}\n', {}, r"lib\.jsonl:1: 'prompt' must be text, got int 3"),
    ("lib.txt", b"a cat\nna\xefve dog\n", {}, r"lib\.txt: not UTF-8: byte b'\\xef' at byte offset 8 \(line 2\)"),
    ("lib.csv", b"\xef\xbb\xbfprompt\n\xff\n", {}, r"lib\.csv: not UTF-8: byte b'\\xff' at byte offset 10 \(line 2\)"),
]


@pytest.mark.parametrize(("name", "content", "options", "message"), MALFORMED)
def test_malformed_library_errors_name_file_and_line(tmp_path, name, content, options, message):
    (tmp_path / name).write_bytes(content)

    with pytest.raises(LibraryError, match=message):
        read_library(tmp_path / name, **options)


def test_styles_csv_keeps_the_prompt_placeholder_and_keys_by_name(tmp_path):
    path = write(
        tmp_path / "styles.csv",
        'name,prompt,negative_prompt\nCinematic,"{prompt}, film grain, 35mm",cartoon\nEmpty,,\n',
    )

    items = read_library(path)

    assert prompts(items) == ["{prompt}, film grain, 35mm", ""]
    assert [item.recipe.negative_prompt for item in items] == ["cartoon", ""]
    assert [item.key for item in items] == ["Cinematic", "Empty"]
    assert [item.kind for item in items] == ["styles", "styles"]
    assert [item.line for item in items] == [2, 3]


def test_styles_detected_by_header_or_name(tmp_path):
    by_header = write(tmp_path / "my-styles.csv", '"name","prompt","negative_prompt"\nA,x,y\n')
    by_name = write(tmp_path / "b" / "styles.csv", "prompt,name\nx,A\n")
    plain = write(tmp_path / "lib.csv", "name,prompt\nA,x\n")

    assert detect_format(by_header) == "styles"
    assert detect_format(by_name) == "styles"
    assert detect_format(plain) == "csv"
    assert read_library(by_name)[0].key == "A"


def test_png_parameters_from_text_ztxt_and_itxt_chunks(tmp_path):
    unicode_infotext = INFOTEXT.replace("a castle", "a castle, 城")
    files = {
        "text.png": make_png(text_chunk("other", keyword=b"Comment"), text_chunk(INFOTEXT)),
        "z.png": make_png(ztxt_chunk(INFOTEXT)),
        "i.png": make_png(itxt_chunk(unicode_infotext, compressed=False)),
        "iz.png": make_png(itxt_chunk(unicode_infotext, compressed=True)),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    for name in files:
        (item,) = read_library(tmp_path / name)
        expected = Recipe.from_infotext(unicode_infotext if name.startswith("i") else INFOTEXT)
        assert item.recipe == expected, name
        assert (item.key, item.line, item.kind) == (name, None, "png")
    assert read_library(tmp_path / "i.png")[0].recipe.prompt == "a castle, 城 on a hill, by greg rutkowski"
    assert read_library(tmp_path / "z.png")[0].recipe.steps == 20


def test_png_without_parameters_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "plain.png"
    path.write_bytes(make_png(text_chunk("hello", keyword=b"Comment")))

    with pytest.raises(LibraryError, match=r"plain\.png: no A1111 'parameters' text chunk"):
        read_library(path)


def test_damaged_png_is_an_error(tmp_path):
    data = bytearray(make_png(text_chunk(INFOTEXT)))
    data[50] ^= 0xFF  # inside the tEXt chunk: its CRC no longer matches
    (tmp_path / "bad.png").write_bytes(bytes(data))
    (tmp_path / "cut.png").write_bytes(make_png(text_chunk(INFOTEXT))[:-20])
    (tmp_path / "fake.png").write_bytes(b"GIF89a")

    with pytest.raises(LibraryError, match=r"bad\.png: damaged PNG: chunk b'tEXt' at byte offset 33"):
        read_library(tmp_path / "bad.png")
    with pytest.raises(LibraryError, match=r"cut\.png: (truncated|damaged) PNG"):
        read_library(tmp_path / "cut.png")
    with pytest.raises(LibraryError, match=r"fake\.png: not a PNG file"):
        read_library(tmp_path / "fake.png")


def test_missing_file_and_unsupported_suffix_are_errors(tmp_path):
    with pytest.raises(LibraryError, match=r"nope\.txt: no such file or folder"):
        read_library(tmp_path / "nope.txt")
    with pytest.raises(LibraryError, match=r"notes\.md: unsupported file type '\.md'; supported: \.txt, \.csv"):
        read_library(write(tmp_path / "notes.md", "a cat\n"))
    with pytest.raises(LibraryError, match=r"unknown format 'yaml'; valid formats: text, csv"):
        read_library(tmp_path, format="yaml")


def test_format_overrides_the_suffix(tmp_path):
    path = write(tmp_path / "prompts.list", "a cat\na dog\n")

    assert prompts(read_library(path, format="text")) == ["a cat", "a dog"]


def test_folder_reads_supported_files_recursively_sorted_skipping_hidden_and_others(tmp_path):
    write(tmp_path / "b.txt", "from b\n")
    write(tmp_path / "a" / "z.jsonl", '{"prompt": "from a/z"}\n')
    write(tmp_path / "a" / "styles.csv", "name,prompt,negative_prompt\nS,from styles,\n")
    write(tmp_path / ".hidden.txt", "hidden\n")
    write(tmp_path / ".git" / "x.txt", "hidden too\n")
    write(tmp_path / "README.md", "not a library\n")
    (tmp_path / "c.png").write_bytes(make_png(text_chunk(INFOTEXT)))

    items = read_library(tmp_path)

    assert prompts(items) == ["from styles", "from a/z", "from b", Recipe.from_infotext(INFOTEXT).prompt]
    assert [item.key for item in items] == ["S", "a/z.jsonl:1", "b.txt:1", "c.png"]
    assert {item.root for item in items} == {str(tmp_path)}


def test_folder_with_nothing_readable_lists_what_it_found(tmp_path):
    write(tmp_path / "notes.md", "x\n")

    with pytest.raises(LibraryError, match=r"no prompt files .*found only notes\.md"):
        read_library(tmp_path)


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    path = tmp_path / "lib.parquet"
    path.write_bytes(b"PAR1")

    with pytest.raises(
        LibraryError, match=r"^reading \.parquet needs the ml extra: pip install 'prompt-bridge\[ml\]'$"
    ):
        read_library(path)


def test_import_is_light():
    code = "import sys, bridge.library; print(sorted(m for m in ('pyarrow', 'datasets', 'torch') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


def test_detect_format_and_constants():
    assert [detect_format(f"x{suffix}") for suffix in SUPPORTED_SUFFIXES] == [
        "text", "csv", "tsv", "jsonl", "parquet", "png"
    ]  # fmt: skip
    assert detect_format("X.JSONL") == "jsonl"
    assert set(FORMATS) == {"text", "csv", "tsv", "jsonl", "parquet", "styles", "png"}


# Writing.


def migrated(items: list[library.LibraryItem]) -> list[Recipe]:
    """What a bridge might return: a new prompt and negative, and SD2's size."""
    return [
        item.recipe.replace(prompt=f"{item.recipe.prompt}, sd2", negative_prompt="cartoon", width=768, height=768)
        for item in items
    ]


def test_text_round_trip(tmp_path):
    items = read_library(write(tmp_path / "in.txt", "a cat\n\na dog\n"))

    (out,) = write_library(items, migrated(items), tmp_path / "out.txt")

    assert out == tmp_path / "out.txt"
    assert out.read_text(encoding="utf-8") == "a cat, sd2\n\na dog, sd2\n"  # the blank line kept: line N answers line N


def test_text_refuses_a_multi_line_prompt(tmp_path):
    items = read_library(write(tmp_path / "in.txt", "a cat\n"))

    with pytest.raises(LibraryError, match=r"in\.txt:1: the prompt has several lines"):
        write_library(items, [Recipe(prompt="a\ncat")], tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


def test_csv_round_trip_keeps_columns_and_adds_negative_and_size(tmp_path):
    items = read_library(write(tmp_path / "in.csv", 'id,caption,seed\n1,"a cat, 8k",7\n2,,8\n'))

    (out,) = write_library(items, migrated(items), tmp_path / "out.csv")

    with out.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows == [
        {"id": "1", "caption": "a cat, 8k, sd2", "seed": "7", "negative_prompt": "cartoon", "width": "768", "height": "768"},
        {"id": "2", "caption": ", sd2", "seed": "8", "negative_prompt": "cartoon", "width": "768", "height": "768"},
    ]  # fmt: skip
    again = read_library(out)
    assert [item.recipe for item in again] == migrated(items)
    assert [item.line for item in again] == [2, 3]


def test_csv_without_negatives_adds_no_negative_column(tmp_path):
    items = read_library(write(tmp_path / "in.csv", "prompt,width,height\na cat,512,512\n"))

    (out,) = write_library(items, [item.recipe.replace(prompt="a cat, sd2") for item in items], tmp_path / "o.csv")

    assert out.read_text(encoding="utf-8") == 'prompt,width,height\n"a cat, sd2",512,512\n'


def test_tsv_round_trip(tmp_path):
    items = read_library(write(tmp_path / "in.tsv", "prompt\tnegative_prompt\tnote\na cat\tugly\tkeep\n"))

    (out,) = write_library(items, migrated(items), tmp_path / "out.tsv")

    assert out.read_text(encoding="utf-8").splitlines() == [
        "prompt\tnegative_prompt\tnote\twidth\theight",
        "a cat, sd2\tcartoon\tkeep\t768\t768",
    ]
    assert [item.recipe for item in read_library(out)] == migrated(items)


def test_jsonl_round_trip_keeps_keys_and_values(tmp_path):
    source = [{"id": 1, "prompt": "a cat", "tags": ["pet"]}, {"prompt": "a dog", "negative_prompt": "blur"}]
    items = read_library(write(tmp_path / "in.jsonl", "".join(json.dumps(row) + "\n" for row in source)))
    recipes = migrated(items)
    recipes[1] = recipes[1].replace(negative_prompt="")

    (out,) = write_library(items, recipes, tmp_path / "out.jsonl")

    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == [
        {"id": 1, "prompt": "a cat, sd2", "tags": ["pet"], "negative_prompt": "cartoon", "width": 768, "height": 768},
        {"prompt": "a dog, sd2", "negative_prompt": "", "width": 768, "height": 768},
    ]
    assert [item.recipe for item in read_library(out)] == recipes


def test_styles_round_trip_keeps_placeholder_and_adds_no_size(tmp_path):
    text = 'name,prompt,negative_prompt\nCinematic,"{prompt}, film grain",cartoon\n'
    items = read_library(write(tmp_path / "styles.csv", text))
    recipes = [item.recipe.replace(prompt="{prompt}, film grain, 35mm", width=768, height=768) for item in items]

    (out,) = write_library(items, recipes, tmp_path / "sd2" / "styles.csv")

    assert (
        out.read_text(encoding="utf-8")
        == 'name,prompt,negative_prompt\nCinematic,"{prompt}, film grain, 35mm",cartoon\n'
    )
    assert read_library(out)[0].recipe.prompt == "{prompt}, film grain, 35mm"


@pytest.mark.parametrize(
    ("infotext", "chunk_type"),
    [
        (INFOTEXT.replace("a castle", "a castle, sd2"), b"tEXt"),
        (INFOTEXT.replace("a castle", "a castle, 城"), b"iTXt"),  # not Latin-1
    ],
)
def test_png_written_as_a_copy_with_new_parameters(tmp_path, infotext, chunk_type):
    original = make_png(text_chunk("keep me", keyword=b"Comment"), ztxt_chunk(INFOTEXT))
    source = tmp_path / "in.png"
    source.write_bytes(original)
    items = read_library(source)

    (out,) = write_library(items, [Recipe.from_infotext(infotext)], tmp_path / "out" / "in.png")

    assert source.read_bytes() == original
    chunks = png_chunks(out.read_bytes())
    assert [kind for kind, _ in chunks] == [b"IHDR", b"tEXt", chunk_type, b"IDAT", b"IEND"]
    assert chunks[1] == (b"tEXt", b"Comment\0keep me")
    assert [body for kind, body in png_chunks(original) if kind in (b"IHDR", b"IDAT")] == [
        body for kind, body in chunks if kind in (b"IHDR", b"IDAT")
    ]
    (again,) = read_library(out)
    assert again.recipe == Recipe.from_infotext(infotext)
    assert again.recipe.to_infotext() == infotext


def test_png_parameters_after_the_image_data_are_replaced_in_place(tmp_path):
    data = make_png()
    data = data[: -len(png_chunk(b"IEND", b""))] + text_chunk(INFOTEXT) + png_chunk(b"IEND", b"")
    (tmp_path / "late.png").write_bytes(data)
    items = read_library(tmp_path / "late.png")

    (out,) = write_library(items, [Recipe(prompt="new")], tmp_path / "new.png")

    assert [kind for kind, _ in png_chunks(out.read_bytes())] == [b"IHDR", b"IDAT", b"tEXt", b"IEND"]
    assert read_library(out)[0].recipe.prompt == "new"


def test_folder_in_folder_out_mirrors_relative_paths(tmp_path):
    source = tmp_path / "lib"
    write(source / "top.txt", "a cat\n")
    write(source / "sub" / "deep" / "rows.jsonl", '{"prompt": "a dog"}\n')
    (source / "sub" / "img.png").write_bytes(make_png(text_chunk(INFOTEXT)))
    items = read_library(source)

    written = write_library(items, migrated(items), tmp_path / "out")

    out = tmp_path / "out"
    assert written == [out / "sub" / "deep" / "rows.jsonl", out / "sub" / "img.png", out / "top.txt"]
    again = read_library(out)
    assert [item.key for item in again] == [item.key for item in items]
    assert prompts(again) == [recipe.prompt for recipe in migrated(items)]
    assert sorted(path.name for path in out.rglob("*")) == ["deep", "img.png", "rows.jsonl", "sub", "top.txt"]


def test_one_file_into_an_existing_folder(tmp_path):
    items = read_library(write(tmp_path / "in.txt", "a cat\n"))
    (tmp_path / "out").mkdir()

    assert write_library(items, migrated(items), tmp_path / "out") == [tmp_path / "out" / "in.txt"]


def test_out_without_a_suffix_is_a_folder(tmp_path):
    items = read_library(write(tmp_path / "in.txt", "a cat\n"))

    assert write_library(items, migrated(items), tmp_path / "migrated") == [tmp_path / "migrated" / "in.txt"]


def test_format_converts_and_renames_in_folders(tmp_path):
    write(tmp_path / "lib" / "a.txt", "a cat\n")
    items = read_library(tmp_path / "lib")

    (out,) = write_library(items, migrated(items), tmp_path / "out", format="jsonl")

    assert out == tmp_path / "out" / "a.jsonl"
    assert json.loads(out.read_text(encoding="utf-8")) == {
        "prompt": "a cat, sd2", "negative_prompt": "cartoon", "width": 768, "height": 768
    }  # fmt: skip


def test_output_suffix_must_match_the_format(tmp_path):
    items = read_library(write(tmp_path / "in.txt", "a cat\n"))

    with pytest.raises(LibraryError, match=r"out\.csv: suffix '\.csv' does not match the text format"):
        write_library(items, migrated(items), tmp_path / "out.csv")
    with pytest.raises(LibraryError, match=r"cannot write a text library as png"):
        write_library(items, migrated(items), tmp_path / "out.png", format="png")


@pytest.mark.parametrize("name", ["in.txt", "in.png"])
def test_refuses_to_overwrite_the_input(tmp_path, name):
    source = tmp_path / name
    source.write_bytes(make_png(text_chunk(INFOTEXT)) if name.endswith(".png") else b"a cat\n")
    before = source.read_bytes()
    items = read_library(source)

    with pytest.raises(LibraryError, match="is an input of the library"):
        write_library(items, migrated(items), source)
    with pytest.raises(LibraryError, match="is an input of the library"):
        write_library(items, migrated(items), tmp_path)  # a folder: the mirrored path is the input itself
    assert source.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [name]


def test_refuses_two_sources_on_one_output(tmp_path):
    items = read_library(write(tmp_path / "a" / "x.txt", "a cat\n")) + read_library(
        write(tmp_path / "b" / "x.txt", "a\n")
    )

    with pytest.raises(LibraryError, match=r"both .*a/x\.txt and .*b/x\.txt would be written there"):
        write_library(items, migrated(items), tmp_path / "out")


def test_write_needs_one_recipe_per_item(tmp_path):
    items = read_library(write(tmp_path / "in.txt", "a cat\na dog\n"))

    with pytest.raises(LibraryError, match="got 2 library items but 1 recipes"):
        write_library(items, migrated(items)[:1], tmp_path / "out.txt")


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    items = read_library(write(tmp_path / "in.txt", "a cat\n"))
    out = write(tmp_path / "out" / "out.txt", "old\n")

    def crash(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(library.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_library(items, migrated(items), out)

    assert out.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(out.parent) == ["out.txt"]


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    table = pa.table({"id": pa.array([1, 2], pa.int32()), "caption": ["a cat", None], "score": [0.5, 0.25]})
    pq.write_table(table, path)
    items = read_library(path)
    assert prompts(items) == ["a cat", ""]
    assert [(item.line, item.key) for item in items] == [(1, "in.parquet:1"), (2, "in.parquet:2")]
    assert items[0].fields == {"id": 1, "score": 0.5}

    (out,) = write_library(items, migrated(items), tmp_path / "out.parquet")

    written = pq.read_table(out)
    assert written.schema.field("id").type == pa.int32()
    assert written.to_pylist() == [
        {"id": 1, "caption": "a cat, sd2", "score": 0.5, "negative_prompt": "cartoon", "width": 768, "height": 768},
        {"id": 2, "caption": ", sd2", "score": 0.25, "negative_prompt": "cartoon", "width": 768, "height": 768},
    ]
    assert [item.recipe for item in read_library(out)] == migrated(items)
