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

- text (.txt): one prompt per line. Blank lines are skipped (they are not prompts); `line` is the line in the file,
  and writing puts each prompt back on its line (the blank lines between kept).
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
not UTF-8 and PNGs without "parameters" raise `LibraryError` naming the file and the line (or byte offset). In a
folder, `on_error` can take each file's error instead, so the other files are still read; links that leave the folder,
link loops and files that are not regular files are skipped with a warning (`on_warning`, else `LibraryWarning`).

Limits (each a `LibraryError` naming the file or row): a PNG's "parameters" text may hold at most `PNG_TEXT_LIMIT`
(1 MiB) once decompressed, as Pillow limits each text chunk (it is inflated in steps and never past the limit; other
text chunks are copied as stored, never inflated); a width or height that is a number must be a whole number of
pixels from 1 to `MAX_SIZE` (16384); a JSON row nested deeper than Python can read is an error for that row.

Writes are atomic (:func:`bridge.datafiles.atomic_write`), and never replace a file the library was read from. A folder
is built under a hidden temporary name beside `out` and renamed into place at the end; into a folder that exists, the
files built are moved in at the end (:func:`bridge.datafiles.atomic_dir` with merge).

This module reads and writes libraries (files, folders, where each item goes); :mod:`bridge.library.formats` holds
the items and each format's reader and writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.datafiles import (
    FileSet,
    atomic_dir,
    atomic_write,
    file_identity,
    path_kind,
    remove_stale_temporaries,
    special_kind,
)
from bridge.library.formats import (
    FORMAT_SUFFIX,
    FORMATS,
    MAX_SIZE,
    PNG_TEXT_LIMIT,
    READERS,
    SUFFIX_FORMATS,
    SUPPORTED_SUFFIXES,
    LibraryError,
    LibraryItem,
    Source,
    detect_format,
    file_bytes,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from bridge.recipe import Recipe

__all__ = [
    "FORMATS",
    "MAX_SIZE",
    "PNG_TEXT_LIMIT",
    "SUPPORTED_SUFFIXES",
    "LibraryError",
    "LibraryItem",
    "LibraryWarning",
    "detect_format",
    "read_library",
    "write_library",
]


class LibraryWarning(UserWarning):
    """Something in a library folder that was skipped on purpose (a link leaving the folder, a link loop, a FIFO)."""


def read_library(
    path: str | os.PathLike[str],
    *,
    column: str | None = None,
    negative_column: str | None = None,
    format: str | None = None,
    follow_symlinks: bool = False,
    on_error: Callable[[LibraryError], object] | None = None,
    on_warning: Callable[[str], object] | None = None,
) -> list[LibraryItem]:
    """Read the prompts of a file, or of every supported file in a folder (recursively, sorted by path; hidden files
    and folders are skipped, so are files of other types). Items come in file order, then row order.

    `column` and `negative_column` choose the prompt columns of csv, tsv, jsonl and parquet files; `format` (one of
    FORMATS) overrides the suffix, for every file when `path` is a folder.

    In a folder, links are followed only where they stay inside it (a linked folder is not walked: its files are read
    where they are); with `follow_symlinks` every link is followed and linked folders are walked, each real folder
    once, so a loop ends. A file or subfolder that cannot be read raises LibraryError, or, with `on_error`, is passed
    to it and skipped. What is skipped on purpose (links leaving the folder, loops, broken links, FIFOs, sockets and
    devices) is passed to `on_warning` (by default warned about as a LibraryWarning).
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise LibraryError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    kind = path_kind(path)
    if kind == "folder":
        warn = on_warning or _warn
        files = _library_files(path, format, follow_symlinks, on_error, warn)
        sources = [Source(path / relative, relative, str(path)) for relative in files]
    elif kind == "file":
        sources = [Source(path, path.name, None)]
        on_error = None  # a file given on its own: its error is the answer
    elif kind == "missing":
        raise LibraryError(f"{path}: no such file or folder")
    elif kind.startswith("unreadable"):
        raise LibraryError(f"{path}: {kind}")
    else:
        raise LibraryError(f"{path}: {kind}, not a file or folder; give a regular file or a folder")
    items: list[LibraryItem] = []
    for source in sources:
        try:
            fmt = format or detect_format(source.path)
            items += READERS[fmt](source, column, negative_column)
        except LibraryError as error:
            if on_error is None:
                raise
            on_error(error)
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
    A new folder appears whole at the end (built beside it under a hidden name, then renamed); into an existing
    folder the files are built beside it first, then moved in. A file that cannot be written raises OSError.
    """
    if len(items) != len(recipes):
        raise LibraryError(f"got {len(items)} library items but {len(recipes)} recipes; pass one recipe per item")
    if format is not None and format not in FORMATS:
        raise LibraryError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    out = Path(out)
    targets, to_folder = _plan_targets(items, out, format)
    groups = [(target, fmt, [(items[i], recipes[i]) for i in indices]) for target, (fmt, indices) in targets.items()]
    if not to_folder:
        [(target, fmt, group)] = groups
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        atomic_write(target, file_bytes(fmt, group))
        return [target]

    def write(folder: Path) -> None:
        for target, fmt, group in groups:
            path = folder / target.relative_to(out)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(file_bytes(fmt, group))

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_dir(out, write, merge=True)
    return [target for target, _, _ in groups]


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, LibraryWarning, stacklevel=3)


