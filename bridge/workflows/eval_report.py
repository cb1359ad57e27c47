"""Paired statistics and the HTML report of an image comparison (used by eval/evaluate.py and data building).

Statistics, with the prompt as the unit (average a prompt's seeds first):

>>> paired_win_rate([0.3, 0.2, 0.5], [0.1, 0.2, 0.6])   # one win, one tie, one loss
(0.5, 0.3333333333333333)
>>> lo, hi = bootstrap_ci([1.0, 0.5, 0.0, 1.0], seed=0)
>>> 0.0 <= lo <= 0.625 <= hi <= 1.0
True

The report is one self-contained HTML page (inline CSS and SVG, images linked by relative path): a summary per
column, score-distribution plots and a grid of rows (source prompts) × columns (translators or candidates) showing the
images, each prompt with a word diff against the source, and the scores. Nothing here imports a third-party package.
"""

from __future__ import annotations

import difflib
import html
import math
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "ReportCell",
    "ReportImage",
    "ReportRow",
    "bootstrap_ci",
    "histogram_svg",
    "paired_outcomes",
    "paired_win_rate",
    "render_report",
    "win_rate_svg",
    "word_diff_html",
]

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
HISTOGRAM_BINS = 12
PALETTE = ("#64748b", "#2563eb", "#d97706", "#059669", "#9333ea", "#dc2626")  # the baseline column gets the grey


# ---------------------------------------------------------------- statistics


def paired_outcomes(scores: Sequence[float], baseline: Sequence[float], tie_tolerance: float = 0.0) -> list[float]:
    """Per pair: 1 when ``scores`` beats ``baseline``, 0 when it loses, 0.5 for a tie (within ``tie_tolerance``)."""
    if len(scores) != len(baseline):
        raise ValueError(f"paired scores need the same number of items but have {len(scores)} and {len(baseline)}")
    return [0.5 if abs(a - b) <= tie_tolerance else float(a > b) for a, b in zip(scores, baseline)]


def paired_win_rate(scores: Sequence[float], baseline: Sequence[float],
                    tie_tolerance: float = 0.0) -> tuple[float, float]:
    """(win rate with ties counted one half, tie rate) of ``scores`` against ``baseline``, pair by pair."""
    outcomes = paired_outcomes(scores, baseline, tie_tolerance)
    if not outcomes:
        raise ValueError("a win rate needs at least one pair")
    return sum(outcomes) / len(outcomes), outcomes.count(0.5) / len(outcomes)


