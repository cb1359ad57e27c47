"""Prompt libraries in and out: migrate a whole library of SD1.x prompts, keeping every row and its other columns.

Read a file or a folder, translate each recipe, write the result in the same format::

    from bridge.library import read_library, write_library
    from bridge.load import translate

    items = read_library("prompts.csv", column="caption")  # or a .txt, .jsonl, .parquet, styles.csv, .png, a folder
    recipes = [translate(item.recipe, source="sd15", target="sd2").recipe for item in items]
    write_library(items, recipes, "prompts-sd2.csv")  # the same rows, prompt replaced, width/height added

    items = read_library("outputs/")  # every supported file inside, recursively, sorted by path
    write_library(items, recipes_for(items), "outputs-sd2/")  # mirrors outputs/a/1.png as outputs-sd2/a/1.png

Formats (`FORMATS`; chosen from the suffix, see `detect_format`, unless `format=` says otherwise):

- text (.txt): one prompt per line. Blank lines are skipped (they are not prompts); `line` is the line in the file.
  Written back as one prompt per line, so the negative prompt and the size are not kept: use jsonl for those.
- csv (.csv), tsv (.tsv): a header row, then one row per prompt. The prompt column is `column=`, else the first of
  "prompt", "Prompt", "text", "caption"; the negative prompt column is `negative_column=`, else "negative_prompt" when
  present. Integer "width" and "height" columns fill the recipe's size. Blank lines hold no row and are skipped.
- jsonl (.jsonl): one JSON object per line; the prompt key is `column=` (default "prompt"). Blank lines are skipped.
- parquet (.parquet): one row per prompt, columns chosen as for csv; needs pyarrow (the ml extra), imported only here.
- styles: an A1111 styles.csv (named so, or with the header exactly `name,prompt,negative_prompt`): one item per style,
  keyed by its name. A `{prompt}` placeholder is kept verbatim.
- png: the A1111 infotext in the PNG's "parameters" text chunk (tEXt, zTXt or iTXt). Written as a copy of the PNG with
  the new infotext; the original file is never modified.

Nothing is dropped silently: a row with an empty prompt is an item with an empty prompt; malformed rows, files that are
not UTF-8 and PNGs without "parameters" raise `LibraryError` naming the file and the line (or byte offset).
Writes are atomic (:func:`bridge.datafiles.atomic_write`), and never replace a file the library was read from.

This module reads and writes libraries (files, folders, where each item goes); :mod:`bridge.library.formats` holds
the items and each format's reader and writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.datafiles import atomic_write
from bridge.library.formats import (
    FORMAT_SUFFIX,
    FORMATS,
    READERS,
    SUFFIX_FORMATS,
    SUPPORTED_SUFFIXES,
    WRITERS,
    LibraryError,
    LibraryItem,
    Source,
    detect_format,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bridge.recipe import Recipe

__all__ = [
    "FORMATS",
    "SUPPORTED_SUFFIXES",
    "LibraryError",
    "LibraryItem",
    "detect_format",
    "read_library",
    "write_library",
]


def read_library(
    path: str | os.PathLike[str],
    *,
    column: str | None = None,
    negative_column: str | None = None,
    format: str | None = None,
) -> list[LibraryItem]:
    """Read the prompts of a file, or of every supported file in a folder (recursively, sorted by path; hidden files
    and folders are skipped, so are files of other types). Items come in file order, then row order.

    `column` and `negative_column` choose the prompt columns of csv, tsv, jsonl and parquet files; `format` (one of
    FORMATS) overrides the suffix, for every file when `path` is a folder.
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise LibraryError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if path.is_dir():
        files = _library_files(path, format)
        sources = [Source(file, file.relative_to(path).as_posix(), str(path)) for file in files]
    elif path.is_file():
        sources = [Source(path, path.name, None)]
    else:
        raise LibraryError(f"{path}: no such file or folder")
    items: list[LibraryItem] = []
    for source in sources:
        fmt = format or detect_format(source.path)
        items += READERS[fmt](source, column, negative_column)
    return items


