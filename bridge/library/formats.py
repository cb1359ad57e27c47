"""Prompt library items and formats: :class:`LibraryItem`, and each format's reader (file -> items) and writer
(items with their new recipes -> the file's bytes), in ``READERS`` and ``WRITERS`` by format name (``FORMATS``).

:mod:`bridge.library` reads and writes whole libraries with them; its docstring describes each format.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bridge.datafiles import json_line, surrogate_at
from bridge.recipe import Recipe

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "FORMATS",
    "FORMAT_SUFFIX",
    "MAX_SIZE",
    "PNG_TEXT_LIMIT",
    "READERS",
    "SUFFIX_FORMATS",
    "SUPPORTED_SUFFIXES",
    "WRITERS",
    "LibraryError",
    "LibraryItem",
    "Source",
    "detect_format",
    "file_bytes",
]

SUFFIX_FORMATS = {
    ".txt": "text",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".png": "png",
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(SUFFIX_FORMATS)
FORMATS: tuple[str, ...] = ("text", "csv", "tsv", "jsonl", "parquet", "styles", "png")
FORMAT_SUFFIX = {**{fmt: suffix for suffix, fmt in SUFFIX_FORMATS.items()}, "styles": ".csv"}
_DELIMITERS = {"csv": ",", "tsv": "\t", "styles": ","}

PROMPT_COLUMNS = ("prompt", "Prompt", "text", "caption")  # tried in this order when `column` is not given
NEGATIVE_COLUMN = "negative_prompt"
STYLES_NAME = "styles.csv"
STYLES_HEADER = ["name", "prompt", "negative_prompt"]
_BOM = b"\xef\xbb\xbf"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_PARAMETERS = b"parameters"  # the keyword A1111 stores its infotext under
_MISSING_PYARROW = "{action} .parquet needs the ml extra: pip install 'prompt-bridge[ml]'"
PNG_TEXT_LIMIT = 1 << 20  # bytes of "parameters" text once decompressed: Pillow's MAX_TEXT_CHUNK
MAX_SIZE = 16384  # pixels, width or height: A1111's sliders stop at 2048, a 4x hires fix at 8192
_SIZE_DIGITS = len(str(MAX_SIZE))


class LibraryError(ValueError):
    """A library file that cannot be read or written; the message names the file and the line or byte offset."""


@dataclass
class LibraryItem:
    """One prompt of a library: its recipe and where it came from, with what is needed to write it back.

    `key` is a stable id: "prompts.txt:12" (path relative to the folder read, then the line or row), the style name
    for a styles.csv, the relative file name for a PNG. `fields` holds the row's other columns (not the prompt and
    negative prompt columns) with their values as read.
    """

    recipe: Recipe
    source: str
    line: int | None
    key: str
    fields: dict[str, object] = field(default_factory=dict)
    kind: str = "text"
    root: str | None = None  # the folder read_library was given; None when it was given this file
    columns: tuple[str, ...] = ()  # the row's columns in file order (header, JSON keys), to write them back in order
    prompt_column: str | None = None
    negative_column: str | None = None


class Source(NamedTuple):
    """A file to read: its path, its name in item keys, and the folder it was found in (None: given itself)."""

    path: Path
    name: str  # relative to the folder read, or the file name: the start of each key
    root: str | None


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of `path` from its suffix: one of FORMATS. A .csv is "styles" when it is named styles.csv or its
    header is exactly `name,prompt,negative_prompt`.

    >>> detect_format("prompts.jsonl")
    'jsonl'
    """
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise LibraryError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)} (or pass format=, one of {', '.join(FORMATS)})"
        )
    if fmt == "csv" and (path.name.lower() == STYLES_NAME or _first_csv_row(path) == STYLES_HEADER):
        return "styles"
    return fmt


# Reading.


