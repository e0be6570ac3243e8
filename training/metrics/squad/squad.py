"""SQuAD: exact match and F1 of extracted answers, as the official SQuAD evaluation scripts compute them.

A local `evaluate` metric module shipped with ScratchLM, so it loads offline by path:
`evaluate.load("/path/to/scratchlm/training/metrics/squad")`. It takes the inputs of the Hub's `squad` metric and
returns the same keys (`exact_match`, `f1`, in percent). For SQuAD 2.0 data a reference may have no answers (an
unanswerable question): then only the empty prediction is right, as in the official v2.0 script, and the result
adds `has_answer_exact_match`/`has_answer_f1`, `no_answer_exact_match`/`no_answer_f1` and their counts.
"""

import datasets
import evaluate

# The official script's normalisation and F1, in the module that decodes answers too (so that its expected-F1 span
# selection maximises what is scored here).
from scratchlm.modeling.span_decoding import exact_match_score, f1_score, normalize_answer

_DESCRIPTION = """Exact match: the share of questions whose normalised prediction equals a normalised reference
answer. F1: the best token-overlap F1 against the reference answers, averaged over questions. Normalisation lower-cases,
removes punctuation, the articles a/an/the and extra whitespace (the official SQuAD evaluation script)."""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of dict): {"id": str, "prediction_text": str} per question ("" for no answer).
    references (list of dict): {"id": str, "answers": {"text": list of str, "answer_start": list of int}}.
Returns:
    exact_match (float): in percent.
    f1 (float): in percent.
    (with unanswerable references) has_answer_exact_match, has_answer_f1, has_answer_total, no_answer_exact_match,
    no_answer_f1, no_answer_total.
Example:
    >>> metric = evaluate.load("path/to/metrics/squad")
    >>> metric.compute(predictions=[{"id": "1", "prediction_text": "the Broncos"}],
    ...                references=[{"id": "1", "answers": {"text": ["Denver Broncos"], "answer_start": [0]}}])
    {'exact_match': 0.0, 'f1': 66.66666666666666}
"""
_CITATION = """@inproceedings{rajpurkar-etal-2016-squad, title={{SQ}u{AD}: 100,000+ Questions for Machine
Comprehension of Text}, author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
booktitle={Proceedings of EMNLP}, pages={2383--2392}, year={2016}}"""

@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {
                    "id": datasets.Value("string"),
                    "answers": datasets.Sequence({"text": datasets.Value("string"),
                                                  "answer_start": datasets.Value("int32")}),
                },
            }),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references):
        predicted = {p["id"]: p["prediction_text"] for p in predictions}
        scores = {"has_answer": [], "no_answer": []}
        for reference in references:
            if reference["id"] not in predicted:
                raise ValueError(f"no prediction for question {reference['id']!r}")
            answers = [text for text in reference["answers"]["text"] if normalize_answer(text)] or [""]
            prediction = predicted[reference["id"]]
            kind = "has_answer" if answers != [""] else "no_answer"
            scores[kind].append((max(exact_match_score(prediction, a) for a in answers),
                                 max(f1_score(prediction, a) for a in answers)))
        every = scores["has_answer"] + scores["no_answer"]
        if not every:
            return {"exact_match": 0.0, "f1": 0.0}
        result = {"exact_match": 100 * sum(s[0] for s in every) / len(every),
                  "f1": 100 * sum(s[1] for s in every) / len(every)}
        if scores["no_answer"]:
            for kind, kind_scores in scores.items():
                count = len(kind_scores)
                result[f"{kind}_exact_match"] = 100 * sum(s[0] for s in kind_scores) / count if count else 0.0
                result[f"{kind}_f1"] = 100 * sum(s[1] for s in kind_scores) / count if count else 0.0
                result[f"{kind}_total"] = count
        return result
