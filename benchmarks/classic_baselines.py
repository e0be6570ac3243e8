"""The classic text-classification baselines a fine-tuned ScratchLM must beat, computed on the same splits.

TF-IDF n-grams (word 1-2-grams for English, character 1-3-grams for Chinese) with sublinear tf and a logistic
regression whose C is chosen on dev only (0.5 to 8), then scored once on test — the protocol of
../shared/docs/baselines.md. Also the majority-class rate, the floor every classifier must clear.
"""

from __future__ import annotations

import time
from collections import Counter

C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0)


def _scores(references, predictions) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(references, predictions)),
            "macro_f1": float(f1_score(references, predictions, average="macro"))}


def majority_class(train: list[dict], test: list[dict]) -> dict[str, float]:
    label = Counter(row["label"] for row in train).most_common(1)[0][0]
    return _scores([row["label"] for row in test], [label] * len(test))


def tfidf_logistic_regression(train: list[dict], dev: list[dict], test: list[dict], *, analyzer: str = "word",
                              ngram_range: tuple[int, int] = (1, 2)) -> dict:
    """Rows are {"text", "label"}; returns test accuracy and macro-F1, the C picked on dev and the seconds taken."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=ngram_range, sublinear_tf=True)
    features = {name: (vectorizer.fit_transform if name == "train" else vectorizer.transform)(
        [row["text"] for row in rows]) for name, rows in (("train", train), ("dev", dev), ("test", test))}
    labels = {name: [row["label"] for row in rows] for name, rows in (("train", train), ("dev", dev), ("test", test))}
    best_c, best_dev = None, -1.0
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000).fit(features["train"], labels["train"])
        accuracy = _scores(labels["dev"], model.predict(features["dev"]))["accuracy"]
        if accuracy > best_dev:
            best_c, best_dev = c, accuracy
    model = LogisticRegression(C=best_c, max_iter=2000).fit(features["train"], labels["train"])
    result = _scores(labels["test"], model.predict(features["test"]))
    return {**result, "dev_accuracy": best_dev, "C": best_c, "analyzer": analyzer, "ngram_range": list(ngram_range),
            "seconds": round(time.perf_counter() - started, 2)}