def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a leading byte order mark is dropped), or LibraryError naming the bad byte."""
    data = _read_bytes(path)
    start = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = data.count(b"\n", 0, offset) + 1
        raise LibraryError(
            f"{path}: not UTF-8: byte {data[offset : offset + 1]!r} at byte offset {offset} (line {line}); "
            "save the file as UTF-8"
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise LibraryError(f"{path}: cannot read: {error.strerror}") from None


def _first_csv_row(path: Path) -> list[str] | None:
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as file:
            return next(csv.reader(file), None)
    except (OSError, csv.Error):
        return None  # not readable here: reading it as csv reports the problem


def _read_text_lines(source: Source, column: str | None, negative_column: str | None) -> list[LibraryItem]:
    items = []
    for number, line in enumerate(_read_text(source.path).split("\n"), start=1):
        prompt = line.strip()
        if prompt:
            key = f"{source.name}:{number}"
            items.append(LibraryItem(Recipe(prompt=prompt), str(source.path), number, key, root=source.root))
    return items


def _read_delimited(source: Source, column: str | None, negative_column: str | None, kind: str) -> list[LibraryItem]:
    text = _read_text(source.path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_DELIMITERS[kind], strict=True)
    rows = []  # (line where the row starts, fields)
    try:
        start = 1
        for fields in reader:
            if fields:
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as error:
        raise LibraryError(f"{source.path}:{start}: malformed {kind} row: {error}") from None
    if not rows:
        return []
    (header_line, header), *rows = rows
    if len(set(header)) != len(header):
        raise LibraryError(f"{source.path}:{header_line}: the header repeats a column name: {header}")
    columns = tuple(header)
    if kind == "styles":
        if "name" not in columns:
            raise LibraryError(
                f"{source.path}:{header_line}: a styles file needs a 'name' column; columns found: {header}"
            )
        prompt_column, negative_column = _choose_columns(source.path, columns, None, None, ("prompt",))
    else:
        prompt_column, negative_column = _choose_columns(source.path, columns, column, negative_column, PROMPT_COLUMNS)
    items = []
    for line, fields in rows:
        if len(fields) != len(header):
            raise LibraryError(
                f"{source.path}:{line}: {len(fields)} fields but the header has {len(header)} ({', '.join(header)})"
            )
        row = dict(zip(header, fields, strict=True))
        key = row["name"] if kind == "styles" else None
        items.append(_row_item(source, kind, line, row, columns, prompt_column, negative_column, key))
    return items


def _read_jsonl(source: Source, column: str | None, negative_column: str | None) -> list[LibraryItem]:
    prompt_column = column or "prompt"
    negative_column = negative_column or NEGATIVE_COLUMN
    items = []
    for line, text in enumerate(_read_text(source.path).split("\n"), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            raise LibraryError(f"{source.path}:{line}: not valid JSON: {error.msg} at column {error.colno}") from None
        except ValueError:  # an integer longer than Python converts
            limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
            raise LibraryError(f"{source.path}:{line}: a number in this row has more than {limit} digits, more "
                               "than Python reads") from None
        except RecursionError:
            raise LibraryError(f"{source.path}:{line}: this row is nested too deeply to read (lists or objects "
                               f"about {sys.getrecursionlimit()} levels deep or more)") from None
        if not isinstance(row, dict):
            raise LibraryError(f"{source.path}:{line}: expected a JSON object, got {type(row).__name__}")
        if prompt_column not in row:
            raise LibraryError(
                f"{source.path}:{line}: no key {prompt_column!r}; keys found: {list(row)} (choose one with column=)"
            )
        negative = negative_column if negative_column in row and negative_column != prompt_column else None
        items.append(_row_item(source, "jsonl", line, row, tuple(row), prompt_column, negative))
    return items


def _read_parquet(source: Source, column: str | None, negative_column: str | None) -> list[LibraryItem]:
    pa, pq = _pyarrow("reading")
    try:
        table = pq.read_table(source.path)
    except (pa.ArrowException, OSError) as error:
        raise LibraryError(f"{source.path}: cannot read as Parquet: {error}") from None
    columns = tuple(table.column_names)
    prompt_column, negative_column = _choose_columns(source.path, columns, column, negative_column, PROMPT_COLUMNS)
    return [
        _row_item(source, "parquet", number, row, columns, prompt_column, negative_column)
        for number, row in enumerate(table.to_pylist(), start=1)
    ]


def _read_png(source: Source, column: str | None, negative_column: str | None) -> list[LibraryItem]:
    text = _png_parameters(_png_chunks(_read_bytes(source.path), source.path), source.path)
    if text is None:
        raise LibraryError(
            f"{source.path}: no A1111 'parameters' text chunk (tEXt, zTXt or iTXt); was it saved without its infotext?"
        )
    try:
        recipe = Recipe.from_infotext(text)
    except ValueError as error:
        raise LibraryError(f"{source.path}: {error}") from None
    if recipe.width is not None:
        _size(recipe.width, str(source.path), "width")
        _size(recipe.height, str(source.path), "height")
    return [LibraryItem(recipe, str(source.path), None, source.name, kind="png", root=source.root)]


def _choose_columns(
    path: Path, columns: tuple[str, ...], column: str | None, negative_column: str | None, candidates: Sequence[str]
) -> tuple[str, str | None]:
    """The prompt column and the negative prompt column (None when there is none) of a table."""
    if column is None:
        column = next((name for name in candidates if name in columns), None)
        if column is None:
            raise LibraryError(
                f"{path}: no prompt column (looked for {', '.join(candidates)}); columns found: {list(columns)}; "
                "choose one with column="
            )
    elif column not in columns:
        raise LibraryError(f"{path}: no column {column!r}; columns found: {list(columns)}")
    if negative_column is not None and negative_column not in columns:
        raise LibraryError(f"{path}: no negative prompt column {negative_column!r}; columns found: {list(columns)}")
    negative_column = negative_column or (NEGATIVE_COLUMN if NEGATIVE_COLUMN in columns else None)
    return column, negative_column if negative_column != column else None


def _row_item(
    source: Source,
    kind: str,
    line: int,
    row: dict[str, Any],
    columns: tuple[str, ...],
    prompt_column: str,
    negative_column: str | None,
    key: str | None = None,
) -> LibraryItem:
    def text(name: str | None) -> str:
        value = row.get(name) if name is not None else None
        if value is None:
            return ""
        if not isinstance(value, str):
            raise LibraryError(f"{source.path}:{line}: {name!r} must be text, got {type(value).__name__} {value!r}")
        return value

    where = f"{source.path}:{line}"
    width, height = _size(row.get("width"), where, "width"), _size(row.get("height"), where, "height")
    if width is None or height is None:
        width = height = None
    recipe = Recipe(prompt=text(prompt_column), negative_prompt=text(negative_column), width=width, height=height)
    fields = {name: value for name, value in row.items() if name not in (prompt_column, negative_column)}
    key = key if key is not None else f"{source.name}:{line}"
    return LibraryItem(
        recipe, str(source.path), line, key, fields, kind, source.root, columns, prompt_column, negative_column
    )


def _size(value: object, where: str, column: str) -> int | None:
    """A width or height from a cell: a whole number of pixels from 1 to MAX_SIZE (512, "512", 512.0). A cell that
    is not a number ("auto", "", true) gives no size and is only kept; a number that is not a size (0, 512.5, 10**9,
    inf, nan) is an error naming the row. Text counts as a number only when it is ASCII digits (str.isdigit also
    takes "²"), and a long run of them is out of range without being converted."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            return None
        number: object = int(text) if len(text) <= _SIZE_DIGITS else MAX_SIZE + 1
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    else:
        return None
    if isinstance(number, float) and number.is_integer():  # inf and nan are not
        number = int(number)
    if isinstance(number, int) and 1 <= number <= MAX_SIZE:
        return number
    raise LibraryError(f"{where}: {column} {_shown(value)} is not a size: give a whole number of pixels from 1 to "
                       f"{MAX_SIZE}")


