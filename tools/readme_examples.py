"""Refresh the outputs of the README's console examples (run after changing rules; the tests check they match).

    python tools/readme_examples.py          # rewrite README.md in place
    python tools/readme_examples.py --check  # exit 1 when an output differs

A console example is a fenced ```console block: lines starting with "$ translate-prompt" are commands, the lines
after each command (up to the next command or the end of the block) are its standard output.
"""

from __future__ import annotations

import io
import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)


def run_command(command: str, stdin_text: str = "") -> str:
    from bridge.cli import main

    argv = shlex.split(command)
    assert argv[0] == "translate-prompt", command
    out = io.StringIO()
    main(argv[1:], stdin=io.StringIO(stdin_text), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def examples(text: str) -> list[tuple[str, str, str]]:
    """(command, stdin, documented output) for every console example; `printf '...' | translate-prompt` feeds stdin."""
    found = []
    for block in BLOCK.findall(text):
        lines = block.splitlines(keepends=True)
        i = 0
        while i < len(lines):
            line = lines[i]
            if not line.startswith("$ "):
                i += 1
                continue
            command, stdin_text = line[2:].strip(), ""
            piped = re.fullmatch(r"printf '(.*)' \| (translate-prompt.*)", command)
            if piped:
                stdin_text = piped.group(1).encode().decode("unicode_escape")
                command = piped.group(2)
            j = i + 1
            while j < len(lines) and not lines[j].startswith("$ "):
                j += 1
            found.append((command, stdin_text, "".join(lines[i + 1 : j])))
            i = j
    return found


def refresh(text: str) -> str:
    def redo(match: re.Match) -> str:
        block = match.group(1)
        out = []
        for command, stdin_text, _ in examples(f"```console\n{block}```"):
            shown = command if not stdin_text else f"printf '{stdin_text.encode('unicode_escape').decode()}' | {command}"
            out.append(f"$ {shown}\n{run_command(command, stdin_text)}")
        return "```console\n" + "".join(out).rstrip("\n") + "\n```"

    return BLOCK.sub(redo, text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = README.read_text(encoding="utf-8")
    new = refresh(text)
    if "--check" in argv:
        return 0 if new == text else 1
    from bridge.datafiles import atomic_write

    atomic_write(README, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
