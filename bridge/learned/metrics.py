"""How well a learned bridge translates held-out pairs: chrF, exact match and syntax preservation."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from bridge.learned.textformat import format_output

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bridge.learned.textformat import Example

__all__ = ["CHRF_BETA", "CHRF_ORDER", "chrf", "evaluate_examples"]

CHRF_ORDER = 6  # character n-grams up to 6, as in chrF (Popović 2015) and sacrebleu
CHRF_BETA = 2  # recall weighted twice as much as precision


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100): character n-gram F-score, n = 1..6, beta = 2, whitespace ignored; n-gram statistics are
    summed over the corpus, then precision and recall averaged over the orders, as sacrebleu computes it.

    >>> chrf(["a castle on a hill"], ["a castle on a hill"])
    100.0
    >>> round(chrf(["a castle"], ["a stone castle on a hill"]), 1)
    24.8
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    matches = [0] * CHRF_ORDER
    hyp_total = [0] * CHRF_ORDER
    ref_total = [0] * CHRF_ORDER
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp, ref = "".join(hyp.split()), "".join(ref.split())
        for n in range(1, CHRF_ORDER + 1):
            h = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
            r = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
            matches[n - 1] += sum((h & r).values())
            hyp_total[n - 1] += sum(h.values())
            ref_total[n - 1] += sum(r.values())
    orders = [n for n in range(CHRF_ORDER) if hyp_total[n] and ref_total[n]]
    if not orders:
        return 100.0 if not any(hyp_total) and not any(ref_total) else 0.0
    precision = sum(matches[n] / hyp_total[n] for n in orders) / len(orders)
    recall = sum(matches[n] / ref_total[n] for n in orders) / len(orders)
    if precision + recall == 0:
        return 0.0
    b2 = CHRF_BETA**2
    return 100 * (1 + b2) * precision * recall / (b2 * precision + recall)


def evaluate_examples(translator: Any, examples: Sequence[Example], *, batch_size: int = 32
                      ) -> dict[str, float]:
    """Generation metrics of ``translator`` (a Seq2SeqTranslator: anything with its ``generate``) on encoded pairs
    (greedy): chrF and exact match of the restored output against the reference, and the syntax-preservation rate of
    the raw output (every placeholder intact)."""
    raws = [r[0] for r in translator.generate([e.input_text for e in examples], batch_size=batch_size)]
    restored = [format_output(*e.restore(raw)) for e, raw in zip(examples, raws, strict=True)]
    references = [e.reference or "" for e in examples]
    n = max(len(examples), 1)
    return {
        "chrf": chrf(restored, references),
        "exact_match": sum(h == r for h, r in zip(restored, references, strict=True)) / n,
        "syntax_preservation": sum(not e.problems(raw) for e, raw in zip(examples, raws, strict=True)) / n,
    }
