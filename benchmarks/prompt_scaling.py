"""How the time to handle one prompt grows with its length: 1 KB, 10 KB, 100 KB and 1 MB prompts of many shapes.

    python benchmarks/prompt_scaling.py [--sizes 1000,10000,100000,1000000] [--shapes nested,noise] [--paths ...]
    python benchmarks/prompt_scaling.py --big 8000000      # one 8 MB line: seconds and peak memory (own process)

Each shape (nested brackets, one huge word, many commas, BREAK/AND, weights, prose, random printable noise, LoRA tags,
compel's ``+`` signs, ...) goes through each path: ``bridge.load.translate`` (sd15 -> sd2 and sdxl), the dialect
writers and readers, the CLIP token count and A1111's chunks, ``parse`` and ``attention``. For every 10x growth of the
prompt it prints the growth of the time: about 10 is linear, 100 quadratic. A path that takes longer than
``--give-up`` seconds at one size is not run at the larger ones. Nothing asserts: it reports.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROSE = ("a portrait of an old fisherman mending his nets at dawn, soft light through the window, oil painting by a "
         "dutch master. ")


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _nested(size: int, open_: str = "(", close: str = ")", inner: str = "a", text: str = "") -> str:
    depth = max(1, (size - len(inner)) // (len(open_) + len(close) + len(text)))
    return (text + open_) * depth + inner + close * depth


def _noise(size: int) -> str:
    rng = random.Random(17)
    printable = [chr(c) for c in range(32, 127)]
    return "".join(rng.choice(printable) for _ in range(size))


def _random_word(size: int) -> str:
    rng = random.Random(17)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size))


SHAPES: dict[str, Callable[[int], str]] = {
    "nested": lambda n: _nested(n),
    "nested-square": lambda n: _nested(n, "[", "]"),
    "nested-text": lambda n: _nested(n, text="a "),
    "nested-weights": lambda n: _nested(n, close=":1.1)", text="a "),
    "nested-mixed": lambda n: _nested(n, "([", ")]"),
    "unclosed": lambda n: _repeat("(a [b ", n),
    "stray-closers": lambda n: "[" * (n // 2) + ")" * (n // 2),
    "huge-word": lambda n: "a" * n,
    "commas": lambda n: _repeat(", ", n),
    "phrases": lambda n: _repeat("castle on a hill, ", n),
    "breaks": lambda n: _repeat("a castle BREAK ", n),
    "ands": lambda n: _repeat("a castle AND ", n),
    "weights": lambda n: _repeat("(castle:1.2), ", n),
    "editing": lambda n: _repeat("[day:night:0.5] [cat|dog] ", n),
    "prose": lambda n: _repeat(PROSE, n),
    "noise": _noise,
    "loras": lambda n: _repeat("<lora:detail:0.8> ", n),
    "compel-plus": lambda n: "a" + "+" * (n - 1),
    "compel-nested": lambda n: _nested(n, "(", ")+"),
    "compel-calls": lambda n: _repeat('("a", "b").blend(0.5, 0.5) ', n),
    "escapes": lambda n: _repeat("\\(a\\) ", n),
    "whitespace": lambda n: "(a) castle" + " " * (n - 20) + "BREAK x:1",
    "newlines": lambda n: _repeat("a castle,\n\n\t ", n),
    "colons": lambda n: _repeat("a:", n),
    "and-tags": lambda n: _repeat("a AND <lora:x:1> ", n),
    "random-word": _random_word,
    "nested-editing": lambda n: _nested(n, "[a:", ":0.5]"),
    "nested-alternation": lambda n: _nested(n, "[a|", "]"),
    "artists": lambda n: _repeat("by greg rutkowski and alphonse mucha, ", n),
    "artist-list": lambda n: "a castle by greg rutkowski and " + _repeat("someone and ", n - 60) + "alphonse mucha",
    "artists-spaced": lambda n: "(x) by greg rutkowski" + " " * (n // 2) + "and alphonse mucha" + " " * (n // 2),
    "magic-nested": lambda n: _nested(n, inner="masterpiece"),
    "magic-chains": lambda n: _repeat("((((masterpiece)))) ((((8k)))) ", n),
}


def _paths() -> dict[str, Callable[[str], object]]:
    from bridge import dialects
    from bridge.chunks import chunk
    from bridge.load import translate
    from bridge.syntax import attention, parse
    from bridge.tokens import count_tokens

    return {
        "translate-sd2": lambda p: translate(p, source="sd15", target="sd2"),
        "translate-sdxl": lambda p: translate(p, source="sd15", target="sdxl"),
        "to-compel": lambda p: dialects.from_a1111(p, "compel"),
        "to-comfyui": lambda p: dialects.from_a1111(p, "comfyui"),
        "from-compel": lambda p: dialects.to_a1111(p, "compel"),
        "from-comfyui": lambda p: dialects.to_a1111(p, "comfyui"),
        "parse": parse,
        "attention": attention,
        "count_tokens": count_tokens,
        "chunk": chunk,
    }


def timed(function: Callable[[str], object], prompt: str) -> tuple[float, str]:
    """Seconds, and what came back: ok, or the error's type (a clean error is fine; a traceback type is not)."""
    start = time.perf_counter()
    try:
        function(prompt)
        outcome = "ok"
    except (ValueError, LookupError) as exc:  # the clean errors: PromptSyntaxError, EmptyPromptError, ...
        outcome = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - reported, so a run shows every failure at once
        outcome = "!" + type(exc).__name__
    return time.perf_counter() - start, outcome


def big_line(size: int) -> int:
    """One ``size``-character line through translate and the CLIP count in a fresh process: seconds and peak RSS."""
    code = (
        "import resource, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from bridge.load import translate\n"
        "from bridge.tokens import count_tokens\n"
        f"prompt = ({PROSE!r} * ({size} // {len(PROSE)} + 1))[:{size}]\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "start = time.perf_counter()\n"
        "t = translate(prompt)\n"
        "mid = time.perf_counter()\n"
        "count_tokens(prompt)\n"
        "end = time.perf_counter()\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(f'translate {mid - start:.2f} s, count_tokens {end - mid:.2f} s, peak RSS {peak / 1024:.0f} MB '\n"
        "      f'(prompt and interpreter {before / 1024:.0f} MB); warnings: {[w[:90] for w in t.warnings]}')\n"
    )
    print(f"one {size:,}-character line:")
    return subprocess.run([sys.executable, "-c", code], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--paths", default="")
    parser.add_argument("--give-up", type=float, default=20.0, help="seconds at one size before larger ones are skipped")
    parser.add_argument("--big", type=int, default=0, help="time one line of this many characters instead")
    args = parser.parse_args(argv)
    if args.big:
        return big_line(args.big)
    sizes = [int(s) for s in args.sizes.split(",")]
    paths = _paths()
    chosen = args.paths.split(",") if args.paths else list(paths)
    print(f"seconds per prompt at {', '.join(f'{s:,}' for s in sizes)} characters; x: growth per 10x, ~10 is linear")
    for shape in args.shapes.split(","):
        prompts = [SHAPES[shape](size) for size in sizes]
        for name in chosen:
            cells, last = [], None
            for prompt in prompts:
                if last is not None and last[0] > args.give_up:
                    cells.append("skipped")
                    continue
                seconds, outcome = timed(paths[name], prompt)
                growth = f" x{seconds / last[0]:5.1f}" if last and last[0] > 0 else ""
                cells.append(f"{seconds:8.4f}{growth}" + ("" if outcome == "ok" else f" {outcome}"))
                last = (seconds, outcome)
            print(f"{shape:<15}{name:<15}" + " | ".join(cells), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
