"""The bottom layer's file helpers: TOML data files read fast, and files and folders written whole or not at all.

:func:`read_toml` parses a TOML file once, then loads it from a marshal cache. Parsing the knowledge files with
tomllib costs more than the rest of a one-prompt `translate-prompt` run, so the parsed data is cached under
``$XDG_CACHE_HOME/prompt-bridge`` (or ``~/.cache/prompt-bridge``), keyed by the file's path, size and modification
time. Each cache file starts with a tag and a CRC of its content, and must hold a table: a cache file that fails any
check (cut short, damaged, or written by something else) is ignored and written again. A cache that cannot be written
or read is simply not used; ``PROMPT_BRIDGE_NO_CACHE=1`` switches it off.

:func:`atomic_write` and :func:`atomic_dir` are the project's one way to write a file or a folder that a reader (or a
rerun after a kill) sees whole or not at all: built under a hidden temporary name beside it, then renamed into place.
:func:`remove_stale_temporaries` removes the temporary files a killed writer left beside a file; :class:`FileSet` says
whether a path names one of a set of files (so that an output never replaces an input); :func:`json_line` writes a
JSON Lines record that UTF-8 can always hold (:func:`surrogate_at` finds what it could not).
"""

from __future__ import annotations

import errno
import marshal
import os
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TextIO

__all__ = [
    "AtomicFile",
    "FileSet",
    "atomic_dir",
    "atomic_write",
    "file_identity",
    "json_line",
    "path_kind",
    "read_toml",
    "remove_stale_temporaries",
    "special_kind",
    "surrogate_at",
]

CACHE_VERSION = "2"
_CACHE_TAG = f"prompt-bridge toml cache {CACHE_VERSION}\n".encode()  # then the CRC-32 of the marshal data, 4 bytes
_SURROGATE = re.compile("[\ud800-\udfff]")
STALE_AFTER = 24 * 3600  # seconds: a temporary file untouched this long is a killed writer's, whatever its PID


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prompt-bridge"


def read_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file (raises OSError / UnicodeDecodeError / TOMLDecodeError, a ValueError, as tomllib would)."""
    path = Path(path)
    stat = path.stat()
    use_cache = os.environ.get("PROMPT_BRIDGE_NO_CACHE") != "1"
    # hashlib and tomllib cost milliseconds to import: the key is a CRC of the path, the file's stem and stamp.
    where = zlib.crc32(f"{CACHE_VERSION}|{path.resolve()}".encode())
    cached = _cache_dir() / f"{path.stem}-{where:08x}-{stat.st_size}-{stat.st_mtime_ns}.marshal"
    if use_cache:
        try:
            data = _from_cache(cached.read_bytes())
        except OSError:
            data = None
        if data is not None:
            return data
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the backport (a dependency there)
        import tomli as tomllib

    data = tomllib.loads(path.read_bytes().decode("utf-8"))
    if use_cache:
        try:
            blob = marshal.dumps(data)
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cached, _CACHE_TAG + zlib.crc32(blob).to_bytes(4, "big") + blob, fsync=False)
        except (OSError, ValueError):
            pass  # unwritable cache or a value marshal cannot hold (a TOML date): parse each time
    return data


def _from_cache(blob: bytes) -> dict | None:
    """The table a cache file holds, or None when it is not one of ours, is damaged, or holds something else (the
    CRC is checked first: marshal is not meant for data it did not write)."""
    start = len(_CACHE_TAG) + 4
    if not blob.startswith(_CACHE_TAG) or zlib.crc32(blob[start:]).to_bytes(4, "big") != blob[start - 4 : start]:
        return None
    try:
        data = marshal.loads(blob[start:])
    except (ValueError, EOFError, TypeError):
        return None
    return data if type(data) is dict else None


def _temporary_name(path: Path) -> Path:
    """A hidden sibling of ``path`` no other process or call picks: ``.NAME.PID-RANDOM.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")


def _missing_folder(path: Path) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, f"folder {path.parent} does not exist", str(path))