def write_library(
    items: Sequence[LibraryItem],
    recipes: Sequence[Recipe],
    out: str | os.PathLike[str],
    *,
    format: str | None = None,
) -> list[Path]:
    """Write `recipes` (one per item, e.g. the migrated ones) in each item's format, or in `format` when given
    (converting, e.g. text to jsonl; png and styles need items read from PNGs and styles.csv). Returns the files written.

    Rows keep their other columns and order; the prompt is replaced, the negative prompt too when its column existed
    or the new one is not empty (a "negative_prompt" column is added), and "width"/"height" columns are set when the
    recipe has a size (not for styles). PNGs are written as copies with the new infotext in their "parameters" chunk.

    `out` is a file when the items come from one file read on its own; it is a folder when the library was read from a
    folder, comes from several files, or `out` is an existing folder or has no suffix: each file is written under it at
    its path relative to the folder read (its file name otherwise), with the suffix of `format` when converting.
    """
    if len(items) != len(recipes):
        raise LibraryError(f"got {len(items)} library items but {len(recipes)} recipes; pass one recipe per item")
    if format is not None and format not in FORMATS:
        raise LibraryError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    targets = _plan_targets(items, Path(out), format)
    written = []
    for target, (fmt, indices) in targets.items():
        group = [(items[i], recipes[i]) for i in indices]
        _write(target, WRITERS[fmt](group))
        written.append(target)
    return written


# Reading: the files of a folder.


def _library_files(folder: Path, format: str | None) -> list[Path]:
    files, unsupported = [], []
    for file in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in file.relative_to(folder).parts) or not file.is_file():
            continue
        if format is None and file.suffix.lower() not in SUFFIX_FORMATS:
            unsupported.append(file.relative_to(folder).as_posix())
        else:
            files.append(file)
    if not files:
        found = f"found only {', '.join(unsupported)}" if unsupported else "it has no files"
        raise LibraryError(f"{folder}: no prompt files ({', '.join(SUPPORTED_SUFFIXES)}); {found}")
    return files

# Writing: where each item goes.


def _plan_targets(items: Sequence[LibraryItem], out: Path, format: str | None) -> dict[Path, tuple[str, list[int]]]:
    """Each output file with its format and the indices of the items written to it, checked before anything is
    written: formats possible, no two sources on one file, no input overwritten."""
    sources = list(dict.fromkeys(item.source for item in items))
    to_folder = not out.suffix or out.is_dir() or len(sources) > 1 or any(item.root is not None for item in items)
    if to_folder and out.exists() and not out.is_dir():
        raise LibraryError(f"{out}: is a file, but the library comes from a folder or several files; give a folder")
    targets: dict[Path, tuple[str, list[int]]] = {}
    written_from: dict[Path, str] = {}
    for index, item in enumerate(items):
        fmt = format or item.kind
        if fmt in ("png", "styles") and item.kind != fmt:
            raise LibraryError(f"{item.source}: cannot write a {item.kind} library as {fmt}; {fmt} needs {fmt} sources")
        if to_folder:
            relative = Path(item.source).relative_to(item.root) if item.root is not None else Path(item.source).name
            target = out / relative
            if fmt != item.kind:
                target = target.with_suffix(FORMAT_SUFFIX[fmt])
        else:
            target = out
            if out.suffix.lower() in SUFFIX_FORMATS and out.suffix.lower() != FORMAT_SUFFIX[fmt]:
                raise LibraryError(
                    f"{out}: suffix {out.suffix!r} does not match the {fmt} format; name it *{FORMAT_SUFFIX[fmt]} "
                    "or pass format= to convert"
                )
        if written_from.setdefault(target, item.source) != item.source:
            raise LibraryError(f"{target}: both {written_from[target]} and {item.source} would be written there")
        targets.setdefault(target, (fmt, []))[1].append(index)
    for target in targets:
        for source in sources:
            if _same_file(target, Path(source)):
                raise LibraryError(f"{target}: is an input of the library; write the migrated library elsewhere")
    return targets


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _write(target: Path, data: bytes) -> None:
    """Write one output file whole or not at all, creating its folder (a folder library is mirrored)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, data)
