"""Reading the project's TOML data files fast: parsed once, then loaded from a marshal cache.

Parsing the knowledge files with tomllib costs more than the rest of a one-prompt `translate-prompt` run, so the
parsed data is cached under ``$XDG_CACHE_HOME/prompt-bridge`` (or ``~/.cache/prompt-bridge``), keyed by the file's
path, size and modification time. A cache that cannot be written or read is simply not used;
``PROMPT_BRIDGE_NO_CACHE=1`` switches it off.
"""

from __future__ import annotations

import marshal
import os
import zlib
from pathlib import Path

CACHE_VERSION = "1"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prompt-bridge"


def read_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file (raises OSError / UnicodeDecodeError / tomllib.TOMLDecodeError like tomllib would)."""
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
    import tomllib

    data = tomllib.loads(path.read_bytes().decode("utf-8"))
    if use_cache:
        try:
            blob = marshal.dumps(data)
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, cached)
        except (OSError, ValueError):
            pass  # unwritable cache or a value marshal cannot hold (a TOML date): parse each time
    return data
