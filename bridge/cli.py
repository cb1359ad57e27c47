"""translate-prompt: rewrite Stable Diffusion 1.x prompts so they work on SD 2.x.

Kept light on purpose: argparse and the rules bridge only, no torch, so one prompt translates in a blink.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from bridge.cli_output import (
    InputError,
    Output,
    UnreadablePrompt,
    from_dialect,
    stdin_lines,
    to_dialect,
    unpaired_surrogate,
    with_embeddings,
)
from bridge.workflows.common import UsageError  # a bad flag value or missing argument: exit 2

if TYPE_CHECKING:
    from bridge.datafiles import AtomicFile

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
  tail -f queue.txt | translate-prompt - --quiet     (each line answered as soon as it is read)
  translate-prompt --input library.csv --format json --warnings-summary > sd2.jsonl
  translate-prompt --input prompts.txt --output sd2_prompts.txt --keep-networks
  translate-prompt --list-models
  translate-prompt --to sd21 --search 8 --search-report runs/search "a castle, by greg rutkowski, 8k"   (a GPU)

formats:
  text   the SD2 prompt, one line per input prompt (with --explain: the whole recipe and every change)
  a1111  A1111 infotext (prompt, Negative prompt, Steps/Sampler/CFG/Size line), blocks separated by a blank line
  json   one JSON object per prompt (JSON Lines): key (library item) and/or line (1-based, stdin and files),
         source_prompt (the input), prompt, negative_prompt, width, height, steps, cfg_scale, sampler, seed,
         model, changes [rule, before, after, reason, fact], warnings, notes. --explain adds nothing (every record
         already carries its changes and reasons); --diff adds "diff", the word diff marked [-removed-] {+added+}

stdin: with no PROMPT and no --input, or with '-' / '--input -', prompts are read one per line and each answer is
written (and flushed) before the next line is read. A blank line gives a blank output line (a record with an
empty prompt in json): line N of the output answers line N of the input. Empty stdin: no output, exit 0.

warnings go to stderr (-q silences them; they stay in json records). --warnings-summary counts them at the end
by kind: "rule ID" when the warning names its rule, else its words with names, quotes and numbers masked.

hostile input and limits:
  folders  links that leave the --input folder are skipped with a warning (--follow-symlinks reads them; linked
           folders are then walked, each once, so a link loop ends); FIFOs, sockets and devices are skipped, and
           refused as --input. A file or subfolder that cannot be read is an error line: the rest still migrates,
           and the exit code is 1.
  PNG      the "parameters" text may hold 1 MiB once decompressed (Pillow's limit per text chunk); past it, or for
           a compressed bomb, that PNG is an error line naming the limit (it is inflated in steps, never past it).
  length   a prompt (or negative prompt) over 100,000 characters is passed through unchanged with a warning.
  sizes    a width or height given as a number must be a whole number of pixels from 1 to 16384, else that row's
           file is an error naming the row; text such as "auto" is kept and gives no size.
  text     an unpaired surrogate (an argument's bytes that are not UTF-8, a \\ud800 escape in JSON) is not text:
           that prompt is an error line naming it, and a library row holding one is written back as it was.
  diffs    --diff and --report diff word by word, exactly, while difflib's worst case stays under 25 million steps
           (every prompt of ordinary length); past it the common start and end are kept and the middle is diffed
           by words or phrases when that is cheap, else marked removed and added whole.
  output   --output or --report naming an input, or both naming one file, is a usage error. Output that cannot be
           written (stdout closed, a closed pipe, a full disk, an encoding without the characters) is one error line.

exit codes: 0 ok, 1 input/output failure (a missing or undecodable file, a file of the library that could not be
read, output that could not be written), 2 usage error (bad flag value, unknown model, bad --color).
"""


