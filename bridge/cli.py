"""translate-prompt: rewrite Stable Diffusion 1.x prompts so they work on SD 2.x.

Kept light on purpose: argparse and the rules bridge only, no torch, so one prompt translates in a blink.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn, TextIO

from bridge.workflows.common import UsageError  # a bad flag value or missing argument: exit 2

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
FORMATS = ("text", "a1111", "json")
DEFAULT_SOURCE, DEFAULT_TARGET = "sd15", "sd2"
DIALECTS = ("a1111", "compel", "comfyui")  # bridge.dialects.DIALECTS, named here so --help costs no import
EMBEDDING_SUFFIXES = (".pt", ".safetensors", ".bin", ".png", ".webp")

EXAMPLES = """\
examples:
  translate-prompt "a castle, by greg rutkowski, <lora:detail:0.6>, 8k"
  translate-prompt --explain --to sd21 "portrait of a knight, ((masterpiece)), trending on artstation"
  cat prompts.txt | translate-prompt --format json > sd2_prompts.jsonl
  translate-prompt --input prompts.txt --output sd2_prompts.txt --keep-networks
  translate-prompt --list-models

formats:
  text   the SD2 prompt, one line per input prompt (with --explain: the whole recipe and every change)
  a1111  A1111 infotext (prompt, Negative prompt, Steps/Sampler/CFG/Size line), blocks separated by a blank line
  json   one JSON object per prompt (JSON Lines): prompt, negative_prompt, width, height, steps, cfg_scale,
         sampler, seed, model, changes [rule, before, after, reason], warnings

