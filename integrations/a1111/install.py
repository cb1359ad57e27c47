"""Run by A1111 at start-up (modules/launch_utils.run_extension_installer: its Python, the webui folder on
PYTHONPATH, so ``launch`` imports). Installs, with ``launch.run_pip``, the optional extras the extension needs from
this clone's ``requirements.txt`` (on Python 3.10 only ``tomli``; the rules bridge needs nothing else) when they are
missing. prompt-bridge itself is not installed: the extension imports it from the clone. No PyPI release exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # links resolved: <clone>/integrations/a1111
MISSING_CORE = (
    "prompt-bridge: the extension cannot find the bridge package; link integrations/a1111 from a prompt-bridge "
    "clone instead of copying it (ln -s /path/to/prompt-bridge/integrations/a1111 "
    "stable-diffusion-webui/extensions/prompt-bridge) and restart"
)


def wanted(requirements: Path, version: tuple[int, int] = sys.version_info[:2]) -> list[tuple[str, str]]:
    """(distribution, requirement) for each line whose ``python_version < "X.Y"`` marker, if any, holds."""
    out = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, _, marker = line.partition(";")
        bound = re.fullmatch(r"\s*python_version\s*<\s*[\"'](\d+)\.(\d+)[\"']\s*", marker) if marker else None
        if marker and not bound:
            continue  # a marker this small reader does not know: leave it to the user
        if bound and version >= (int(bound.group(1)), int(bound.group(2))):
            continue
        name = re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group(0)
        out.append((name, requirement.strip()))
    return out


def main() -> None:
    import launch

    if not (HERE.parent.parent / "bridge" / "__init__.py").is_file():
        print(MISSING_CORE)
        return
    for name, requirement in wanted(HERE / "requirements.txt"):
        if not launch.is_installed(name):
            launch.run_pip(f'install "{requirement}"', f"{requirement} for prompt-bridge")


if __name__ == "__main__":
    main()