PROGRESS_MIN = 200  # prompts: below this a progress bar is noise
PARALLEL_MIN = 2000  # prompts: below this, starting worker processes costs more than it saves
MAX_JOBS = 256  # worker processes: --jobs past this is a usage error, not a fork bomb
# Options that name something: given empty (--to "", --input "$UNSET") they are a usage error, never the default
# (--negative "" is allowed: no negative prompt). flag -> (argparse dest, what to give)
_NAMING_OPTIONS = {
    "--input": ("input", "a prompt library file or folder, or '-' for stdin"),
    "--output": ("output", "the file or folder to write"),
    "--report": ("report", "a .md or .html file"),
    "--from": ("source", "a model such as sd15; --list-models lists them"),
    "--to": ("target", "a model such as sd2; --list-models lists them"),
    "--column": ("column", "the prompt column's name, e.g. caption"),
    "--network-map": ("network_map", "a file of old=new lines"),
    "--embeddings": ("embeddings", "your SD1 embeddings folder"),
    "--knowledge": ("knowledge", "a knowledge .toml file"),
    "--registry": ("registry", "a registry .toml file"),
    "--model": ("model", "a learned bridge folder or a hub id"),
    "--disable-rule": ("disable_rule", "a rule id such as magic.artstation, or a pattern such as 'artist.*'"),
}