exit codes: 0 ok, 1 input/output failure (missing or undecodable file), 2 usage error (bad flag value, unknown
model). Warnings go to stderr.
"""


PROGRESS_MIN = 200  # prompts: below this a progress bar is noise
PARALLEL_MIN = 2000  # prompts: below this, starting worker processes costs more than it saves


class InputError(Exception):
    """A file that cannot be read or written: exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="translate-prompt",
        description="Rewrite Stable Diffusion 1.x prompts so they work on SD 2.x: artist names described, SD1 "
        "magic words dropped, a negative prompt added, the size set for the target, SD1 LoRAs and embeddings "
        "flagged. No model weights needed.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompts", nargs="*", metavar="PROMPT",
                        help="SD1.x prompt(s) to translate; without any, prompts are read from --input or stdin, "
                        "one per line")
    parser.add_argument("-i", "--input", metavar="PATH",
                        help="a prompt library to migrate: a .txt (one prompt per line), .csv/.tsv, .jsonl, "
                        ".parquet, an A1111 styles.csv, PNG files with infotext, or a folder of them")
    parser.add_argument("--column", metavar="NAME",
                        help="the prompt column of a CSV/TSV/JSONL/Parquet library (default: prompt, text, caption)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write results there (written whole at the end, never half). With --input and the "
                        "default format, the library is written back in its own format (a folder mirrors a folder; "
                        "PNGs are migrated copies)")
    parser.add_argument("--report", metavar="FILE",
                        help="write a migration report (.md or .html): counts per rule, every warning, a "
                        "side-by-side diff per prompt")
    parser.add_argument("--from", dest="source", default=None, metavar="MODEL",
                        help="model the prompts were written for (default: sd15; see --list-models)")
    parser.add_argument("--to", dest="target", default=None, metavar="MODEL",
                        help="model to translate for (default: sd2, the 768 v-model; sd2-base, sd21, sd21-base)")
    parser.add_argument("-n", "--negative", default=None, metavar="TEXT",
                        help="the negative prompt you used with these prompts (merged with the SD2 default)")
    parser.add_argument("-f", "--format", default="text", metavar="FORMAT",
                        help="output format: text (default), a1111 or json")
    parser.add_argument("--input-dialect", default="a1111", metavar="DIALECT",
                        help="weighting syntax of the input prompts: a1111 (default), compel or comfyui")
    parser.add_argument("--dialect", default="a1111", metavar="DIALECT",
                        help="weighting syntax to write: a1111 (default), compel or comfyui; the same per-token "
                        "weights in the target's notation, with a warning where a construct has no equivalent")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes for a large library (default: one per CPU core, up to 8, from "
                        f"{PARALLEL_MIN} prompts on; 1 = none)")
    parser.add_argument("--explain", action="store_true", help="show the full recipe and why each change was made")
    parser.add_argument("--diff", action="store_true", help="show what changed in each prompt (coloured on a tty)")
    parser.add_argument("--list-models", action="store_true", help="list the known models and bridges, then exit")
    parser.add_argument("--keep-networks", action="store_true",
                        help="keep SD1 LoRA/hypernetwork tags and embeddings (they will not load on SD2)")
    parser.add_argument("--network-map", metavar="FILE",
                        help="map SD1 networks/embeddings to your SD2 ones: lines of old=new, e.g. detail=detail_sd2")
    parser.add_argument("--embeddings", metavar="DIR",
                        help="your SD1 embeddings folder: file names are recognised as embedding words")
    parser.add_argument("--disable-rule", action="append", default=[], metavar="ID",
                        help="switch a rule off (repeatable; patterns allowed: 'artist.*')")
    parser.add_argument("--knowledge", metavar="FILE", help="your own knowledge file; its rules override ours")
    parser.add_argument("--style-budget", type=_style_budget, metavar="N",
                        help="CLIP tokens the one style phrase for the prompt's artists may take (default: the "
                        "knowledge file's, 10; 0 adds no style); --explain says what was left out")
    parser.add_argument("--registry", metavar="FILE",
                        help="your own registry file (TOML, the layout of bridge/data/models.toml): adds models and "
                        "bridges, or replaces those with the same key/route")
    parser.add_argument("--model", metavar="PATH",
                        help="use a learned bridge (a folder written by training/train.py, or a hub id) instead of "
                        "the embedded rules; it needs the ml extra")
    return parser


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help
            return int(exit_.code or 0)
        return _run(args, stdin, stdout, stderr)
    except UsageError as exc:
        print(f"translate-prompt: error: {exc} (see --help)", file=stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"translate-prompt: error: {exc}", file=stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    from bridge.models import list_bridges, list_models
    from bridge.rules.knowledge import KnowledgeError, KnowledgeFileError

    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}; valid formats: {', '.join(FORMATS)}")
    for flag, value in (("--input-dialect", args.input_dialect), ("--dialect", args.dialect)):
        if value not in DIALECTS:
            raise UsageError(f"unknown {flag} {value!r}; valid dialects: {', '.join(DIALECTS)}")
    if args.report and Path(args.report).suffix.lower() not in (".md", ".html", ".htm"):
        raise UsageError(f"report {args.report!r} must end in .md or .html")
    if args.registry:
        from bridge.models import RegistryError, use_registry

        if not Path(args.registry).is_file():
            raise InputError(f"no such registry file: {args.registry}")
        try:
            use_registry(args.registry)
        except RegistryError as exc:
            raise UsageError(str(exc)) from None
    if args.list_models:
        _print_models(stdout, list_models(), list_bridges())
        return EXIT_OK
    try:
        translator = _load_translator(args)
    except KnowledgeFileError as exc:  # the file cannot be read at all
        raise InputError(str(exc)) from None
    except KnowledgeError as exc:  # it can, but what it says is wrong
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # an unknown model, no such bridge, or not a rules bridge
        raise UsageError(str(exc)) from None
    except OSError as exc:  # a file the loader could not even look at (a name too long, a loop of links)
        raise InputError(f"cannot read {exc.filename}: {exc.strerror}") from None
    options = _options(args)
    check = getattr(translator, "check_disable", None) or getattr(getattr(translator, "kb", None), "check_disable",
                                                                   None)
    if check is not None:
        try:
            check(options.disable)
        except KnowledgeError as exc:
            raise UsageError(str(exc)) from None

    items, recipes = _read_input(args, stdin)
    from bridge.migration import MigrationRow, progress, translate_all

    color = args.diff and _is_tty(stdout) and not args.output
    blocks: list[str] = []
    rows: list[MigrationRow] = []
    results = []
    recipes = [_from_dialect(recipe, args.input_dialect, stderr) for recipe in recipes]
    translated = translate_all(translator, recipes, options, _jobs(args, translator, len(recipes)))
    for i, (recipe, translation) in enumerate(progress(zip(recipes, translated), len(recipes), stream=stderr,
                                                       min_total=PROGRESS_MIN)):
        key = items[i].key if items else f"prompt {i + 1}"
        if translation is None:
            if items is None:
                raise UsageError("empty prompt: give the SD1.x prompt to translate, e.g. 'a castle on a hill, 8k'")
            # A library row with no prompt is passed through as it was: never dropped.
            print(f"warning: {key}: empty prompt, kept as it was", file=stderr)
            rows.append(MigrationRow(key, recipe.prompt, recipe.negative_prompt, None, "empty prompt"))
            results.append(recipe)
            continue
        translation = _to_dialect(translation, args.dialect)
        for warning in translation.warnings:
            print(f"warning: {key}: {warning}" if items else f"warning: {warning}", file=stderr)
        rows.append(MigrationRow(key, recipe.prompt, recipe.negative_prompt, translation))
        results.append(translation.recipe)
        blocks.append(_format(translation, args, color, key if items else None))

    if args.output and items is not None and args.format == "text":
        from bridge.library import LibraryError, write_library

        try:
            write_library(items, results, args.output)
        except LibraryError as exc:
            raise InputError(str(exc)) from None
    elif args.output:
        _write_output(Path(args.output), "".join(blocks))
    else:
        stdout.write("".join(blocks))
    if args.report:
        from bridge.migration import write_report

        try:
            write_report(args.report, rows, source=translator.source, target=translator.target)
        except OSError as exc:
            raise InputError(f"cannot write report {args.report}: {exc.strerror}") from None
    return EXIT_OK


