"""The bottom layer's file helpers: TOML data files read fast, and files and folders written whole or not at all.

:func:`read_toml` parses a TOML file once, then loads it from a marshal cache. Parsing the knowledge files with
tomllib costs more than the rest of a one-prompt `translate-prompt` run, so the parsed data is cached under
``$XDG_CACHE_HOME/prompt-bridge`` (or ``~/.cache/prompt-bridge``), keyed by the file's path, size and modification
time. A cache that cannot be written or read is simply not used; ``PROMPT_BRIDGE_NO_CACHE=1`` switches it off.

:func:`atomic_write` and :func:`atomic_dir` are the project's one way to write a file or a folder that a reader (or a
rerun after a kill) sees whole or not at all: built under a hidden temporary name beside it, then renamed into place.
"""

from __future__ import annotations

import errno
import marshal
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["atomic_dir", "atomic_write", "read_toml"]

CACHE_VERSION = "1"


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
            return marshal.loads(cached.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            pass
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the backport (a dependency there)
        import tomli as tomllib

    data = tomllib.loads(path.read_bytes().decode("utf-8"))
    if use_cache:
        try:
            blob = marshal.dumps(data)
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cached, blob, fsync=False)
        except (OSError, ValueError):
            pass  # unwritable cache or a value marshal cannot hold (a TOML date): parse each time
    return data


def _temporary_name(path: Path) -> Path:
    """A hidden sibling of ``path`` no other process or call picks: ``.NAME.PID-RANDOM.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")


def _missing_folder(path: Path) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, f"folder {path.parent} does not exist", str(path))


def atomic_write(path: str | os.PathLike, data: str | bytes, *, encoding: str = "utf-8", fsync: bool = True) -> None:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` whole or not at all.

    The data goes to a temporary file in the same folder (``.NAME.PID-RANDOM.tmp``: hidden, unique to this call), is
    flushed to disk when ``fsync`` is true (so a power cut, not only a kill, leaves the old file or the new one), then
    renamed over ``path`` with os.replace. If anything fails the temporary file is removed and ``path`` is as it
    was. The folder is not created: a missing one raises FileNotFoundError whose strerror says "folder F does not
    exist". Writers that may race on one path each write their own temporary file; the last rename wins.
    """
    path = Path(path)
    blob = data.encode(encoding) if isinstance(data, str) else data
    temporary = _temporary_name(path)
    try:
        with open(temporary, "xb") as file:
            file.write(blob)
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise _missing_folder(path) from None
        temporary.unlink(missing_ok=True)
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_dir(final: str | os.PathLike, write: Callable[[Path], object], *, fsync: bool = True) -> Path:
    """Build a folder with ``write(folder)`` under a hidden temporary name beside ``final``, then put it in place of
    ``final`` (replacing an older one): a reader sees the old folder or the new one whole, never a half-written one.

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