class _Parser(argparse.ArgumentParser):
    target_action: argparse.Action | None = None

    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(message)

    def format_help(self) -> str:  # --to lists the registry's targets, read only when help is asked for
        if self.target_action is not None:
            from bridge.cli_output import target_keys

            self.target_action.help = (f"model to translate for (default: {DEFAULT_TARGET}): "
                                       f"{', '.join(target_keys())} (the model registry; --list-models)")
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="translate-prompt",
        description="Rewrite Stable Diffusion 1.x prompts so they work on SD 2.x: artist names described, SD1 "
        "magic words dropped, a negative prompt added, the size set for the target, SD1 LoRAs and embeddings "
        "flagged. No model weights needed.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,  # -h is ours, so that help goes to main's stdout
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    parser.add_argument("prompts", nargs="*", metavar="PROMPT",
                        help="SD1.x prompt(s) to translate; '-' or none: read stdin, one prompt per line")
    parser.add_argument("--version", action="store_true", help="print translate-prompt's version and exit")
    parser.add_argument("-i", "--input", metavar="PATH",
                        help="a prompt library to migrate: a .txt (one prompt per line), .csv/.tsv, .jsonl, "
                        ".parquet, an A1111 styles.csv, PNG files with infotext, or a folder of them; '-': stdin")
    parser.add_argument("--follow-symlinks", action="store_true",
                        help="in an --input folder, also read links that lead outside it, and walk linked folders "
                        "(each folder once)")
    parser.add_argument("--column", metavar="NAME",
                        help="the prompt column of a CSV/TSV/JSONL/Parquet library (default: prompt, text, caption)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write results there, at the end: a file whole (written beside it under a hidden name, "
                        "then renamed). With --input and the default format, the library is written back in its own "
                        "format (a folder mirrors a folder; PNGs are migrated copies): a new folder appears whole at "
                        "the end; into an existing folder the files are built beside it, then moved in")
    parser.add_argument("--report", metavar="FILE",
                        help="write a migration report (.md or .html): counts per rule, every warning, a "
                        "side-by-side diff per prompt")
    parser.add_argument("--from", dest="source", default=None, metavar="MODEL",
                        help="model the prompts were written for (default: sd15; see --list-models)")
    parser.target_action = parser.add_argument("--to", dest="target", default=None, metavar="MODEL",
                                               help="model to translate for (default: sd2; see --list-models)")
    parser.add_argument("-n", "--negative", default=None, metavar="TEXT",
                        help="the negative prompt you used with these prompts (merged with the SD2 default)")
    parser.add_argument("-f", "--format", default="text", metavar="FORMAT",
                        help="output format: text (default), a1111 or json")
    parser.add_argument("--input-dialect", default="a1111", metavar="DIALECT",
                        help="weighting syntax of the input prompts: a1111 (default), compel or comfyui")
    parser.add_argument("--dialect", default="a1111", metavar="DIALECT",
                        help="weighting syntax to write: a1111 (default), compel or comfyui; the same per-token "
                        "weights in the target's notation, with a warning where a construct has no equivalent")
    parser.add_argument("--jobs", type=_jobs_count, default=None, metavar="N",
                        help="worker processes for a large library (default: one per CPU core, up to 8, from "
                        f"{PARALLEL_MIN} prompts on; 1 = none; at most {MAX_JOBS})")
    parser.add_argument("--explain", action="store_true", help="show the full recipe and why each change was made")
    parser.add_argument("--diff", action="store_true", help="show what changed in each prompt (coloured: --color)")
    parser.add_argument("--color", default="auto", metavar="WHEN",
                        help="colour the --diff: auto (default: on a terminal, off with NO_COLOR or TERM=dumb, on "
                        "with FORCE_COLOR), always or never; it wins over the environment")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no warnings or progress bar on stderr (they stay in json records); errors are still shown")
    parser.add_argument("--warnings-summary", action="store_true",
                        help="at the end, count the warnings by kind on stderr (kinds: see below)")
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
    parser.add_argument("--trust-pickle", action="store_true",
                        help="let a learned bridge (--model) load pickled weights (pytorch_model.bin), which can run "
                        "code as they load; by default only safetensors are read")
    parser.add_argument("--backend", default="auto", choices=("auto", "ct2", "hf"),
                        help="how a learned bridge (--model) runs: ct2 (its CTranslate2 copy, the fast extra: no "
                        "torch), hf (transformers, the ml extra), auto (default): ct2 when the folder holds its copy "
                        "and the fast extra is installed")
    search = parser.add_argument_group(
        "translate by search (a GPU and the target weights; the ml extra)",
        "--search N renders N candidate translations of each prompt on the target model (the prompt unchanged\n"
        "is always one; the others are the rules bridge's variants and, with --model, the learned bridge's\n"
        "samples), scores each image against the source prompt and keeps the best. Renders are cached on disk.")
    search.add_argument("--search", type=_search_count, metavar="N", help="candidates per prompt (1 or more)")
    search.add_argument("--search-seeds", type=_seed, nargs="+", metavar="S",
                        help="seeds each candidate is rendered with (default: 0 1); renders = N x seeds")
    search.add_argument("--target-weights", metavar="PATH_OR_ID",
                        help="the target model's weights: a hub id, a diffusers folder or a .safetensors file "
                        "(default: the registry's hub id for --to)")
    search.add_argument("--source-weights", metavar="PATH_OR_ID",
                        help="also render the prompt with the SD1 model and score each candidate against that image")
    search.add_argument("--cache-dir", metavar="DIR",
                        help="where renders are cached (default: $XDG_CACHE_HOME/prompt-bridge, 2 GiB at most)")
    search.add_argument("--search-report", metavar="DIR",
                        help="write each prompt's candidates, images and scores as HTML: DIR/1/index.html, DIR/2/...")
    search.add_argument("--device", metavar="DEV",
                        help="render on this torch device (cuda, mps, cpu); with no GPU, 'cpu' renders anyway "
                        "(minutes per image)")
    search.add_argument("--tiny", action="store_true",
                        help="search on tiny random models on the CPU in seconds: a smoke test, its choice means "
                        "nothing")
    return parser


_SEARCH_ONLY = ("search_seeds", "target_weights", "source_weights", "cache_dir", "search_report", "device", "tiny")


def _whole_number(minimum: int, error: str) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``, else ``error`` with ``{text}`` (the value quoted)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(error.format(text=repr(text)))
        return value

    return parse


