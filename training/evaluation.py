"""The `evaluate` metric modules shipped in `training/metrics/`, loaded by path so that nothing needs the Hub
(accuracy, precision_recall_f1, squad, sacrebleu, rouge), and the scores of generated text against references:
sacreBLEU (BLEU, chrF) for translation, ROUGE-1/2/L for summaries."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).with_name("metrics")
TEXT_METRICS = ("sacrebleu", "rouge")
SCORES = {"sacrebleu": ("bleu", "chrf"), "rouge": ("rouge1", "rouge2", "rougeL")}


# Scores one module computes together, each loadable on its own by name (its config name there).
SCORE_MODULES = {"precision": "precision_recall_f1", "recall": "precision_recall_f1", "f1": "precision_recall_f1"}


@cache
def load_metric(name: str):
    """One of the `evaluate` metric modules shipped with the package, by path; "precision", "recall" and "f1" are
    `precision_recall_f1` returning only that score."""
    module = SCORE_MODULES.get(name, name)
    path = METRICS_DIR / module
    if not (path / f"{module}.py").is_file():
        known = sorted({p.name for p in METRICS_DIR.iterdir() if p.is_dir()} | set(SCORE_MODULES))
        raise ValueError(f"no metric {name!r} in {METRICS_DIR} (there are: {', '.join(known)})")
    return evaluate.load(str(path), config_name=name if name in SCORE_MODULES else None)


def score_generations(predictions: Sequence[str], references: Sequence[Sequence[str]],
                      metrics: Sequence[str] = TEXT_METRICS) -> dict[str, float]:
    """{"bleu", "chrf"} and/or {"rouge1", "rouge2", "rougeL"} of detokenized predictions, each with all the
    references of its example. BLEU and chrF are 0-100 (sacreBLEU's scale), ROUGE 0-1."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")
    references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    scores: dict[str, float] = {}
    for name in metrics:
        result = load_metric(name).compute(predictions=list(predictions), references=references)
        scores.update({key: result[key] for key in SCORES[name]})
    return scores
