"""Extractive QA on SQuAD v1.1: a sliding-window lexical-overlap baseline and a fine-tuned ScratchLM, one run.

Data: ../shared/data/squad-v1.1/dev-v1.1.json (the only SQuAD file here), split by article with
`scratchlm.training.data.qa.split_by_article`: the first 38 articles (8,582 questions) are the train part, the last
10 (1,988 questions) the test part; no context is in both. Everything is scored on the test part with the shipped
`squad` metric (exact match and F1 in percent).

Baseline (sliding-window lexical overlap, after the SQuAD paper's baseline, which follows MCTest's): context and
question are split into words (`\\w+` runs, lower-cased); the question's words minus stop words are its content
words, each weighted by its inverse count in the context, log(1 + 1/count). A candidate answer is any run of 1 to
`max_words` context words that holds no question word and neither starts nor ends with a stop word; its score is the
summed weight of the distinct question words found within w words on either side of it, summed over the widths
w = 1, 2, 4, ... up to `window` (so nearer matches count more). The best candidate wins (ties: the shorter, then the
earlier). `max_words` and `window` are tuned on the train part. (The paper's
candidates are parse-tree constituents; there is no parser here, so every short word run is a candidate.)

ScratchLM: a base pretrained by `scratchlm-pretrain` within the run on the train part's contexts plus
WikiText-2 valid+test (no test-part text), or the directory given with --base; then `scratchlm-finetune --task qa`
on the train part (full fine-tuning, no validation split), which scores the test part itself (the same windows and
n-best span decoding as `answer_question`). An intermediate task comes first (--cloze_per_paragraph 0: not): the
base is fine-tuned for --cloze_epochs on up to --cloze_per_paragraph (16) cloze questions per train-part paragraph
(`scratchlm.training.data.cloze`: an answer-like span of a sentence blanked with a wh-word), scored on the test part
too, and the result is fine-tuned on the real questions. --cloze_wikitext adds cloze questions from the paragraphs of
WikiText-2 valid+test (its spaced punctuation undone; a question or answer holding `<unk>` dropped).
The fine-tuned model's test part is then answered again with `--span_selection expected_f1` (the n-best span of
highest expected F1), a second ScratchLM row.

    python benchmarks/bench_qa.py                                    # baseline + pretrain + fine-tune
    python benchmarks/bench_qa.py --skip_model                       # the baseline only
    python benchmarks/bench_qa.py --base lm/ --epochs 2              # fine-tune an existing base
    python benchmarks/bench_qa.py --base lm/ --cloze_per_paragraph 0 # no cloze questions first
    python benchmarks/bench_qa.py --pretrain_steps 50 --train_questions 400 --epochs 1   # a smoke run

The README's figures: `--base <bench_finetune.py's base> --epochs 2 --learning_rate 5e-4` (1 h in all).
Results go to benchmarks/results/qa.json. Reference (SQuAD paper, Rajpurkar et al. 2016, full dev set): sliding
window 13.2 EM / 20.2 F1; logistic regression 40.0 EM / 51.0 F1.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from collections import Counter
from itertools import product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import wikitext_paragraphs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "qa.json"
SQUAD_PAPER_DEV = {"sliding_window": {"exact_match": 13.2, "f1": 20.2},
                   "logistic_regression": {"exact_match": 40.0, "f1": 51.0}}
MODEL = "hidden_size=256,intermediate_size=688,num_hidden_layers=4,num_attention_heads=4,num_key_value_heads=4," \
        "max_position_embeddings=512"
WORD = re.compile(r"\w+")
WINDOW_WIDTHS = [1, 2, 4, 8, 16, 32]
STOP_WORDS = frozenset("""a an the of in on at to for from by with and or but is are was were be been being what which
who whom whose when where why how did do does doing done has have had having that this these those it its as into
than then there their they them he she his her him i you we our your not no can could would should will shall may
might must about after before over under between during through also such other some any most more many much one
s""".split())


# --------------------------------------------------------------------------------------------------------- baseline


def overlap_features(question: str, context: str) -> dict:
    """What the baseline needs of one question, computed once for every setting tried."""
    words = [(m.group().lower(), m.start(), m.end()) for m in WORD.finditer(context)]
    question_words = {w.lower() for w in WORD.findall(question)} - STOP_WORDS
    counts = Counter(w for w, _, _ in words)
    lowered = np.array([w for w, _, _ in words] or [""])
    return {
        "spans": [(start, end) for _, start, end in words],
        # per question word found in the context: its weight and the running count of its occurrences
        "weights": [math.log(1 + 1 / counts[q]) for q in question_words if q in counts],
        "cumulative": [np.concatenate([[0], np.cumsum(lowered == q)]) for q in question_words if q in counts],
        "question_cumulative": np.concatenate([[0], np.cumsum([w in question_words for w, _, _ in words])]),
        "is_stop": np.array([w in STOP_WORDS for w, _, _ in words], dtype=bool),
    }


def sliding_window_answer(context: str, features: dict, max_words: int, window: int) -> str:
    """The baseline's answer (see the module docstring)."""
    n = len(features["spans"])
    best = (-1.0, 0, 0)
    for length in range(1, min(max_words, n) + 1):
        starts = np.arange(0, n - length + 1)
        ends = starts + length  # exclusive
        question_cumulative, is_stop = features["question_cumulative"], features["is_stop"]
        valid = (question_cumulative[ends] == question_cumulative[starts]) & ~is_stop[starts] & ~is_stop[ends - 1]
        scores = np.zeros(len(starts))
        for width in WINDOW_WIDTHS[:WINDOW_WIDTHS.index(window) + 1]:
            low, high = np.maximum(starts - width, 0), np.minimum(ends + width, n)
            for weight, cumulative in zip(features["weights"], features["cumulative"]):
                scores += weight * ((cumulative[high] - cumulative[low]) > 0)
        scores[~valid] = -1.0
        index = int(np.argmax(scores))  # the earliest among equals; shorter runs are tried first
        if scores[index] > best[0]:
            best = (float(scores[index]), int(starts[index]), int(ends[index]))
    if best[0] < 0:
        return ""
    return context[features["spans"][best[1]][0]:features["spans"][best[2] - 1][1]]