_search_count = _whole_number(1, "--search needs a whole number of candidates >= 1, not {text}")
_seed = _whole_number(0, "a seed is a whole number >= 0, not {text}")
_style_budget = _whole_number(0, "invalid value {text}: give a whole number of CLIP tokens, 0 or more "
                                 "(e.g. --style-budget 10)")


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    import io

    stdin = stdin or sys.stdin or io.StringIO()  # a closed stdin reads as empty
    out = Output(stdout or sys.stdout)  # a write that fails is one error line (closed, EPIPE, ENOSPC, encoding)
    stderr = stderr or sys.stderr or io.StringIO()  # closed: warnings go nowhere, not into print's default, stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.help:
            out.write(parser.format_help())
        code = EXIT_OK if args.help else _run(args, stdin, out, stderr)
        if out.pending:
            out.flush()  # here, not at exit: a full disk or a closed pipe is reported like any other failure
        return code
    except UsageError as exc:
        print(f"translate-prompt: error: {exc} (see --help)", file=stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"translate-prompt: error: {exc}", file=stderr)
        if out.failed:
            _drop(out.stream)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _drop(stream: TextIO | None) -> None:
    """Point a broken stdout's descriptor at os.devnull, so that Python's own flush at exit does not fail again
    (with "Exception ignored ... BrokenPipeError") after the one error line."""
    try:
        descriptor = stream.fileno() if stream is not None else -1
    except (AttributeError, OSError, ValueError):
        return
    if descriptor >= 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, descriptor)
        os.close(null)


def _run(args: argparse.Namespace, stdin: TextIO, stdout: Output, stderr: TextIO) -> int:
    from bridge.cli_output import COLORS, print_models
    from bridge.models import list_bridges, list_models
    from bridge.rules.knowledge import KnowledgeError, KnowledgeFileError

    if args.version:
        from bridge import __version__

        stdout.write(f"translate-prompt {__version__}\n")
        return EXIT_OK
    for flag, (dest, wanted) in _NAMING_OPTIONS.items():
        values = getattr(args, dest)
        if any(not value.strip() for value in (values if isinstance(values, list) else [values]) if value is not None):
            raise UsageError(f"{flag} is empty; give {wanted}")
    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}; valid formats: {', '.join(FORMATS)}")
    if args.color not in COLORS:
        raise UsageError(f"unknown --color {args.color!r}; valid values: {', '.join(COLORS)}")
    for flag, value in (("--input-dialect", args.input_dialect), ("--dialect", args.dialect)):
        if value not in DIALECTS:
            raise UsageError(f"unknown {flag} {value!r}; valid dialects: {', '.join(DIALECTS)}")
    if args.report and Path(args.report).suffix.lower() not in (".md", ".html", ".htm"):
        raise UsageError(f"report {args.report!r} must end in .md or .html")
    for flag, path in (("--registry", args.registry), ("--knowledge", args.knowledge),
                       ("--network-map", args.network_map)):
        _refuse_special(flag, path)
    if args.registry:
        from bridge.models import RegistryError, use_registry

        if not Path(args.registry).is_file():
            raise InputError(f"no such registry file: {args.registry}")
        try:
            use_registry(args.registry)
        except RegistryError as exc:
            raise UsageError(str(exc)) from None
    if args.list_models:
        print_models(stdout, list_models(), list_bridges())
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
    return _Run(args, translator, options, stdout, stderr).run(stdin)


