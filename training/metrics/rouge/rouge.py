"""ROUGE-1, ROUGE-2 and ROUGE-L F-measures with several references: per example the best over its references,
then the mean over examples (as SciTLDR's paper scores its TL;DRs).

A local `evaluate` metric module shipped with ScratchLM, so it loads offline by path:
`evaluate.load("/path/to/scratchlm/training/metrics/rouge")`. Scores come from Google's `rouge_score` (the
reference implementation's tokenization: lowercased, non-alphanumerics removed; Porter stemming by default).
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_DESCRIPTION = "ROUGE-1/2/L F1 (Lin, 2004), the best over each example's references, averaged over examples; 0-1."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): one summary per example.
    references (list of list of str): the reference summaries of each example (at least one).
    use_stemmer (bool): Porter-stem words before matching (default True).
Returns:
    rouge1, rouge2, rougeL (float): mean over examples of the best F-measure over that example's references.
Example:
    >>> metric = evaluate.load("path/to/metrics/rouge")
    >>> metric.compute(predictions=["a cat sat"], references=[["a dog ran", "a cat sat"]])["rouge1"]
    1.0
"""
_CITATION = """@inproceedings{lin-2004-rouge, title={{ROUGE}: A Package for Automatic Evaluation of Summaries},
author={Lin, Chin-Yew}, booktitle={Text Summarization Branches Out}, year={2004}, pages={74--81}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions, references, use_stemmer=True):
        if not predictions:
            raise ValueError("no predictions to score")
        if any(not refs for refs in references):
            raise ValueError("every prediction needs at least one reference")
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
        totals = dict.fromkeys(ROUGE_TYPES, 0.0)
        for prediction, refs in zip(predictions, references):
            scores = [scorer.score(ref, prediction) for ref in refs]
            for rouge_type in ROUGE_TYPES:
                totals[rouge_type] += max(score[rouge_type].fmeasure for score in scores)
        return {rouge_type: total / len(predictions) for rouge_type, total in totals.items()}