def atomic_write(path: str | os.PathLike, data: str | bytes, *, encoding: str = "utf-8", fsync: bool = True) -> None:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` whole or not at all: :class:`AtomicFile` for data
    in hand."""
    with AtomicFile(path, encoding=encoding, fsync=fsync) as file:
        if isinstance(data, str):
            file.write(data)
        else:
            file.buffer.write(data)


class AtomicFile:
    """A file written whole or not at all, piece by piece as the data comes (none of it held in memory).

    The data goes to a temporary file in the same folder (``.NAME.PID-RANDOM.tmp``: hidden, unique to this writer),
    created at once; ``with`` gives it to write to (text, as given: no newline translation). When the block ends it is
    flushed to disk when ``fsync`` is true (so a power cut, not only a kill, leaves the old file or the new one), then
    renamed over ``path`` with os.replace; when the block raises, or anything fails, the temporary file is removed and
    ``path`` is as it was. The folder is not created: a missing one raises FileNotFoundError whose strerror says
    "folder F does not exist". Writers that may race on one path each write their own temporary file; the last rename
    wins.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with AtomicFile(folder / "out.txt") as file:
    ...     _ = file.write("line 1\\n")
    >>> (folder / "out.txt").read_text()
    'line 1\\n'
    """

    def __init__(self, path: str | os.PathLike, *, encoding: str = "utf-8", fsync: bool = True):
        self.path, self.fsync = Path(path), fsync
        self.temporary = _temporary_name(self.path)
        try:
            self.file = open(self.temporary, "x", encoding=encoding, newline="")  # noqa: SIM115 (closed in __exit__)
        except FileNotFoundError:
            if not self.path.parent.is_dir():
                raise _missing_folder(self.path) from None
            raise

    def __enter__(self) -> TextIO:
        return self.file

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.file.flush()
                if self.fsync:
                    os.fsync(self.file.fileno())
            self.file.close()
            if kind is None:
                os.replace(self.temporary, self.path)
                return
        except FileNotFoundError:
            self.temporary.unlink(missing_ok=True)
            if not self.path.parent.is_dir():  # the folder went while the file was written
                raise _missing_folder(self.path) from None
            raise
        except BaseException:
            self.temporary.unlink(missing_ok=True)
            raise
        self.temporary.unlink(missing_ok=True)


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove the temporary files (``.NAME.PID-RANDOM.tmp``) that writers of ``path`` killed before their rename left
    beside it: those whose process is gone (on POSIX), or that nobody has touched for a day. Another writer's file
    in progress is left alone. Call it once before writing a file, not in a loop (it lists the folder)."""
    import glob
    import time

    path = Path(path)
    now = time.time()
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*-*.tmp"):
        pid = stale.name[len(path.name) + 2 :].split("-", 1)[0]
        try:
            old = now - stale.stat().st_mtime > STALE_AFTER
            if (old or (pid.isascii() and pid.isdigit() and not _running(int(pid)))) and stale.is_file():
                stale.unlink()
        except OSError:
            continue  # gone already, or not ours to remove


def _running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (POSIX; elsewhere assumed, so only age makes a file stale)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would end the process on Windows
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process, or a number no process can have
        return False
    except OSError:
        return True  # it exists, run by another user
    return True


def atomic_dir(final: str | os.PathLike, write: Callable[[Path], object], *, fsync: bool = True,
               merge: bool = False) -> Path:
    """Build a folder with ``write(folder)`` under a hidden temporary name beside ``final``, then put it in place of
    ``final`` (replacing an older one): a reader sees the old folder or the new one whole, never a half-written one.

    With ``merge``, what an existing ``final`` holds is kept: the files built are moved into it at the end (each
    replacing the file of the same name), so the slow part, building them, never leaves a half-written ``final``;
    only the moves, renames in one file system, come after it. A ``final`` that does not exist is renamed into place
    whole either way.

    With ``fsync`` every file is flushed to disk before the rename. If ``write`` fails the temporary folder is removed
    and ``final`` is left as it was. The parent folder must exist (FileNotFoundError otherwise, as for
    :func:`atomic_write`). One writer per ``final`` at a time: temporary folders a killed writer left beside ``final``
    (``.NAME.*.tmp``) are removed first. Returns ``final`` as a Path.
    """
    import glob
    import shutil

    final = Path(final)
    if not final.parent.is_dir():
        raise _missing_folder(final)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    temporary = _temporary_name(final)
    temporary.mkdir()
    try:
        write(temporary)
        if fsync:
            for file in temporary.rglob("*"):
                if file.is_file():
                    with file.open("rb") as handle:
                        os.fsync(handle.fileno())
        if not final.exists():
            temporary.rename(final)
            return final
        if merge:
            _move_into(temporary, final)
            shutil.rmtree(temporary, ignore_errors=True)
            return final
        old = _temporary_name(final)  # out of the way first: a folder can be renamed only onto an empty one
        final.rename(old)
        try:
            temporary.rename(final)
        except BaseException:
            old.rename(final)
            raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
    return final


def _move_into(source: Path, target: Path) -> None:
    """Move every file under ``source`` to the same place under ``target``, creating folders as needed."""
    for folder, _, names in os.walk(source):
        into = target / Path(folder).relative_to(source)
        into.mkdir(exist_ok=True)
        for name in names:
            os.replace(os.path.join(folder, name), into / name)


def path_kind(path: str | os.PathLike) -> str:
    """What ``path`` is, from os.stat (so a FIFO is never opened: opening one waits for a writer): "file", "folder",
    "missing", or what else, e.g. "a FIFO (named pipe)", "a socket", "unreadable (Permission denied)"."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    return special_kind(mode)


def special_kind(mode: int) -> str:
    """What a file that is neither a regular file nor a folder is, from its stat mode."""
    import stat

    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def file_identity(stat_result: os.stat_result) -> tuple[int, int]:
    """A file's (device, inode): the same for every path to it (links, hard links, ``..``)."""
    return stat_result.st_dev, stat_result.st_ino


class FileSet:
    """Files that must not be written over, each resolved once, so checking a path costs one realpath and one stat
    (checking thousands of outputs against thousands of inputs stays linear).

    >>> FileSet(["lib.txt"]).holds("./lib.txt")
    True
    """

    def __init__(self, paths: Iterable[str | os.PathLike]):
        paths = list(paths)
        self.real = {os.path.realpath(path) for path in paths}
        self.identities = set()
        for path in paths:
            try:
                self.identities.add(file_identity(os.stat(path)))
            except OSError:
                continue  # not there (yet): its real path is enough

    def holds(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is one of the files: the same path once resolved, or the same file by device and inode."""
        if os.path.realpath(path) in self.real:
            return True
        try:
            return file_identity(os.stat(path)) in self.identities
        except OSError:
            return False


def json_line(value: object) -> str:
    """One JSON Lines record: UTF-8 text as is, but an unpaired surrogate (read from a "\\ud800" escape) written
    back as its escape, the one way JSON can hold it (UTF-8 cannot).

    >>> json_line({"prompt": "café \\ud800"})
    '{"prompt": "café \\\\ud800"}\\n'
    """
    import json

    text = json.dumps(value, ensure_ascii=False)
    return _SURROGATE.sub(lambda found: f"\\u{ord(found[0]):04x}", text) + "\n"


def surrogate_at(text: str) -> int | None:
    """The position of the first unpaired surrogate in `text` (not Unicode text: UTF-8 cannot hold it), else None."""
    found = _SURROGATE.search(text)
    return found.start() if found else None