class _Run:
    """One run after the checks: entries in input order, each written as it comes."""

    def __init__(self, args: argparse.Namespace, translator, options, stdout: Output, stderr: TextIO):
        from collections import Counter

        from bridge.cli_output import use_color

        self.args, self.translator, self.options, self.stdout, self.stderr = args, translator, options, stdout, stderr
        self.color = args.diff and use_color(args.color, stdout, os.environ, bool(args.output))
        self.out: TextIO | None = None  # --output's temporary file (renamed when the run ends); else stdout
        # kept only when they will be written: a long stdin stream or a big library holds no translation it is done
        # with (15 KB a prompt, 1.5 GB over 100,000 prompts, when every one was kept)
        self.rows: list | None = [] if args.report else None  # MigrationRow for --report
        self.results: list | None = [] if args.output and args.format == "text" else None  # for write_library
        self.kinds: Counter = Counter()
        self.unread = self.untranslated = 0  # library files or folders that could not be read; prompts refused
        self.flush, self.embeddings = False, {}  # embeddings: ComfyUI's embedding:NAME words read (name -> as written)

    def run(self, stdin: TextIO) -> int:
        args = self.args
        items, recipes = _read_input(args, stdin, self.warn_skipped, self.unreadable)
        _check_outputs(args, items)
        library = items is not None and args.format == "text"  # written back in its own formats by finish()
        with _output_file(args.output) if args.output and not library else contextlib.nullcontext() as self.out:
            if recipes is None:  # stdin, streamed: each line answered before the next is read
                self.run_stream(stdin)
            else:
                self.run_batch(items, recipes)
        self.finish(items)
        if self.unread or self.untranslated:
            parts = [f"{_count(self.unread, 'file or folder', 'files or folders')} of the library could not be read"
                     if self.unread else "",
                     f"{_count(self.untranslated, 'prompt', 'prompts')} could not be translated"
                     if self.untranslated else ""]
            print(f"translate-prompt: error: {' and '.join(p for p in parts if p)} (see above); everything else "
                  "was written", file=self.stderr)
            return EXIT_FAILURE
        return EXIT_OK

    def run_stream(self, stdin: TextIO) -> None:
        from bridge.recipe import Recipe

        args = self.args
        self.flush = True
        for number, line in enumerate(stdin_lines(stdin), 1):
            recipe = Recipe(prompt=line, negative_prompt=args.negative or "")
            refused = unpaired_surrogate(line, f"line {number}")
            if refused:  # only a text stream handed to main() can hold one: stdin's bytes are decoded strictly
                self.refuse(refused)
                self.emit(Recipe(prompt=""), None, line=number)
                continue
            if not line.strip():
                self.emit(recipe, None, line=number)
                continue
            self.embeddings = {}  # a line's embedding:NAME words are its own (read before the options are made)
            try:
                translation = self.translator.translate(self.from_dialect(recipe), self.options_read())
            except UnreadablePrompt as exc:
                translation = self.kept_as_written(recipe, str(exc))
            self.emit(recipe, translation, label=f"line {number}", line=number)

    def run_batch(self, items: list | None, recipes: list) -> None:
        from bridge.migration import MigrationRow, progress, translate_all
        from bridge.recipe import Recipe

        args = self.args
        count = len(recipes)
        refused = {}  # index -> why: an unpaired surrogate is not text; the row is kept as it was
        for i, recipe in enumerate(recipes):
            what = items[i].key if items else "prompt"
            why = unpaired_surrogate(recipe.prompt, what) or unpaired_surrogate(recipe.negative_prompt,
                                                                               f"{what}: the negative prompt")
            if why:
                refused[i] = why
        unreadable = {}  # index -> why: a prompt the --input-dialect cannot read is kept as written, with a warning
        wanted = []
        for i, recipe in enumerate(recipes):
            try:
                wanted.append(Recipe(prompt="") if i in refused else self.from_dialect(recipe))
            except UnreadablePrompt as exc:
                unreadable[i] = str(exc)
                wanted.append(Recipe(prompt=""))
        translated = translate_all(self.translator, wanted, self.options_read(), _jobs(args, self.translator, count))
        # A .txt read by the library skips blank lines: they come back as blank answers, so line N answers line N.
        fill = items is not None and Path(args.input).is_file() and all(i.kind == "text" for i in items)
        previous = 0
        for i, translation in enumerate(progress(translated, count, stream=self.stderr,
                                                 min_total=count + 1 if args.quiet else PROGRESS_MIN)):
            recipe, item = recipes[i], items[i] if items else None
            if i in unreadable:
                translation = self.kept_as_written(recipe, unreadable[i])
            if item is None:
                self.emit(recipe, translation)
                continue
            if fill and item.line:
                for gap in range(previous + 1, item.line):
                    self.emit(Recipe(prompt=""), None, line=gap)
                previous = item.line
            if self.results is not None:
                self.results.append(translation.recipe if translation else recipe)
            if i in refused:
                self.refuse(f"{refused[i]}; kept as it was")
                self.row(MigrationRow(item.key, recipe.prompt, recipe.negative_prompt, None,
                                      "not text (an unpaired surrogate)"))
                self.emit(recipe, None, key=item.key, line=item.line, warnings=[refused[i]])
            elif translation is None:  # a library row with no prompt is passed through as it was: never dropped
                self.warn(f"{item.key}: empty prompt, kept as it was", "empty prompt")
                self.row(MigrationRow(item.key, recipe.prompt, recipe.negative_prompt, None, "empty prompt"))
                self.emit(recipe, None, key=item.key, line=item.line, warnings=["empty prompt, kept as it was"])
            else:
                self.emit(recipe, translation, label=item.key, key=item.key, line=item.line)

    def row(self, row) -> None:  # a MigrationRow, for --report
        if self.rows is not None:
            self.rows.append(row)

    def from_dialect(self, recipe):
        return from_dialect(recipe, self.args.input_dialect, self.warn, self.embeddings)

    def kept_as_written(self, recipe, why: str):
        """A translation that changes nothing and says why (the answer A1111's path gives a prompt it rejects)."""
        from bridge.translation import Translation

        return Translation(recipe=recipe, source=self.translator.source, target=self.translator.target,
                           warnings=[why], original=recipe)

    def options_read(self):  # after reading: the user's embedding:NAME words added (one options object per batch)
        return with_embeddings(self.options, self.embeddings)

    def warn_skipped(self, message: str) -> None:  # something in the --input folder skipped on purpose
        self.warn(message, "skipped in the input folder")

    def unreadable(self, error: Exception) -> None:  # a file or folder of the library that could not be read
        self.unread += 1
        print(f"error: {error}", file=self.stderr)

    def refuse(self, message: str) -> None:  # a prompt that is not text
        self.untranslated += 1
        print(f"error: {message}", file=self.stderr)

    def warn(self, message: str, kind: str) -> None:
        self.kinds[kind] += 1
        if not self.args.quiet:
            print(f"warning: {message}", file=self.stderr)

    def emit(self, recipe, translation, *, label: str | None = None, key: str | None = None, line: int | None = None,
             warnings: list[str] | None = None) -> None:
        from bridge.cli_output import json_record, text_block, warning_kind
        from bridge.migration import MigrationRow

        args = self.args
        if translation is not None:
            translation = to_dialect(translation, args.dialect, self.embeddings)
            for warning in translation.warnings:
                self.warn(f"{label}: {warning}" if label else warning, kind=warning_kind(warning))
            self.row(MigrationRow(label or "prompt", recipe.prompt, recipe.negative_prompt, translation))
        if args.format == "json":
            block = json_record(translation, fmt_diff=args.diff, source_prompt=recipe.prompt,
                                source_negative=recipe.negative_prompt, key=key, line=line,
                                source=self.translator.source, target=self.translator.target, warnings=warnings)
        else:
            block = text_block(translation, args.format, args.explain, args.diff, self.color)
        if self.out is not None:
            self.out.write(block)
        elif not args.output:
            self.stdout.write(block)
            if self.flush:
                self.stdout.flush()

    def finish(self, items: list | None) -> None:
        args = self.args
        if args.output and items is not None and args.format == "text":
            from bridge.library import LibraryError, write_library

            try:
                write_library(items, self.results, args.output)
            except LibraryError as exc:
                raise InputError(str(exc)) from None
            except OSError as exc:  # an output folder that cannot be written or created
                raise InputError(f"cannot write {exc.filename or args.output}: {exc.strerror}") from None
        if args.report:
            from bridge.migration import write_report

            try:
                write_report(args.report, self.rows, source=self.translator.source, target=self.translator.target)
            except OSError as exc:
                raise InputError(f"cannot write report {args.report}: {exc.strerror or exc}") from None
        if args.warnings_summary:
            from bridge.cli_output import warnings_summary

            self.stderr.write(warnings_summary(self.kinds))


