"""F1 for classification (binary, or averaged over classes: macro, micro, weighted).

A local `evaluate` metric module shipped with ScratchLM, so it loads offline by path:
`evaluate.load("/path/to/scratchlm/training/metrics/f1")`.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = "F1 = 2 * precision * recall / (precision + recall), the harmonic mean of precision and recall."
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
    f1 (float, or a list of floats when average=None): between 0 and 1.
Example:
    >>> metric = evaluate.load("path/to/metrics/f1")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], average="macro")
"""
_CITATION = """@article{scikit-learn, title={Scikit-learn: Machine Learning in {P}ython},
author={Pedregosa, F. and others}, journal={Journal of Machine Learning Research}, volume={12},
pages={2825--2830}, year={2011}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None,
                 zero_division=0):
        score = f1_score(references, predictions, labels=labels, pos_label=pos_label, average=average,
                    sample_weight=sample_weight, zero_division=zero_division)
        return {"f1": score.tolist() if average is None else float(score)}
