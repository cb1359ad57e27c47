"""Translating a whole prompt library: in batches or worker processes, with a progress bar, then a report.

``translate_all(translator, recipes, options, jobs)`` yields the translations in input order, a batch at a time (or
from forked worker processes); ``progress`` draws a bar while they come; ``write_report(path, rows)`` writes Markdown
(``.md``) or HTML (``.html``): how many prompts changed, how often each rule fired, every warning, and a side-by-side
before/after of every prompt with the words that changed marked.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from bridge.datafiles import atomic_write, remove_stale_temporaries
from bridge.translation import Translation

if TYPE_CHECKING:
    from collections import Counter

    from bridge.recipe import Recipe
    from bridge.translation import TranslationOptions, Translator

__all__ = ["DIFF_WORK", "MigrationRow", "progress", "translate_all", "word_diff", "write_report"]

T = TypeVar("T")
REPORT_SUFFIXES = (".md", ".html", ".htm")
BATCH = 64  # prompts per translate_batch call: a learned bridge generates a batch at a time


@dataclass
class MigrationRow:
    """One migrated prompt: where it came from (``key``) and its translation (None when the row was passed through,
    e.g. an empty prompt, with ``skipped`` saying why)."""

    key: str
    before_prompt: str
    before_negative: str
    translation: Translation | None
    skipped: str = ""


_TOKEN = re.compile(r"\s+|[^\s,]+|,")
_PHRASE = re.compile(r"[^,]*,|[^,]+")  # a phrase with its comma: "masterpiece," " castle," " 8k"
DIFF_WORK = 25_000_000  # difflib's worst case (see _work) up to which a diff is exact: see word_diff


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """(op, text) pieces where op is "=", "-" or "+": a word-level diff that keeps commas and spaces.

    Exact (difflib, no junk heuristic) while difflib's worst case for the two token lists stays under DIFF_WORK,
    which every prompt of ordinary length does (the longest shipped corpus prompt, 1,364 characters, costs 19.2
    million); difflib's time grows with about the cube of the length of a long repetitive prompt. Past it: the
    common start and end are kept, and the middle is diffed by words, else by phrases (each with its comma),
    whichever stays under DIFF_WORK, else marked removed and added whole. Joining the "=" and "-" pieces still gives
    `before`, the "=" and "+" pieces `after`.

    >>> word_diff("a castle, 8k", "a castle, detailed")
    [('=', 'a castle, '), ('-', '8k'), ('+', 'detailed')]
    """
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    if _work(a, b) <= DIFF_WORK:
        return _opcodes(a, b)
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    middle_a, middle_b = "".join(a[start : len(a) - end]), "".join(b[start : len(b) - end])
    out = [("=", "".join(a[:start]))] if start else []
    for pattern in (_TOKEN, _PHRASE):
        x, y = pattern.findall(middle_a), pattern.findall(middle_b)
        if _work(x, y) <= DIFF_WORK:
            out += _opcodes(x, y)
            break
    else:
        out += [(op, text) for op, text in (("-", middle_a), ("+", middle_b)) if text]
    if end:
        out.append(("=", "".join(a[len(a) - end :])))
    return out


def _work(a: list[str], b: list[str]) -> int:
    """A bound on difflib's steps: at most about min(len) longest-match searches, each visiting its range of `a` and
    the pairs of equal tokens (what makes a repetitive prompt slow)."""
    from collections import Counter

    counts = Counter(b)
    pairs = sum(counts[token] * n for token, n in Counter(a).items())
    return min(len(a), len(b)) * (len(a) + pairs)


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    import difflib

    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("+", "".join(b[j1:j2])))
    return out


def _summary(rows: list[MigrationRow]) -> tuple[Counter, list[tuple[str, str]], int]:
    from collections import Counter

    counts: Counter = Counter()
    warnings: list[tuple[str, str]] = []
    changed = 0
    for row in rows:
        if row.skipped:
            warnings.append((row.key, row.skipped))
            continue
        t = row.translation
        assert t is not None
        counts.update({c.rule for c in t.changes})
        warnings.extend((row.key, w) for w in t.warnings)
        changed += t.prompt != row.before_prompt
    return counts, warnings, changed


def write_report(path: str | os.PathLike, rows: list[MigrationRow], *, source: str, target: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise ValueError(f"report {path} must end in .md or .html")
    text = (_html if path.suffix.lower() in (".html", ".htm") else _markdown)(rows, source, target)
    remove_stale_temporaries(path)
    # backslashreplace: a name or a kept row may hold an unpaired surrogate (a file name that is not UTF-8, a JSON
    # "\ud800"), which a report shows as its escape
    atomic_write(path, text.encode("utf-8", "backslashreplace"))
    return path


def _markdown(rows: list[MigrationRow], source: str, target: str) -> str:
    counts, warnings, changed = _summary(rows)
    summary = (f"{len(rows)} prompts: {changed} positive prompts rewritten, {len(rows) - changed} kept as they were; "
               f"{len(warnings)} warnings.")
    out = [f"# Prompt migration {_md(source)} → {_md(target)}", "", summary, "", "## Rules applied (prompts each rule changed)",
           "", "| rule | prompts |", "|---|---:|"]
    out += [f"| `{rule}` | {n} |" for rule, n in counts.most_common()]
    out += ["", "## Warnings", ""]
    out += [f"- **{_md(key)}**: {_md(w)}" for key, w in warnings] or ["None."]
    out += ["", "## Prompts", ""]
    for row in rows:
        out.append(f"### {_md(row.key)}")
        if row.skipped:
            out += ["", f"Kept as it was: {_md(row.skipped)}", ""]
            continue
        t = row.translation
        assert t is not None
        marked = "".join(text if op == "=" else f"~~{text}~~" if op == "-" else f"**{text}**"
                         for op, text in word_diff(row.before_prompt, t.prompt))
        out += ["", "| before | after |", "|---|---|",
                f"| {_md(row.before_prompt)} | {_md(t.prompt)} |",
                f"| {_md(row.before_negative) or '*(no negative)*'} | {_md(t.negative_prompt)} |", "",
                f"Changes: {_md(marked)}", ""]
        out += [f"- `{c.rule}`: {_md(c.before)!s} → {_md(c.after) or '(removed)'} — {_md(c.reason)}"
                for c in t.changes]
        out.append("")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    """Text for a Markdown table cell or line: HTML escaped (Markdown renders raw HTML, so a prompt holding
    ``<img onerror=...>`` would run in the viewer), pipes escaped, on one line."""
    import html

    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:.45rem .6rem;
vertical-align:top;text-align:left}th{background:#f4f4f6}del{background:#fde2e1;color:#8a1f11}
ins{background:#dff5e1;color:#14532d;text-decoration:none}.key{color:#666;font-size:.85em}
.warn{color:#8a5300}.num{text-align:right}
"""