def baseline_predictions(examples, prepared: dict, max_words: int, window: int) -> dict[str, dict]:
    return {row["id"]: {"text": sliding_window_answer(row["context"], prepared[row["id"]], max_words, window)}
            for row in examples}


def run_baseline(train, test, metric, tune_questions: int) -> dict:
    from scratchlm.training.data.qa import metric_inputs

    started = time.perf_counter()
    tuning = train.shuffle(seed=0).select(range(min(tune_questions, len(train))))
    prepared = {row["id"]: overlap_features(row["question"], row["context"]) for data in (tuning, test) for row in data}
    grid = {}
    for max_words, window in product((1, 2, 3, 4, 6, 8), WINDOW_WIDTHS[2:]):
        scores = metric.compute(**metric_inputs(baseline_predictions(tuning, prepared, max_words, window), tuning))
        grid[f"max_words={max_words},window={window}"] = scores
    best = max(grid, key=lambda key: grid[key]["f1"])
    max_words, window = (int(part.split("=")[1]) for part in best.split(","))
    predictions = baseline_predictions(test, prepared, max_words, window)
    scores = metric.compute(**metric_inputs(predictions, test))
    return {"test": scores, "max_words": max_words, "window": window, "tuning_questions": len(tuning),
            "tuning_grid_f1": {key: round(value["f1"], 2) for key, value in grid.items()},
            "wall_s": round(time.perf_counter() - started, 1),
            "examples": [{"question": row["question"], "prediction": predictions[row["id"]]["text"],
                          "answers": row["answers"]["text"]} for row in test.select(range(3))]}


# --------------------------------------------------------------------------------------------------------- ScratchLM


