"""The Chinese quick start's classification baseline: character 1-3-gram TF-IDF + logistic regression on exactly the
split `scratchlm-finetune` makes of ChnSentiCorp (the same `--validation_split_fraction` and seed), so its accuracy
stands next to the fine-tuned model's `eval_accuracy`. The C of the regression is picked on the last 10% of the
training rows; the majority-class rate of the training labels is reported beside it.

    python benchmarks/bench_zh_baseline.py [--data ../shared/data/chnsenticorp/ChnSentiCorp_htl_all.csv]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from classic_baselines import tfidf_logistic_regression

from scratchlm.training.arguments import FinetuneDataArguments
from scratchlm.training.data import load_splits

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/chnsenticorp/ChnSentiCorp_htl_all.csv"))
    parser.add_argument("--validation_split_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)  # scratchlm-finetune's default --seed
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/zh_baseline.json"))
    args = parser.parse_args()
    data_args = FinetuneDataArguments(train_files=[args.data], text_column="review",
                                      validation_split_fraction=args.validation_split_fraction)
    train, validation, _ = load_splits(data_args, seed=args.seed)
    rows = {name: [{"text": row["review"], "label": row["label"]} for row in split if row["review"]]
            for name, split in (("train", train), ("validation", validation))}
    cut = len(rows["train"]) * 9 // 10
    result = tfidf_logistic_regression(rows["train"][:cut], rows["train"][cut:], rows["validation"],
                                       analyzer="char", ngram_range=(1, 3))
    majority = Counter(row["label"] for row in rows["train"]).most_common(1)[0][0]
    result["majority_rate"] = sum(row["label"] == majority for row in rows["validation"]) / len(rows["validation"])
    result["rows"] = {name: len(split) for name, split in rows.items()}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