def _html(rows: list[MigrationRow], source: str, target: str) -> str:
    import html

    counts, warnings, changed = _summary(rows)
    e = html.escape
    summary = (f"<p>{len(rows)} prompts: {changed} positive prompts rewritten, {len(rows) - changed} kept as they "
               f"were; {len(warnings)} warnings.</p>")
    parts = [f"<!doctype html><meta charset='utf-8'><title>Prompt migration {e(source)} → {e(target)}</title>",
             f"<style>{_CSS}</style><h1>Prompt migration {e(source)} → {e(target)}</h1>", summary,
             "<h2>Rules applied</h2><table><tr><th>rule</th><th>prompts</th></tr>"]
    parts += [f"<tr><td><code>{e(rule)}</code></td><td class=num>{n}</td></tr>" for rule, n in counts.most_common()]
    parts.append("</table><h2>Warnings</h2><ul>")
    parts += [f"<li class=warn><b>{e(key)}</b>: {e(w)}</li>" for key, w in warnings] or ["<li>None.</li>"]
    parts.append("</ul><h2>Prompts</h2><table><tr><th>before</th><th>after</th></tr>")
    for row in rows:
        if row.skipped:
            parts.append(f"<tr><td colspan=2><div class=key>{e(row.key)}</div>{e(row.before_prompt)}"
                         f"<div class=warn>kept as it was: {e(row.skipped)}</div></td></tr>")
            continue
        t = row.translation
        assert t is not None
        pieces = word_diff(row.before_prompt, t.prompt)
        before = "".join(e(x) if op == "=" else f"<del>{e(x)}</del>" for op, x in pieces if op != "+")
        after = "".join(e(x) if op == "=" else f"<ins>{e(x)}</ins>" for op, x in pieces if op != "-")
        parts.append(f"<tr><td><div class=key>{e(row.key)}</div>{before}<div class=key>negative: "
                     f"{e(row.before_negative) or '—'}</div></td><td><div class=key>{len(t.changes)} changes</div>"
                     f"{after}<div class=key>negative: {e(t.negative_prompt)}</div></td></tr>")
    parts.append("</table>")
    return "\n".join(parts) + "\n"


def progress(items: Iterable[T], total: int, *, label: str = "translating", stream: TextIO | None = None,
             min_total: int = 200) -> Iterator[T]:
    """Yield ``items`` while drawing a one-line progress bar (count, rate, ETA) on ``stream`` (stderr) when it is a
    terminal and the job is long enough to need one."""
    stream = stream or sys.stderr
    try:
        show = total >= min_total and stream.isatty()
    except (AttributeError, ValueError):
        show = False
    if not show:
        yield from items
        return
    start = last = time.perf_counter()
    for done, item in enumerate(items, 1):
        yield item
        now = time.perf_counter()
        if now - last >= 0.1 or done == total:
            last = now
            rate = done / max(now - start, 1e-9)
            eta = (total - done) / rate if rate else 0.0
            filled = int(30 * done / total)
            stream.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {rate:,.0f}/s ETA {eta:.0f}s")
            stream.flush()
    stream.write("\n")


def translate_all(translator: Translator, recipes: list[Recipe], options: TranslationOptions,
                  jobs: int = 1) -> Iterator[Translation | None]:
    """Translations in input order (None for an empty prompt), asked for a batch at a time and yielded lazily so a
    progress bar moves. With ``jobs`` > 1 the translator runs in that many forked worker processes (they inherit the
    loaded translator; fork is POSIX only)."""
    if jobs > 1:
        yield from _translate_in_processes(translator, recipes, options, jobs)
        return
    for start in range(0, len(recipes), BATCH):
        batch = recipes[start : start + BATCH]
        wanted = [r for r in batch if r.prompt.strip()]
        done = iter(translator.translate_batch(wanted, options) if wanted else [])
        for recipe in batch:
            yield next(done) if recipe.prompt.strip() else None


_WORKER: tuple = ()  # (translator, options) in a forked worker


def _translate_chunk(batch: list[Recipe]) -> list[Translation | None]:
    translator, options = _WORKER
    return [translator.translate(r, options) if r.prompt.strip() else None for r in batch]


def _translate_in_processes(translator: Translator, recipes: list[Recipe], options: TranslationOptions,
                            jobs: int) -> Iterator[Translation | None]:
    import multiprocessing

    global _WORKER
    _WORKER = (translator, options)
    batches = [recipes[i : i + BATCH * 4] for i in range(0, len(recipes), BATCH * 4)]
    with multiprocessing.get_context("fork").Pool(max(1, min(jobs, len(batches)))) as pool:
        for done in pool.imap(_translate_chunk, batches):
            yield from done