def pretrain_base(train, workdir: Path, steps: int, vocab_size: int) -> tuple[Path, dict]:
    """A base pretrained by `scratchlm-pretrain` on the train part's contexts and WikiText-2 valid+test."""
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "squad-train-contexts.txt").write_text("\n\n".join(dict.fromkeys(train["context"])) + "\n",
                                                     encoding="utf-8")
    files = [str(corpus / "squad-train-contexts.txt")]
    files += [str(DATA / "wikitext-2-partial" / name) for name in ("valid.txt", "test.txt")]
    output = workdir / "base"
    command = [sys.executable, "-m", "scratchlm.training.pretrain", "--train_files", *files, "--preset", "small",
               "--config_overrides", MODEL, "--tokenizer_vocab_size", str(vocab_size), "--block_size", "256",
               "--max_steps", str(steps), "--per_device_train_batch_size", "16", "--eval_steps", str(max(steps, 1)),
               "--save_steps", str(max(steps, 1)), "--output_dir", str(output), "--report_to", "none",
               "--num_samples", "0"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    minutes = (time.perf_counter() - started) / 60
    record = json.loads((output / "scratchlm_run.json").read_text())
    return output, {"steps": steps, "minutes": round(minutes, 1), "tokens": steps * 16 * 256,
                    "metrics": {k: v for k, v in record.get("metrics", {}).items() if k.startswith("eval_")}}


def write_jsonl(path: Path, examples) -> str:
    columns = ("id", "title", "context", "question", "answers")
    path.write_text("".join(json.dumps({key: row[key] for key in columns}, ensure_ascii=False) + "\n"
                            for row in examples), encoding="utf-8")
    return str(path)


def finetune_qa(model: Path, train_file: str, test_file: str, output: Path, epochs: float, args) -> Path:
    """`scratchlm-finetune --task qa` of `model` on `train_file` (full, no validation split), scored on `test_file`."""
    command = [sys.executable, "-m", "scratchlm.training.finetune", "--task", "qa", "--model_name_or_path", str(model),
               "--train_files", train_file, "--test_files", test_file, "--validation_split_fraction", "0",
               "--eval_strategy", "no", "--save_strategy", "no", "--evaluate_before_training", "false",
               "--max_length", str(args.max_length), "--num_train_epochs", str(epochs),
               "--learning_rate", str(args.learning_rate), "--per_device_train_batch_size", str(args.batch_size),
               "--lr_scheduler_type", "linear", "--warmup_steps", "0.05", "--seed", str(args.seed),
               *(["--config_overrides", args.config_overrides] if args.config_overrides else []),
               "--report_to", "none", "--overwrite_output", "--output_dir", str(output)]
    subprocess.run(command, check=True)
    return output


def score_with_span_selection(model_dir: Path, test, metric, span_selection: str) -> dict:
    """EM and F1 of the fine-tuned model on `test` with answers chosen by `span_selection` (same windows)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from scratchlm.inference.qa import predict_answers
    from scratchlm.training.data.qa import metric_inputs

    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    predictions = predict_answers(model, tokenizer, test, span_selection=span_selection)
    scores = metric.compute(**metric_inputs(predictions, test))
    return {"exact_match": scores["exact_match"], "f1": scores["f1"]}


def run_scratchlm(train, test, metric, args) -> dict:
    """Pretrain (unless --base), then `scratchlm-finetune --task qa` on the train part, scored on the test part."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.train_questions:
        train = train.shuffle(seed=args.seed).select(range(min(args.train_questions, len(train))))
    if args.base:
        base, pretraining = Path(args.base), {"given": args.base}
        if (record := base / "scratchlm_run.json").is_file():  # what the given base was trained on, for the report
            base_record = json.loads(record.read_text())
            pretraining.update(minutes=round((base_record.get("training_time_s") or 0) / 60, 1),
                               train_tokens=base_record.get("train_tokens"), metrics=base_record.get("metrics", {}))
    else:
        base, pretraining = pretrain_base(train, workdir, args.pretrain_steps, args.vocab_size)
    test_file = write_jsonl(workdir / "test.jsonl", test)
    cloze = {}
    if args.cloze_per_paragraph:  # the intermediate task: cloze questions from the train part's paragraphs first
        from scratchlm.training.data.cloze import cloze_questions

        paragraphs = list(dict.fromkeys(zip(train["title"], train["context"])))
        rows = cloze_questions(paragraphs, per_paragraph=args.cloze_per_paragraph, seed=args.seed)
        if args.cloze_wikitext:  # more paragraphs of Wikipedia; a question or answer holding `<unk>` is dropped
            wiki = cloze_questions([("WikiText-2", text) for text in wikitext_paragraphs()],
                                   per_paragraph=args.cloze_per_paragraph, seed=args.seed)
            wiki = [row for row in wiki if "<unk>" not in row["question"] + row["answers"]["text"][0]]
            rows += [{**row, "id": f"wiki-{row['id']}"} for row in wiki]
        started = time.perf_counter()
        base = finetune_qa(base, write_jsonl(workdir / "cloze.jsonl", rows), test_file, workdir / "qa-cloze",
                           args.cloze_epochs, args)
        metrics = json.loads((base / "scratchlm_run.json").read_text())["metrics"]
        cloze = {"questions": len(rows), "wikitext": args.cloze_wikitext, "epochs": args.cloze_epochs,
                 "wall_s": round(time.perf_counter() - started, 1),
                 "examples": [row["question"] + " -> " + row["answers"]["text"][0] for row in rows[:5]],
                 "test_before_squad": {"exact_match": metrics["test_exact_match"], "f1": metrics["test_f1"]}}
        print(f"[cloze] {json.dumps(cloze)}", flush=True)
    started = time.perf_counter()
    output = finetune_qa(base, write_jsonl(workdir / "train.jsonl", train), test_file, workdir / "qa", args.epochs,
                         args)
    wall = time.perf_counter() - started
    record = json.loads((output / "scratchlm_run.json").read_text())
    metrics = record["metrics"]
    return {"test": {"exact_match": metrics["test_exact_match"], "f1": metrics["test_f1"]},
            "test_expected_f1_selection": score_with_span_selection(output, test, metric, "expected_f1"),
            "pretraining": pretraining, "cloze": cloze, "train_questions": len(train), "finetune_wall_s": round(wall, 1),
            "training_time_s": record.get("training_time_s"), "train_loss": metrics.get("train_loss"),
            "qa_settings": record.get("qa"), "data_report": record.get("data_report"), "output_dir": str(output)}


# ---------------------------------------------------------------------------------------------------------- report


def describe_base(pretraining: dict) -> str:
    if "given" in pretraining:
        bits = pretraining.get("metrics", {}).get("eval_bits_per_byte")
        return pretraining["given"] + (f" ({pretraining['minutes']} min, {bits:.2f} bits/byte)" if bits else "")
    bits = pretraining["metrics"].get("eval_bits_per_byte")
    return (f"{pretraining['steps']} steps, {pretraining['tokens']:,} tokens, {pretraining['minutes']} min"
            + (f", {bits:.2f} bits/byte" if bits is not None else ""))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DATA / "squad-v1.1" / "dev-v1.1.json"))
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--tune_questions", type=int, default=2000, help="Train-part questions tuning the baseline.")
    parser.add_argument("--skip_model", action="store_true", help="Only the baseline.")
    parser.add_argument("--base", help="A pretrained ScratchLM directory (default: pretrain one here).")
    parser.add_argument("--pretrain_steps", type=int, default=1500)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--train_questions", type=int, default=None, help="Fine-tune on at most this many.")
    parser.add_argument("--test_questions", type=int, default=None, help="Score at most this many (smoke runs).")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_length", type=int, default=384)
    parser.add_argument("--config_overrides", default=None,
                        help="Config fields changed for fine-tuning, e.g. hidden_dropout=0.1,attention_dropout=0.1.")
    parser.add_argument("--cloze_per_paragraph", type=int, default=16,
                        help="Fine-tune on up to this many cloze questions per train-part paragraph first (0: not).")
    parser.add_argument("--cloze_epochs", type=float, default=1.0)
    parser.add_argument("--cloze_wikitext", action="store_true",
                        help="Cloze questions from WikiText-2 valid+test's paragraphs too (those without <unk>).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/scratchlm-bench-qa")
    parser.add_argument("--output", default=str(RESULTS), help="Where the JSON results go.")
    args = parser.parse_args(argv)

    import evaluate

    from scratchlm.training.data.qa import check_answers, load_squad, split_by_article

    examples, report = check_answers(load_squad(args.data), "dev")
    train, test = split_by_article(examples, args.test_fraction)
    if args.test_questions:
        test = test.select(range(min(args.test_questions, len(test))))
    metric = evaluate.load(str(ROOT / "training" / "metrics" / "squad"))
    print(f"SQuAD v1.1 dev split by article: {len(train):,} train / {len(test):,} test questions "
          f"({len(set(train['title']))} / {len(set(test['title']))} articles); "
          f"bad answers skipped: {report.bad_answers}")
    results = {"data": {"train_questions": len(train), "test_questions": len(test),
                        "test_articles": sorted(set(test["title"]))},
               "squad_paper_full_dev": SQUAD_PAPER_DEV}
    results["baseline"] = run_baseline(train, test, metric, args.tune_questions)
    if not args.skip_model:
        results["scratchlm"] = run_scratchlm(train, test, metric, args)

    print(f"\n{'system (test part)':<44} {'EM':>6} {'F1':>6}  wall")
    baseline = results["baseline"]
    name = f"sliding-window overlap ({baseline['max_words']} words, window {baseline['window']})"
    print(f"{name:<44}"
          f" {baseline['test']['exact_match']:6.1f} {baseline['test']['f1']:6.1f}  {baseline['wall_s']:.0f} s")
    if "scratchlm" in results:
        model = results["scratchlm"]
        print(f"{'ScratchLM fine-tuned (' + str(model['train_questions']) + ' questions)':<44}"
              f" {model['test']['exact_match']:6.1f} {model['test']['f1']:6.1f}  "
              f"{model['finetune_wall_s']:.0f} s fine-tuning; base: {describe_base(model['pretraining'])}")
        chosen = model["test_expected_f1_selection"]
        print(f"{'  the same, --span_selection expected_f1':<44} {chosen['exact_match']:6.1f} {chosen['f1']:6.1f}")
    for name, scores in SQUAD_PAPER_DEV.items():
        print(f"{'SQuAD paper ' + name.replace('_', ' ') + ' (full dev)':<44} {scores['exact_match']:6.1f} "
              f"{scores['f1']:6.1f}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {output}")
    return results


if __name__ == "__main__":
    main()