def _shown(value: object) -> str:
    """A cell's value for a message, short whatever its length (a 5,000-digit int cannot even be printed)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"(a number of about {int(value.bit_length() * 0.30103)} digits)"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}… ({len(text)} characters)"


READERS: dict[str, Callable[[Source, str | None, str | None], list[LibraryItem]]] = {
    "text": _read_text_lines,
    "csv": lambda source, column, negative: _read_delimited(source, column, negative, "csv"),
    "tsv": lambda source, column, negative: _read_delimited(source, column, negative, "tsv"),
    "styles": lambda source, column, negative: _read_delimited(source, column, negative, "styles"),
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
    "png": _read_png,
}


# PNG chunks (https://www.w3.org/TR/png/#5Chunk-layout): length, type, data, CRC of type + data.


def _png_chunks(data: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    """The (type, data) chunks of a PNG up to IEND, with their CRCs checked."""
    if not data.startswith(_PNG_SIGNATURE):
        raise LibraryError(f"{path}: not a PNG file (its first bytes are not the PNG signature)")
    chunks = []
    offset = len(_PNG_SIGNATURE)
    while not chunks or chunks[-1][0] != b"IEND":
        if offset + 12 > len(data):
            raise LibraryError(f"{path}: truncated PNG: it ends at byte {len(data)} before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, offset)
        end = offset + 12 + length
        body = data[offset + 8 : end - 4]
        if end > len(data) or zlib.crc32(kind + body) != struct.unpack_from(">I", data, end - 4)[0]:
            raise LibraryError(
                f"{path}: damaged PNG: chunk {kind!r} at byte offset {offset} is truncated or fails its CRC"
            )
        chunks.append((kind, body))
        offset = end
    return chunks


def _png_parameters(chunks: list[tuple[bytes, bytes]], path: Path) -> str | None:
    """The text of the first "parameters" text chunk, or None. Its text may hold at most PNG_TEXT_LIMIT bytes (the
    compressed forms are inflated in steps, never past the limit); other text chunks are not decoded at all."""
    for kind, body in chunks:
        keyword, _, rest = body.partition(b"\0")
        if kind not in _PNG_TEXT_CHUNKS or keyword != _PARAMETERS:
            continue
        try:
            if kind == b"tEXt":
                return _limited(rest, path, kind).decode("latin-1")
            if kind == b"zTXt":  # compression method byte (0: zlib), then the compressed Latin-1 text
                return _inflate(rest[1:], path, kind).decode("latin-1")
            # iTXt: compression flag, method, language tag\0, translated keyword\0, then UTF-8 text
            compressed = rest[0] == 1
            _language, _, rest = rest[2:].partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            return (_inflate(text, path, kind) if compressed else _limited(text, path, kind)).decode("utf-8")
        except (IndexError, zlib.error, UnicodeDecodeError) as error:
            raise LibraryError(f"{path}: damaged {kind.decode()} 'parameters' chunk: {error}") from None
    return None


def _limited(text: bytes, path: Path, kind: bytes) -> bytes:
    if len(text) > PNG_TEXT_LIMIT:
        raise LibraryError(f"{path}: its {kind.decode()} 'parameters' chunk holds {len(text):,} bytes of text, over the "
                           f"limit of {PNG_TEXT_LIMIT:,} (1 MiB) per PNG text chunk; not read")
    return text


def _inflate(compressed: bytes, path: Path, kind: bytes) -> bytes:
    """zlib data inflated to at most PNG_TEXT_LIMIT bytes: a small chunk that would inflate to gigabytes stops there."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(compressed, PNG_TEXT_LIMIT + 1)
    if len(text) > PNG_TEXT_LIMIT:
        raise LibraryError(f"{path}: its {kind.decode()} 'parameters' chunk inflates to more than {PNG_TEXT_LIMIT:,} "
                           "bytes (1 MiB), the limit per PNG text chunk; not read")
    if not inflater.eof:
        raise LibraryError(f"{path}: damaged {kind.decode()} 'parameters' chunk: its compressed text is cut short")
    return text


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_parameters_chunk(text: str) -> bytes:
    """tEXt when the text is Latin-1 (as A1111 writes it), else iTXt with uncompressed UTF-8."""
    try:
        return _png_chunk(b"tEXt", _PARAMETERS + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return _png_chunk(b"iTXt", _PARAMETERS + b"\0\0\0\0\0" + text.encode("utf-8"))


# Writing.


def _row(item: LibraryItem, recipe: Recipe, *, with_size: bool) -> dict[str, Any]:
    """The item's row with the recipe written into it, columns in their original order, new ones at the end."""
    row: dict[str, Any] = {name: item.fields.get(name) for name in item.columns}
    row.update(item.fields)
    row[item.prompt_column or "prompt"] = recipe.prompt
    negative_column = item.negative_column or (NEGATIVE_COLUMN if recipe.negative_prompt else None)
    if negative_column is not None:
        row[negative_column] = recipe.negative_prompt
    if with_size and recipe.width is not None:
        row["width"], row["height"] = recipe.width, recipe.height
    return row


def _header(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row))