def bootstrap_ci(values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values`` (resampled with replacement, seeded)."""
    if not values:
        raise ValueError("a confidence interval needs at least one value")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError(f"need resamples >= 1 and 0 < confidence < 1, got {resamples} and {confidence}")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[max(0, math.floor(tail * resamples))]
    high = means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return low, high


# ---------------------------------------------------------------- word diff

_WORDS = re.compile(r"\s+|[^\s,]+|,")
_SEPARATOR = re.compile(r"[\s,]*")


def _coalesced(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes, with an unchanged run of mere spaces and commas between two changes folded into them, so
    a rewritten phrase reads as one deletion and one insertion instead of alternating word by word."""
    ops = [list(op) for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()]
    merged: list[list] = []
    for k, op in enumerate(ops):
        tag, i1, i2, j1, j2 = op
        between_changes = 0 < k < len(ops) - 1 and ops[k + 1][0] != "equal"
        if tag == "equal" and between_changes and merged and merged[-1][0] != "equal" \
                and _SEPARATOR.fullmatch("".join(a[i1:i2])):
            tag = "replace"
        if merged and tag != "equal" and merged[-1][0] != "equal":
            merged[-1] = ["replace", merged[-1][1], i2, merged[-1][3], j2]
        else:
            merged.append([tag, i1, i2, j1, j2])
    return [tuple(op) for op in merged]


def word_diff_html(before: str, after: str) -> str:
    """``after`` as HTML, with words not in ``before`` in ``<ins>`` and removed words in ``<del>``.

    >>> word_diff_html("a castle, by greg rutkowski, 8k", "a castle, painterly, artstation")
    'a castle, <del>by greg rutkowski, 8k</del><ins>painterly, artstation</ins>'
    """
    a, b = _WORDS.findall(before), _WORDS.findall(after)
    out = []
    for op, i1, i2, j1, j2 in _coalesced(a, b):
        if op == "equal":
            out.append(html.escape("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{html.escape(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{html.escape(''.join(b[j1:j2]))}</ins>")
    return "".join(out)


# ---------------------------------------------------------------- plots (inline SVG)


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def histogram_svg(values_by_column: Mapping[str, Sequence[float]], *, bins: int = HISTOGRAM_BINS,
                  width: int = 300, height: int = 150) -> str:
    """One small histogram per column on shared bins, each with its mean marked; an ``<svg>`` per column."""
    every = [v for values in values_by_column.values() for v in values]
    if not every:
        return ""
    low, high = min(every), max(every)
    span = (high - low) or 1.0
    counts = {}
    for name, values in values_by_column.items():
        row = [0] * bins
        for v in values:
            row[min(bins - 1, int((v - low) / span * bins))] += 1
        counts[name] = row
    tallest = max(max(row) for row in counts.values()) or 1
    pad_l, pad_b, pad_t = 8, 22, 22
    plot_w, plot_h = width - 2 * pad_l, height - pad_b - pad_t
    bar_w = plot_w / bins
    figures = []
    for k, (name, row) in enumerate(counts.items()):
        color = PALETTE[k % len(PALETTE)]
        values = values_by_column[name]
        parts = [(f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
                  f'aria-label="score histogram for {html.escape(name)}">'),
                 f'<text x="{pad_l}" y="14" class="t">{html.escape(name)}</text>']
        for i, count in enumerate(row):
            h = count / tallest * plot_h
            x = pad_l + i * bar_w
            parts.append(f'<rect x="{x + 1:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                         f'height="{h:.1f}" fill="{color}"><title>{count} prompts in '
                         f'[{_fmt(low + i * span / bins)}, {_fmt(low + (i + 1) * span / bins)})</title></rect>')
        if values:
            mean = sum(values) / len(values)
            mx = pad_l + (mean - low) / span * plot_w
            parts.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{pad_t - 4}" y2="{pad_t + plot_h}" class="mean"/>'
                         f'<text x="{width - pad_l}" y="14" class="m" text-anchor="end">mean {_fmt(mean)}</text>')
        base = pad_t + plot_h
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_l}" y1="{base}" y2="{base}" class="axis"/>'
                     f'<text x="{pad_l}" y="{height - 6}" class="a">{_fmt(low)}</text>'
                     f'<text x="{width - pad_l}" y="{height - 6}" class="a" text-anchor="end">{_fmt(high)}</text>'
                     "</svg>")
        figures.append("".join(parts))
    return "".join(figures)


def win_rate_svg(win_rates: Mapping[str, tuple[float, float, float]], *, baseline: str, width: int = 560) -> str:
    """Horizontal bars: each column's win rate against ``baseline`` with its confidence interval as whiskers."""
    if not win_rates:
        return ""
    label_w, pad, row_h = 110, 16, 34
    height = pad * 2 + row_h * len(win_rates) + 18
    plot_w = width - label_w - pad - 90

    def x(rate: float) -> float:
        return label_w + rate * plot_w

    parts = [(f'<svg class="winrate" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
              f'aria-label="win rate against {html.escape(baseline)} with 95% confidence intervals">')]
    bottom = pad + row_h * len(win_rates)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        cls = "half" if tick == 0.5 else "grid"
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{pad - 4}" y2="{bottom}" class="{cls}"/>'
                     f'<text x="{x(tick):.1f}" y="{bottom + 14}" class="a" text-anchor="middle">{tick:.0%}</text>')
    for k, (name, (rate, low, high)) in enumerate(win_rates.items()):
        y = pad + k * row_h
        color = PALETTE[(k + 1) % len(PALETTE)]
        mid = y + row_h / 2
        parts.append(
            f'<text x="{label_w - 10}" y="{mid + 4:.1f}" class="t" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 7}" width="{rate * plot_w:.1f}" height="{row_h - 14}" fill="{color}" '
            f'rx="3"><title>{name}: {rate:.1%} [{low:.1%}, {high:.1%}]</title></rect>'
            f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{mid:.1f}" y2="{mid:.1f}" class="ci"/>'
            f'<line x1="{x(low):.1f}" x2="{x(low):.1f}" y1="{mid - 7:.1f}" y2="{mid + 7:.1f}" class="ci"/>'
            f'<line x1="{x(high):.1f}" x2="{x(high):.1f}" y1="{mid - 7:.1f}" y2="{mid + 7:.1f}" class="ci"/>'
            f'<text x="{x(1.0) + 10:.1f}" y="{mid + 4:.1f}" class="v">{rate:.0%} '
            f'<tspan class="a">[{low:.0%}–{high:.0%}]</tspan></text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- the page


@dataclass
class ReportImage:
    """One image of a cell: its path relative to the report, the seed and the image's score."""

    path: str
    seed: int
    score: float


@dataclass
class ReportCell:
    """One column's result for one source prompt: the prompt it rendered, the images and its mean score."""

    prompt: str
    negative_prompt: str
    images: list[ReportImage]
    score: float
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportRow:
    """One source prompt and each column's cell."""

    source: str
    cells: dict[str, ReportCell]


_CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--win:#059669;--loss:#dc2626}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{position:sticky;top:0;z-index:10;background:#111827;color:#f9fafb;padding:10px 24px;display:flex;
  align-items:baseline;gap:18px;flex-wrap:wrap;box-shadow:0 2px 6px rgba(0,0,0,.2)}
