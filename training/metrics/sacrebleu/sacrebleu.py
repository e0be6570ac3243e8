"""sacreBLEU: corpus BLEU and chrF on detokenized, cased text, with one or several references per hypothesis.

A local `evaluate` metric module shipped with ScratchLM, so it loads offline by path:
`evaluate.load("/path/to/scratchlm/training/metrics/sacrebleu")`. The BLEU is the one the `sacrebleu` command line
prints for the same hypothesis and reference files (default 13a tokenization, exponential smoothing, cased).
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU, CHRF

_DESCRIPTION = "sacreBLEU corpus BLEU and chrF (Post, 2018) on detokenized text; 0-100 like the sacrebleu tool."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): detokenized hypotheses, one per segment.
    references (list of list of str): the references of each segment (any number, at least one).
    lowercase (bool): score case-insensitively (default False: cased).
    tokenize (str): sacreBLEU tokenizer for BLEU ("13a" default, "intl", "zh", "char", "none", ...).
Returns:
    bleu (float), chrf (float): corpus scores, 0-100.
    bleu_signature, chrf_signature (str): sacreBLEU's signatures, for reporting.
    precisions (list of float), brevity_penalty (float), sys_len (int), ref_len (int): BLEU's parts.
Example:
    >>> metric = evaluate.load("path/to/metrics/sacrebleu")
    >>> metric.compute(predictions=["the cat sat"], references=[["the cat sat"]])["bleu"]
    100.00000000000004
"""
_CITATION = """@inproceedings{post-2018-call, title={A Call for Clarity in Reporting {BLEU} Scores},
author={Post, Matt}, booktitle={Proceedings of the Third Conference on Machine Translation}, year={2018},
pages={186--191}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions, references, lowercase=False, tokenize=None):
        if any(not refs for refs in references):
            raise ValueError("every prediction needs at least one reference")
        # sacreBLEU takes reference *streams*; a segment with fewer references gets None in the missing streams.
        width = max(len(refs) for refs in references)
        streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]
        bleu = BLEU(lowercase=lowercase, tokenize=tokenize)
        bleu_score = bleu.corpus_score(predictions, streams)
        chrf = CHRF(lowercase=lowercase)
        chrf_score = chrf.corpus_score(predictions, streams)
        return {
            "bleu": bleu_score.score,
            "chrf": chrf_score.score,
            "precisions": list(bleu_score.precisions),
            "brevity_penalty": bleu_score.bp,
            "sys_len": bleu_score.sys_len,
            "ref_len": bleu_score.ref_len,
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
        }