def _jobs(args: argparse.Namespace, translator, count: int) -> int:
    """Worker processes for a large library on the rules bridge (a learned bridge batches on its device instead)."""
    if args.jobs is not None:
        return args.jobs
    from bridge.rules import RulesTranslator

    if count < PARALLEL_MIN or not isinstance(translator, RulesTranslator) or sys.platform == "win32":
        return 1
    return min(os.cpu_count() or 1, 8)


def _load_translator(args: argparse.Namespace):
    from bridge.load import load_translator

    if args.search is None:
        given = [f"--{dest.replace('_', '-')}" for dest in _SEARCH_ONLY if getattr(args, dest) not in (None, False)]
        if given:
            raise UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to translate by "
                             "search: add --search N")
    else:
        rules_only = {"--knowledge": args.knowledge, "--style-budget": args.style_budget,
                      "--disable-rule": args.disable_rule, "--keep-networks": args.keep_networks,
                      "--network-map": args.network_map, "--embeddings": args.embeddings}
        given = [flag for flag, value in rules_only.items() if value not in (None, False, [])]
        if given:
            raise UsageError(f"--search tries the shipped rules' own variants; it takes no {', '.join(given)}")
        from bridge.search import DEFAULT_SEEDS, SearchTranslator

        learned = _load_learned(args) if args.model else None  # its samples are candidates too
        return SearchTranslator(source=learned.source if learned else args.source or DEFAULT_SOURCE,
                                target=learned.target if learned else args.target or DEFAULT_TARGET,
                                candidates=args.search, seeds=tuple(args.search_seeds or DEFAULT_SEEDS),
                                target_weights=args.target_weights, source_weights=args.source_weights,
                                tiny=args.tiny, device=args.device, cache_dir=args.cache_dir,
                                report_dir=args.search_report, learned=learned)
    if args.model:
        return _load_learned(args)
    for flag, given in ((f"--backend {args.backend}", args.backend != "auto"), ("--trust-pickle", args.trust_pickle)):
        if given:
            raise UsageError(f"{flag} applies to a learned bridge: give its folder with --model")
    return load_translator("rules", source=args.source or DEFAULT_SOURCE, target=args.target or DEFAULT_TARGET,
                           knowledge=args.knowledge)