def _jobs(args: argparse.Namespace, translator, count: int) -> int:
    """Worker processes for a large library on the rules bridge (a learned bridge batches on its device instead)."""
    if args.jobs is not None:
        return max(1, args.jobs)
    from bridge.rules import RulesTranslator

    if count < PARALLEL_MIN or not isinstance(translator, RulesTranslator) or sys.platform == "win32":
        return 1
    return min(os.cpu_count() or 1, 8)


def _from_dialect(recipe, dialect: str, stderr: TextIO):
    """Input prompts in compel or ComfyUI syntax become A1111 syntax, the bridge's own."""
    if dialect == "a1111":
        return recipe
    from bridge.dialects import to_a1111

    prompt, negative = to_a1111(recipe.prompt, dialect), to_a1111(recipe.negative_prompt, dialect)
    for warning in dict.fromkeys(prompt.warnings + negative.warnings):
        print(f"warning: reading {dialect}: {warning}", file=stderr)
    return recipe.replace(prompt=prompt.text, negative_prompt=negative.text)


def _to_dialect(translation, dialect: str):
    """The translated prompts written in the requested front end's syntax."""
    if dialect == "a1111":
        return translation
    from dataclasses import replace

    from bridge.dialects import from_a1111

    prompt, negative = from_a1111(translation.prompt, dialect), from_a1111(translation.negative_prompt, dialect)
    warnings = [*translation.warnings, *(f"writing {dialect}: {w}" for w in
                                         dict.fromkeys(prompt.warnings + negative.warnings))]
    recipe = translation.recipe.replace(prompt=prompt.text, negative_prompt=negative.text)
    return replace(translation, recipe=recipe, warnings=warnings)


def _load_translator(args: argparse.Namespace):
    from bridge.load import load_translator
    from bridge.models import get_model

    if args.model:
        from bridge.models import is_hub_id

        if not Path(args.model).exists() and not is_hub_id(args.model):
            raise InputError(f"no learned bridge at {args.model!r}: give a folder written by training/train.py "
                             "or a hub id such as user/sd15-to-sd2")
        for flag, given in (("--knowledge", args.knowledge), ("--style-budget", args.style_budget)):
            if given is not None:
                raise UsageError(f"{flag} applies to the rules bridge, not to a learned one (--model)")
        try:
            translator = load_translator(args.model)
        except (OSError, ImportError) as exc:
            raise InputError(f"cannot load the learned bridge {args.model!r}: {exc}") from None
        for flag, asked, actual in (("--from", args.source, translator.source), ("--to", args.target,
                                                                                 translator.target)):
            if asked is not None and get_model(asked).key != actual:
                raise UsageError(f"{flag} {asked} does not match the learned bridge {args.model!r}, which translates "
                                 f"{translator.source} -> {translator.target}")
        return translator
    return load_translator("rules", source=args.source or DEFAULT_SOURCE, target=args.target or DEFAULT_TARGET,
                           knowledge=args.knowledge)


def _options(args: argparse.Namespace):
    from bridge.translation import TranslationOptions

    return TranslationOptions(
        networks="keep" if args.keep_networks else "remove",
        network_map=_read_network_map(args.network_map) if args.network_map else {},
        embeddings=_read_embeddings(args.embeddings) if args.embeddings else (),
        disable=tuple(args.disable_rule),
        knowledge=args.knowledge,
        style_budget=args.style_budget,
    )


def _style_budget(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: give a whole number of CLIP tokens, 0 or more "
                                         "(e.g. --style-budget 10)")
    return value


def _read_text(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    return _decode(data, path)


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         "save it as UTF-8") from None


def _read_input(args: argparse.Namespace, stdin: TextIO) -> tuple[list | None, list]:
    """The recipes to translate, and the library items they came from (None for prompts given inline or on stdin)."""
    from bridge.recipe import Recipe

    negative = args.negative or ""
    if args.prompts and args.input:
        raise UsageError("give prompts as arguments or with --input, not both")
    if args.prompts:
        for prompt in args.prompts:
            if not prompt.strip():
                raise UsageError("empty prompt: give the SD1.x prompt to translate, e.g. 'a castle on a hill, 8k'")
        return None, [Recipe(prompt=p, negative_prompt=negative) for p in args.prompts]
    if args.input:
        from bridge.library import LibraryError, read_library

        if not Path(args.input).exists():
            raise InputError(f"no such file or folder: {args.input}")
        try:
            items = read_library(args.input, column=args.column)
        except LibraryError as exc:
            raise InputError(str(exc)) from None
        if not items:
            raise UsageError(f"no prompts in {args.input}: it is empty or only blank lines")
        if negative:
            for item in items:
                if not item.recipe.negative_prompt:
                    item.recipe = item.recipe.replace(negative_prompt=negative)
        return items, [item.recipe for item in items]
    if _is_tty(stdin):
        raise UsageError("no prompt given: pass one as an argument, use --input FILE, or pipe prompts on stdin")
    buffer = getattr(stdin, "buffer", None)
    text = _decode(buffer.read(), "stdin") if buffer is not None else stdin.read()
    prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UsageError("no prompts in stdin: it is empty or only blank lines")
    return None, [Recipe(prompt=p, negative_prompt=negative) for p in prompts]


