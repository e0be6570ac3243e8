"""Precision, recall and F1 for classification (binary, or averaged over classes: macro, micro, weighted).

A local `evaluate` metric module shipped with ScratchLM, so it loads offline by path. Its config name picks the
scores: all three by default, or one of them ("precision", "recall", "f1"), as the Hub's separate metrics give it:
`evaluate.load("/path/to/scratchlm/training/metrics/precision_recall_f1", config_name="f1")`.
"""

import datasets
import evaluate
from sklearn.metrics import precision_recall_fscore_support

SCORES = ("precision", "recall", "f1")

_DESCRIPTION = """Precision = true positives / (true positives + false positives); recall = true positives /
(true positives + false negatives); F1 = 2 * precision * recall / (precision + recall), their harmonic mean."""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): reference label ids.
    labels (list of int): the labels to include (default: all that occur).
    pos_label (int): the positive class when average="binary" (default 1).
    average (str): "binary" (default: the positive class only), "macro" (unweighted mean over classes),
        "micro" (global counts), "weighted" (mean weighted by class frequency) or None (one score per class).
    sample_weight (list of float): optional per-example weights.
    zero_division (0, 1 or "warn"): the value when a denominator is zero (default 0).
Returns:
    precision, recall, f1 (each a float, or a list of floats when average=None, between 0 and 1): all three, or the
    one the config name names.
Example:
    >>> metric = evaluate.load("path/to/metrics/precision_recall_f1", config_name="f1")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], average="macro")
"""
_CITATION = """@article{scikit-learn, title={Scikit-learn: Machine Learning in {P}ython},
author={Pedregosa, F. and others}, journal={Journal of Machine Learning Research}, volume={12},
pages={2825--2830}, year={2011}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrecisionRecallF1(evaluate.Metric):
    def _info(self):
        if self.config_name not in ("default", *SCORES):
            raise KeyError(f"precision_recall_f1: unknown config name {self.config_name!r} (known: default, "
                           f"{', '.join(SCORES)})")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_recall_fscore_support.html"
            ],
        )

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None,
                 zero_division=0):
        scores = precision_recall_fscore_support(references, predictions, labels=labels, pos_label=pos_label,
                                                 average=average, sample_weight=sample_weight,
                                                 zero_division=zero_division)[:3]
        wanted = SCORES if self.config_name == "default" else (self.config_name,)
        return {name: score.tolist() if average is None else float(score)
                for name, score in zip(SCORES, scores) if name in wanted}