def _load_learned(args: argparse.Namespace):
    """The learned bridge --model names, checked against --from/--to."""
    from bridge.models import get_model, is_hub_id

    if not Path(args.model).exists() and not is_hub_id(args.model):
        raise InputError(f"no learned bridge at {args.model!r}: give a folder written by training/train.py "
                         "or a hub id such as user/sd15-to-sd2")
    for flag, given in (("--knowledge", args.knowledge), ("--style-budget", args.style_budget)):
        if given is not None:
            raise UsageError(f"{flag} applies to the rules bridge, not to a learned one (--model)")
    from bridge.learned.seq2seq import Seq2SeqTranslator

    try:  # (a PickledWeightsError is a ValueError: a usage error naming --trust-pickle)
        translator = Seq2SeqTranslator.from_pretrained(args.model, backend=args.backend,
                                                       trust_pickle=args.trust_pickle)
    except (OSError, ImportError) as exc:
        raise InputError(f"cannot load the learned bridge {args.model!r}: {exc}") from None
    for flag, asked, actual in (("--from", args.source, translator.source), ("--to", args.target,
                                                                             translator.target)):
        if asked is not None and get_model(asked).key != actual:
            raise UsageError(f"{flag} {asked} does not match the learned bridge {args.model!r}, which translates "
                             f"{translator.source} -> {translator.target}")
    return translator


def _options(args: argparse.Namespace):
    from bridge.translation import TranslationOptions

    return TranslationOptions(
        networks="keep" if args.keep_networks else "remove",
        network_map=_read_network_map(args.network_map) if args.network_map else {},
        embeddings=_read_embeddings(args.embeddings) if args.embeddings else (),
        disable=tuple(args.disable_rule),
        knowledge=args.knowledge, style_budget=args.style_budget,
    )


def _jobs_count(text: str) -> int:
    digits = text.strip()
    value = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 6 else 0
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: give a whole number of worker processes from 1 "
                                         f"to {MAX_JOBS} (e.g. --jobs 4; 1 = none)")
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