def _text_bytes(group: list[tuple[LibraryItem, Recipe]]) -> bytes:
    for item, recipe in group:
        if "\n" in recipe.prompt or "\r" in recipe.prompt:
            raise LibraryError(f"{item.key}: the prompt has several lines; a .txt holds one per line, write jsonl")
    lines: list[str] = []
    for item, recipe in group:  # each prompt back on its own line number: the blank lines between are kept
        if item.line is not None and item.line > len(lines) + 1:
            lines += [""] * (item.line - len(lines) - 1)
        lines.append(recipe.prompt)
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def _delimited_bytes(group: list[tuple[LibraryItem, Recipe]], kind: str) -> bytes:
    rows = [_row(item, recipe, with_size=kind != "styles") for item, recipe in group]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, _header(rows), delimiter=_DELIMITERS[kind], lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _jsonl_bytes(group: list[tuple[LibraryItem, Recipe]]) -> bytes:
    lines = (json_line(_row(item, recipe, with_size=True)) for item, recipe in group)
    return "".join(lines).encode("utf-8")


def file_bytes(fmt: str, group: list[tuple[LibraryItem, Recipe]]) -> bytes:
    """The file of format `fmt` holding `group` (WRITERS), or LibraryError naming the first item whose text UTF-8
    cannot store (an unpaired surrogate; jsonl writes it as its escape instead)."""
    try:
        return WRITERS[fmt](group)
    except UnicodeEncodeError:
        for item, recipe in group:
            for value in (recipe.prompt, recipe.negative_prompt, *map(str, item.fields.values())):
                at = surrogate_at(value)
                if at is not None:
                    raise LibraryError(f"{item.key}: holds an unpaired surrogate (U+{ord(value[at]):04X}), which "
                                       f"{fmt} cannot store; write jsonl, or fix the text") from None
        raise