header h1{font-size:17px;margin:0;font-weight:600}
header .meta{color:#9ca3af;font-size:12.5px}
header nav{margin-left:auto;display:flex;gap:14px}
header nav a{color:#93c5fd;text-decoration:none;font-size:13px}
main{padding:18px 24px 60px;max-width:1800px;margin:0 auto}
h2{font-size:15px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:26px 0 10px}
.cards{display:flex;gap:14px;flex-wrap:wrap}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 16px;min-width:220px;
  border-top:4px solid var(--c)}
.card h3{margin:0 0 6px;font-size:15px}
.card dl{display:grid;grid-template-columns:auto auto;gap:2px 14px;margin:0;font-size:13px}
.card dt{color:var(--muted)}.card dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
.notice{background:#fef3c7;border:1px solid #fcd34d;border-radius:8px;padding:8px 12px;margin:10px 0}
.plots{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
.panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px}
.panel h4{margin:0 0 6px;font-size:13px;color:var(--muted);font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:var(--ink)}
svg .t{font-weight:600;font-size:12px} svg .a{fill:var(--muted)} svg .m{fill:var(--muted)} svg .v{font-weight:600}
svg .axis,svg .grid{stroke:var(--line)} svg .half{stroke:#111827;stroke-dasharray:4 3}
svg .ci{stroke:#111827;stroke-width:1.6} svg .mean{stroke:#111827;stroke-dasharray:3 2}
table.grid{border-collapse:separate;border-spacing:0;width:100%;background:var(--card);border:1px solid var(--line);
  border-radius:10px}
table.grid th{position:sticky;top:var(--head,46px);z-index:5;background:#f3f4f6;text-align:left;padding:8px 10px;
  border-bottom:1px solid var(--line);font-size:13px}
table.grid th span{display:inline-block;width:10px;height:10px;border-radius:2px;background:var(--c);margin-right:6px}
table.grid td{vertical-align:top;padding:10px;border-bottom:1px solid var(--line)}
td.source{width:22%;min-width:200px}
td.source .n{color:var(--muted);font-size:12px}
td.source .p{font-weight:500}
.imgs{display:flex;gap:6px;flex-wrap:wrap;margin-bottom:6px}
figure{margin:0;text-align:center}
figure img{width:150px;height:150px;object-fit:cover;border-radius:6px;border:1px solid var(--line);display:block;
  image-rendering:auto;background:#eee}
figure img.small{image-rendering:pixelated}
figcaption{font-size:11px;color:var(--muted);font-variant-numeric:tabular-nums}
.prompt{font-size:12.5px;word-break:break-word}
.neg{font-size:11.5px;color:var(--muted);margin-top:4px;word-break:break-word}
ins{background:#d1fae5;color:#065f46;text-decoration:none;border-radius:2px}
del{background:#fee2e2;color:#991b1b;border-radius:2px}
del+ins,ins+del{margin-left:3px}
.score{font-weight:600;font-variant-numeric:tabular-nums}
.delta{font-size:12px;margin-left:6px;font-variant-numeric:tabular-nums}
.delta.win{color:var(--win)} .delta.loss{color:var(--loss)} .delta.tie{color:var(--muted)}
.tag{display:inline-block;font-size:11px;background:#eef2ff;color:#3730a3;white-space:nowrap;border-radius:4px;padding:0 5px;margin-left:4px}
tr.prompt-row:hover td{background:#fafafa}
"""


def _cell_html(cell: ReportCell, source: str, baseline: ReportCell | None, small_images: bool) -> str:
    figures = "".join(
        f'<figure><a href="{html.escape(im.path)}"><img src="{html.escape(im.path)}" alt="seed {im.seed}" '
        f'loading="lazy"{" class=small" if small_images else ""}></a>'
        f"<figcaption>seed {im.seed} · {_fmt(im.score)}</figcaption></figure>"
        for im in cell.images)
    delta = ""
    if baseline is not None and baseline is not cell:
        d = cell.score - baseline.score
        kind = "tie" if d == 0 else ("win" if d > 0 else "loss")
        delta = f'<span class="delta {kind}">{d:+.3f}</span>'
    tags = "".join(f'<span class="tag">{html.escape(note)}</span>' for note in cell.notes)
    negative = (f'<div class="neg">negative: {html.escape(cell.negative_prompt)}</div>'
                if cell.negative_prompt else '<div class="neg">no negative prompt</div>')
    return (f'<td><div class="imgs">{figures}</div><div><span class="score">{_fmt(cell.score)}</span>{delta}{tags}</div>'
            f'<div class="prompt">{word_diff_html(source, cell.prompt)}</div>{negative}</td>')


def render_report(
    *,
    title: str,
    meta: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[ReportRow],
    summary: Mapping[str, Mapping[str, str]],
    win_rates: Mapping[str, tuple[float, float, float]],
    baseline: str | None = None,
    notices: Sequence[str] = (),
    small_images: bool = False,
) -> str:
    """The report page as a string.

    ``summary`` maps column → (metric label → formatted value) for the cards; ``win_rates`` maps column →
    (rate, CI low, CI high) against ``baseline``; the histograms show each column's per-row scores.
    """
    colors = {name: PALETTE[k % len(PALETTE)] for k, name in enumerate(columns)}
    cards = "".join(
        f'<div class="card" style="--c:{colors[name]}"><h3>{html.escape(name)}</h3><dl>'
        + "".join(f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>"
                  for label, value in summary.get(name, {}).items())
        + "</dl></div>"
        for name in columns)
    per_row = {name: [row.cells[name].score for row in rows if name in row.cells] for name in columns}
    plots = ""
    if win_rates:
        plots += (f'<div class="panel"><h4>Win rate against {html.escape(baseline or "")} (per prompt, ties count ½; '
                  f"whiskers: 95% bootstrap CI)</h4>{win_rate_svg(win_rates, baseline=baseline or '')}</div>")
    plots += (f'<div class="panel"><h4>Score distribution (per prompt, mean over seeds)</h4>'
              f"{histogram_svg(per_row)}</div>")
    head = "".join(f'<th style="--c:{colors[name]}"><span></span>{html.escape(name)}</th>' for name in columns)
    body = []
    for i, row in enumerate(rows):
        base = row.cells.get(baseline) if baseline else None
        cells = "".join(_cell_html(row.cells[name], row.source, base, small_images) if name in row.cells else "<td></td>"
                        for name in columns)
        body.append(f'<tr class="prompt-row" id="p{i}"><td class="source"><div class="n">#{i + 1}</div>'
                    f'<div class="p">{html.escape(row.source)}</div></td>{cells}</tr>')
    notice_html = "".join(f'<div class="notice">{html.escape(text)}</div>' for text in notices)
    meta_html = " · ".join(html.escape(m) for m in meta)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<header><h1>{html.escape(title)}</h1><span class="meta">{meta_html}</span>
<nav><a href="#summary">Summary</a><a href="#plots">Plots</a><a href="#grid">Images</a></nav></header>
<main>
{notice_html}
<h2 id="summary">Summary</h2><div class="cards">{cards}</div>
<h2 id="plots">Plots</h2><div class="plots">{plots}</div>
<h2 id="grid">Images ({len(rows)} prompts)</h2>
<table class="grid"><thead><tr><th>Source prompt</th>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
</main></body></html>
"""