def _read_input(args: argparse.Namespace, stdin: TextIO, warn, error) -> tuple[list | None, list | None]:
    """The recipes to translate and the library items they came from (None for prompts given inline); (None, None)
    when the prompts are to be streamed from stdin. In an --input folder, what is skipped goes to ``warn`` and what
    cannot be read to ``error`` (the rest is read)."""
    from bridge.recipe import Recipe

    negative = args.negative or ""
    refused = unpaired_surrogate(negative, "--negative")
    if refused:
        raise InputError(refused)
    dash = "-" in args.prompts
    if dash and (len(args.prompts) > 1 or args.input):
        raise UsageError("'-' reads the prompts from stdin: give it alone, without other prompts or --input")
    if args.prompts and args.input:
        raise UsageError("give prompts as arguments or with --input, not both")
    if args.prompts and not dash:
        for number, prompt in enumerate(args.prompts, 1):
            if not prompt.strip():
                raise UsageError("empty prompt: give the SD1.x prompt to translate, e.g. 'a castle on a hill, 8k'")
            refused = unpaired_surrogate(prompt, f"prompt argument {number}")
            if refused:
                raise InputError(refused)
        return None, [Recipe(prompt=p, negative_prompt=negative) for p in args.prompts]
    if args.input and args.input != "-":
        from bridge.datafiles import path_kind
        from bridge.library import LibraryError, read_library

        kind = path_kind(args.input)
        if kind == "missing":
            raise InputError(f"no such file or folder: {args.input}")
        if kind not in ("file", "folder"):
            raise InputError(f"cannot read --input {args.input}: it is {kind}, not a file or folder; give a file, a "
                             "folder, or '-' to read stdin")
        problems: list = []

        def unreadable(problem: LibraryError) -> None:
            problems.append(problem)
            error(problem)

        try:
            items = read_library(args.input, column=args.column, follow_symlinks=args.follow_symlinks,
                                 on_error=unreadable, on_warning=warn)
        except LibraryError as exc:
            raise InputError(str(exc)) from None
        if not items and problems:
            raise InputError(f"nothing could be read from {args.input} (see above)")
        if not items:
            raise UsageError(f"no prompts in {args.input}: it is empty or only blank lines")
        if negative:
            for item in items:
                if not item.recipe.negative_prompt:
                    item.recipe = item.recipe.replace(negative_prompt=negative)
        return items, [item.recipe for item in items]
    if not dash and not args.input and _is_tty(stdin):
        raise UsageError("no prompt given: pass one as an argument, use --input FILE, or pipe prompts on stdin")
    return None, None


def _check_outputs(args: argparse.Namespace, items: list | None) -> None:
    """--output and --report must not name an input of the run (any file read, whatever the format) or each other:
    a usage error, before anything is translated or written. Each path is resolved once (linear in the files)."""
    if not (args.output or args.report):
        return
    from bridge.datafiles import FileSet

    read = [args.network_map, args.knowledge, args.registry, args.input if args.input != "-" else None]
    inputs = FileSet([*dict.fromkeys(item.source for item in items or ()), *(path for path in read if path)])
    for flag, path in (("--output", args.output), ("--report", args.report)):
        if path and inputs.holds(path):
            raise UsageError(f"{flag} {path} is an input of this run; write it elsewhere (nothing was written)")
    if args.output and args.report and FileSet([args.output]).holds(args.report):
        raise UsageError(f"--output and --report both name {args.report}; give the report a name of its own")


def _refuse_special(flag: str, path: str | None) -> None:
    """A FIFO, socket or device given for a file flag: refused before anything opens it (a FIFO would wait)."""
    if path:
        from bridge.datafiles import path_kind

        kind = path_kind(path)
        if kind not in ("file", "folder", "missing") and not kind.startswith("unreadable"):
            raise InputError(f"cannot read {flag} {path}: it is {kind}, not a regular file")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


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


def _output_file(output: str) -> AtomicFile:
    """--output as it is written: the translations go to a temporary file beside it as they come, renamed over it when
    the run ends (an interrupted run leaves the old file as it was, and memory holds no translation it is done with).
    """
    from bridge.datafiles import AtomicFile, remove_stale_temporaries

    path = Path(output)
    try:
        remove_stale_temporaries(path)
        return AtomicFile(path)
    except OSError as exc:  # a missing folder: "folder F does not exist"
        raise InputError(f"cannot write {path}: {exc.strerror}") from None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