def _parquet_bytes(group: list[tuple[LibraryItem, Recipe]]) -> bytes:
    pa, pq = _pyarrow("writing")
    rows = [_row(item, recipe, with_size=True) for item, recipe in group]
    source = group[0][0]
    schema = pq.read_schema(source.source) if source.kind == "parquet" else None
    arrays = {}
    for name in _header(rows):
        values = [row.get(name) for row in rows]
        kind = schema.field(name).type if schema is not None and name in schema.names else None
        if kind is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            values = [value if value is None else str(value) for value in values]  # e.g. width in a text column
        try:
            arrays[name] = pa.array(values, type=kind)
        except (pa.ArrowException, OverflowError):
            # the column's type cannot hold a new value (768 in an int8 width column, a size in an all-null
            # column): the column is widened to the type its values need
            try:
                arrays[name] = pa.array(values)
            except (pa.ArrowException, OverflowError) as error:
                raise LibraryError(f"{source.source}: column {name!r} of type {kind} cannot hold the migrated "
                                   f"values ({error}); write jsonl or csv") from None
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue().to_pybytes()


def _png_bytes(group: list[tuple[LibraryItem, Recipe]]) -> bytes:
    (item, recipe), *others = group
    if others:
        raise LibraryError(f"{item.source}: {len(group)} recipes for one PNG; a PNG holds one")
    path = Path(item.source)
    new_chunk = _png_parameters_chunk(recipe.to_infotext())
    parts = [_PNG_SIGNATURE]
    for kind, body in _png_chunks(_read_bytes(path), path):
        if kind in _PNG_TEXT_CHUNKS and body.partition(b"\0")[0] == _PARAMETERS:
            parts.append(new_chunk)  # in place of the old one; any later duplicate is dropped
            new_chunk = b""
        elif kind == b"IEND":
            parts += [new_chunk, _png_chunk(kind, body)]
        else:
            parts.append(_png_chunk(kind, body))
    return b"".join(parts)


WRITERS: dict[str, Callable[[list[tuple[LibraryItem, Recipe]]], bytes]] = {
    "text": _text_bytes,
    "csv": lambda group: _delimited_bytes(group, "csv"),
    "tsv": lambda group: _delimited_bytes(group, "tsv"),
    "styles": lambda group: _delimited_bytes(group, "styles"),
    "jsonl": _jsonl_bytes,
    "parquet": _parquet_bytes,
    "png": _png_bytes,
}


def _pyarrow(action: str) -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, imported only when a Parquet file is read or written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LibraryError(_MISSING_PYARROW.format(action=action)) from None
    return pa, pq