# Reading: the files of a folder.


def _library_files(folder: Path, format: str | None, follow_symlinks: bool,
                   on_error: Callable[[LibraryError], object] | None, warn: Callable[[str], object]) -> list[str]:
    """The library files under `folder`, as paths relative to it ("a/b.png"), sorted as paths (part by part).

    One stat per entry (os.scandir), one realpath per link: linear in the folder's size."""
    import stat

    root = os.path.realpath(folder)
    inside = root.rstrip(os.sep) + os.sep
    walked = {file_identity(os.stat(folder))}  # real folders walked, by (device, inode): each once
    files: list[str] = []
    unsupported: list[str] = []

    def walk(directory: str, prefix: str) -> None:
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)  # warnings in a stable order
        except OSError as error:
            problem = LibraryError(f"{directory}: cannot read this folder: {error.strerror}; its files were not read")
            if on_error is None:
                raise problem from None
            on_error(problem)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            try:
                mode = entry.stat(follow_symlinks=True).st_mode
            except OSError as error:
                if entry.is_symlink():
                    warn(f"{entry.path}: skipped, a broken link or a link loop ({error.strerror})")
                else:
                    _problem(on_error, LibraryError(f"{entry.path}: cannot read: {error.strerror}"))
                continue
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not follow_symlinks and not (real + os.sep).startswith(inside):
                    warn(f"{entry.path}: skipped, a link to {real}, outside the folder read "
                         "(--follow-symlinks reads it)")
                    continue
                if stat.S_ISDIR(mode) and not follow_symlinks:
                    continue  # a linked folder inside the folder: its files are read where they are
            if stat.S_ISDIR(mode):
                identity = file_identity(entry.stat(follow_symlinks=True))
                if identity in walked:
                    warn(f"{entry.path}: skipped, a link loop or a folder already read through another path")
                    continue
                walked.add(identity)
                walk(entry.path, relative + "/")
            elif not stat.S_ISREG(mode):
                if format is not None or Path(entry.name).suffix.lower() in SUFFIX_FORMATS:
                    warn(f"{entry.path}: skipped, {special_kind(mode)}, not a regular file")
            elif format is None and Path(entry.name).suffix.lower() not in SUFFIX_FORMATS:
                unsupported.append(relative)
            else:
                files.append(relative)

    walk(str(folder), "")
    if not files:
        found = f"found only {', '.join(unsupported)}" if unsupported else "it has no files"
        raise LibraryError(f"{folder}: no prompt files ({', '.join(SUPPORTED_SUFFIXES)}); {found}")
    return sorted(files, key=lambda relative: relative.split("/"))


def _problem(on_error: Callable[[LibraryError], object] | None, problem: LibraryError) -> None:
    if on_error is None:
        raise problem
    on_error(problem)


# Writing: where each item goes.


def _relative_target(item: LibraryItem) -> Path:
    """Where under the output folder `item` goes: its path relative to the folder read (its file name when read on
    its own). An item whose source would lead out of the folder (``../``, an absolute path, a source outside its
    root: possible only through the API) is a LibraryError, so nothing is written outside `out`."""
    source = Path(item.source)
    if item.root is None:
        relative = Path(source.name)
    else:
        parts = source.parts
        root = Path(item.root).parts
        relative = Path(*parts[len(root):]) if parts[: len(root)] == root else Path(os.sep)
    if relative.is_absolute() or relative.anchor or ".." in relative.parts or relative.name in ("", "."):
        raise LibraryError(f"{item.source}: this item's path leads out of the output folder (root "
                           f"{item.root!r}); a LibraryItem's source must be a file inside its root, without '..'")
    return relative


def _plan_targets(
    items: Sequence[LibraryItem], out: Path, format: str | None
) -> tuple[dict[Path, tuple[str, list[int]]], bool]:
    """Each output file with its format and the indices of the items written to it, checked before anything is
    written: formats possible, no two sources on one file, no input overwritten, no folder in a file's place. Also
    whether `out` is a folder.

    Linear in the number of items: each source and each target is resolved once (inputs kept in a set)."""
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
            target = out / _relative_target(item)
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
    inputs = FileSet(sources)
    for target in targets:
        if inputs.holds(target):
            raise LibraryError(f"{target}: is an input of the library; write the migrated library elsewhere")
        if target.is_dir():
            raise LibraryError(f"{target}: is a folder; the migrated file cannot be written there")
    folders: set[Path] = set()  # every folder the files go into, up to `out`, each checked once
    for target in targets:
        folder = target.parent
        while folder not in folders and folder != out.parent:
            folders.add(folder)
            if folder.exists() and not folder.is_dir():
                raise LibraryError(f"{folder}: is a file, but migrated files go into it; move it or write elsewhere")
            folder = folder.parent
    return targets, to_folder