def _read_network_map(path: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        old, sep, new = (part.strip() for part in line.partition("="))
        if not sep or not old or not new:
            raise UsageError(f"{path} line {number}: {line!r} is not old=new (e.g. detail=detail_sd2 or "
                             "lora:detail=lora:detail_sd2)")
        mapping[old] = new
    return mapping


def _read_embeddings(folder: str) -> tuple[str, ...]:
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"embeddings folder not found: {folder}")
    return tuple(sorted({p.stem for p in path.rglob("*") if p.suffix.lower() in EMBEDDING_SUFFIXES}))


def _write_output(path: Path, text: str) -> None:
    from bridge.datafiles import atomic_write

    try:
        atomic_write(path, text)
    except OSError as exc:  # a missing folder: "folder F does not exist"
        raise InputError(f"cannot write {path}: {exc.strerror}") from None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------------------------------
# Output


def _format(translation, args: argparse.Namespace, color: bool, key: str | None = None) -> str:
    if args.format == "json":
        row = translation.to_dict()
        if key is not None:
            row = {"key": key, **row}
        return json.dumps(row, ensure_ascii=False) + "\n"
    parts: list[str] = []
    if args.format == "a1111":
        parts.append(translation.to_infotext() + "\n\n")
    elif args.explain:
        parts.append(_explained(translation))
    else:
        parts.append(translation.prompt + "\n")
    if args.diff:
        original = translation.original.prompt if translation.original else ""
        parts.append(_diff(original, translation.prompt, color))
        if translation.original and translation.original.negative_prompt != translation.negative_prompt:
            parts.append(_diff(translation.original.negative_prompt, translation.negative_prompt, color,
                               label="negative: "))
    if args.explain and args.format == "a1111":
        parts.append(_changes_text(translation))
    return "".join(parts)


def _explained(translation) -> str:
    r = translation.recipe
    lines = [
        f"Prompt ({translation.target}): {r.prompt}",
        f"Negative prompt: {r.negative_prompt}",
        (f"Size: {r.width}x{r.height}, Steps: {r.steps}, CFG scale: {r.cfg_scale:g}, Sampler: {r.sampler}, "
         f"Model: {r.model}"),
    ]
    return "\n".join(lines) + "\n" + _changes_text(translation)


def _changes_text(translation) -> str:
    if not translation.changes:
        return "Changes: none (the prompt already suits the target)\n\n"
    lines = [*(f"Note: {n}" for n in translation.notes), f"Changes ({translation.source} -> {translation.target}):"]
    for change in translation.changes:
        after = repr(change.after) if change.after else "(removed)"
        hop = f"[{change.hop}] " if change.hop else ""
        lines.append(f"  - {hop}{change.rule}: {change.before!r} -> {after}")
        lines.append(f"      why: {change.reason}" + (f" [{change.fact}]" if change.fact else ""))
    return "\n".join(lines) + "\n\n"


def _diff(before: str, after: str, color: bool, label: str = "") -> str:
    """Word-level diff: [-removed-] {+added+}, or red/green on a terminal."""
    from bridge.migration import word_diff

    out = []
    for op, text in word_diff(before, after):
        if op == "=":
            out.append(text)
        elif op == "-":
            out.append(f"\x1b[31m{text}\x1b[0m" if color else f"[-{text}-]")
        else:
            out.append(f"\x1b[32m{text}\x1b[0m" if color else f"{{+{text}+}}")
    return label + "".join(out) + "\n"


def _print_models(stdout: TextIO, models, bridges) -> None:
    stdout.write(f"{'key':<10} {'native':>7}  {'prediction':<13} {'text encoder':<40} name\n")
    stdout.writelines(f"{m.key:<10} {m.native_size:>7}  {m.prediction_type:<13} {m.text_encoder:<40} {m.name}\n" for m in models)
    stdout.write("\nbridges (--from -> --to):\n")
    stdout.writelines(f"  {b.source} -> {b.target}  ({b.kind})\n" for b in bridges)


if __name__ == "__main__":
    sys.exit(main())
