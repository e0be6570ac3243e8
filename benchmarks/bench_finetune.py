"""Fine-tuning figures: sentiment (English and Chinese) side by side with the classic baselines, and SFT.

One run, the same splits for every row:

- Data. SST-2 sentence level (6,920 / 872 / 1,821, the standard split); waimai_10k and ChnSentiCorp shuffled with
  random.Random(0) and cut 80/10/10 (train/dev/test), training on the first --zh_train_rows training rows
  (waimai: 4,000 as in ../shared/docs/baselines.md).
- Baselines (benchmarks/classic_baselines.py): the majority class, and TF-IDF + logistic regression with C chosen
  on dev only (word 1-2-grams for English, character 1-3-grams for Chinese).
- ScratchLM: a base pretrained here with `scratchlm-pretrain` for --pretrain_steps on English text that is neither
  SST dev/test nor rt-polarity (SST-2 is drawn from rt-polarity): WikiText-2 valid+test, tinyshakespeare, SciTLDR,
  Multi30k English, the SQuAD contexts of bench_qa.py's train part (so the same base serves `bench_qa.py --base`),
  the instruction data, the SST-2 *training* sentences (unlabelled); and on
  the training reviews of waimai_10k and ChnSentiCorp (unlabelled). Then per data set: full fine-tuning, LoRA, and
  the same shape from random initialisation (`scratchlm-init`, fine-tuned with the full recipe: "from scratch").
  Test accuracy and macro-F1 (dev accuracy too: choose on dev), wall time, and the base's budget (tokens, minutes).
- SFT with LoRA on instruction-llms-from-scratch (935 / 110 / 55 in file order): test loss on the replies.

Each run is a `scratchlm-finetune` process of its own (--parallel of them at once). The base is cached in
--workdir (keyed by its settings) and so is every finished run (keyed by its arguments), so recipe variants reuse
them: `--tasks sst2 --runs full --full_lr 1e-4 --tag lr1e-4`; `--base DIR` fine-tunes a base pretrained elsewhere.
Results go to benchmarks/results/finetune[-TAG].json and a Markdown table is printed. The figures in the README
came from (quiet 2-core CPU; the base alone took 24 minutes):

    python benchmarks/bench_finetune.py --tasks sst2 waimai chnsenticorp --preset small \
        --model hidden_size=256,intermediate_size=688,num_hidden_layers=4,num_attention_heads=4,num_key_value_heads=4,max_position_embeddings=512 \
        --block_size 256 --pretrain_batch 16 --pretrain_steps 2000 --pretrain_lr 1e-3 --epochs 3 --full_lr 1e-3 \
        --lora_lr 1e-3 --lora_r 8 --lora_alpha 16 --pooling last --zh_max_length 256 --threads 1 --parallel 2

The default --zh_max_length is now 512 (the base's context): 8 % of the ChnSentiCorp reviews are longer than 256
tokens, and full fine-tuning measured 87.6 % test accuracy at 512 against 86.1 % at 256 (`--tag zh512`).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classic_baselines import majority_class, tfidf_logistic_regression  # noqa: E402

from scratchlm.model_cards.run_record import RUN_SETTINGS_FILE  # noqa: E402
from scratchlm.training.data.qa import load_squad, split_by_article  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
KIM_2014_CNN_RAND = {"sst2_accuracy": 0.827, "rt_polarity_accuracy": 0.761}
SENTIMENT = ("sst2", "waimai", "chnsenticorp")
RUNS = ("full", "lora", "scratch")


# --- data -------------------------------------------------------------------------------------------------------

def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def sst2_splits() -> dict[str, list[dict]]:
    """`stsa.binary.*` lines are "L sentence" (L = 0 negative, 1 positive)."""
    def split(name: str) -> list[dict]:
        lines = (DATA / "sst2-sentences" / f"stsa.binary.{name}").read_text(encoding="utf-8").splitlines()
        return [{"label": int(line[0]), "text": line[2:].strip()} for line in lines if line.strip()]

    return {"train": split("train"), "dev": split("dev"), "test": split("test")}


def shuffled_80_10_10(path: Path, text_column: str, train_rows: int | None, seed: int = 0) -> dict[str, list[dict]]:
    """A csv of label,text rows shuffled with random.Random(seed), cut 80/10/10; the first `train_rows` train."""
    with open(path, encoding="utf-8") as handle:
        rows = [{"label": int(row["label"]), "text": row[text_column]} for row in csv.DictReader(handle)
                if (row[text_column] or "").strip()]
    random.Random(seed).shuffle(rows)
    cut1, cut2 = int(0.8 * len(rows)), int(0.9 * len(rows))
    return {"train": rows[:cut1][:train_rows], "dev": rows[cut1:cut2], "test": rows[cut2:]}


def sentiment_data(zh_train_rows: int | None) -> dict[str, dict[str, list[dict]]]:
    return {
        "sst2": sst2_splits(),
        "waimai": shuffled_80_10_10(DATA / "waimai_10k" / "waimai_10k.csv", "review", zh_train_rows),
        "chnsenticorp": shuffled_80_10_10(DATA / "chnsenticorp" / "ChnSentiCorp_htl_all.csv", "review", zh_train_rows),
    }


LANGUAGE = {"sst2": "en", "waimai": "zh", "chnsenticorp": "zh"}


def paragraphs(path: Path) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]


def english_text() -> list[str]:
    """English pretraining documents: nothing from SST dev/test or rt-polarity."""
    documents = paragraphs(DATA / "wikitext-2-partial" / "valid.txt") + paragraphs(DATA / "wikitext-2-partial" /
                                                                                   "test.txt")
    documents += paragraphs(DATA / "tinyshakespeare" / "input.txt")
    for name in ("train", "dev", "test"):
        for line in (DATA / "scitldr-a" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            documents.append(" ".join(json.loads(line)["source"]))
    with gzip.open(DATA / "multi30k" / "train.en.gz", "rt", encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    documents += [" ".join(lines[i:i + 20]) for i in range(0, len(lines), 20)]
    # SQuAD contexts of bench_qa.py's train part only, so the same base can be fine-tuned for QA (--base there).
    squad_train, _ = split_by_article(load_squad(str(DATA / "squad-v1.1" / "dev-v1.1.json")))
    documents += list(dict.fromkeys(squad_train["context"]))
    for row in json.loads((DATA / "instruction-llms-from-scratch" / "instruction-data.json").read_text()):
        documents.append("\n".join(filter(None, (row["instruction"], row["input"], row["output"]))))
    return documents


def alpaca_bilingual_text() -> list[str]:
    """The 10,000 Alpaca instructions of alpaca-chinese-bilingual, the Chinese and the English version of each."""
    documents = []
    for path in sorted((DATA / "alpaca-chinese-bilingual" / "data_v3").glob("*.json")):
        for row in json.loads(path.read_text(encoding="utf-8")):
            for language in ("zh", "en"):
                fields = (row.get(f"{language}_{field}", "") for field in ("instruction", "input", "output"))
                documents.append("\n".join(filter(None, fields)))
    return [document for document in documents if document.strip()]


def pretraining_corpus(path: Path, data: dict[str, dict[str, list[dict]]], more_text: bool = False) -> str:
    documents = english_text()
    documents += [row["text"] for row in sst2_splits()["train"]]  # training sentences, no labels
    # --more_text: every training review (not only the first --zh_train_rows) and the bilingual instructions
    reviews = sentiment_data(None) if more_text else data
    for name in ("waimai", "chnsenticorp"):
        documents += [row["text"] for row in reviews[name]["train"]]
    if more_text:
        documents += alpaca_bilingual_text()
    random.Random(0).shuffle(documents)
    return write_jsonl(path, [{"text": text} for text in documents])


# --- runs -------------------------------------------------------------------------------------------------------

THREADS: dict[str, str] = {}  # OMP_NUM_THREADS of every process (--threads)


def run(module: str, args: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.run([sys.executable, "-m", module, *args], stdout=handle, stderr=subprocess.STDOUT,
                                 check=False, env={**os.environ, **THREADS})
    if process.returncode != 0:
        raise SystemExit(f"{module} failed; see {log}:\n" + "\n".join(log.read_text().splitlines()[-30:]))
    return time.perf_counter() - started


def finetune_arguments(name: str, workdir: Path, base: Path, args: list[str]) -> tuple[Path, list[str]]:
    """The output directory and the whole `scratchlm-finetune` command line of the run `name`."""
    output = workdir / "runs" / name
    return output, ["--model_name_or_path", str(base), "--output_dir", str(output), "--overwrite_output",
                    "--report_to", "none", "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm", "true",
                    "--logging_steps", "50", *args]


def refuse_overwriting(name: str, workdir: Path, base: Path, args: list[str]) -> None:
    """A finished run of this name made with other arguments is kept: stop before anything runs."""
    output, args = finetune_arguments(name, workdir, base, args)
    done = output.parent / f"{name}.done.json"
    if not done.is_file() or (previous := json.loads(done.read_text())["args"]) == args:
        return

    def flags(arguments: list[str]) -> dict[str, str]:
        values: dict[str, list[str]] = {}
        for argument in arguments:
            if argument.startswith("--"):
                flag = values.setdefault(argument, [])
            else:
                flag.append(argument)
        return {flag: " ".join(value) for flag, value in values.items()}

    before, now = flags(previous), flags(args)
    changed = ", ".join(f"{flag} {before.get(flag, '(unset)')!r} -> {now.get(flag, '(unset)')!r}"
                        for flag in dict.fromkeys([*before, *now]) if before.get(flag) != now.get(flag))
    raise SystemExit(f"run {name} in {output} was made with other arguments ({changed}): give this variant "
                     f"another --tag, or delete {done} to run it again")


def finetune(name: str, workdir: Path, base: Path, args: list[str]) -> dict:
    """One `scratchlm-finetune` process; a finished run with the same arguments is reused (its time included)."""
    output, args = finetune_arguments(name, workdir, base, args)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = output.parent / f"{name}.done.json"
    if done.is_file() and json.loads(done.read_text())["args"] == args:
        seconds = json.loads(done.read_text())["wall_time_s"]
    else:
        seconds = run("scratchlm.training.finetune", args, output.parent / f"{name}.log")
        done.write_text(json.dumps({"args": args, "wall_time_s": seconds}))
    record = json.loads((output / "scratchlm_run.json").read_text())
    metrics = record["metrics"]
    summary = {
        "wall_time_s": round(seconds, 1),
        "training_time_s": record["training_time_s"],
        "trainable_parameters": record["trainable_parameters"],
        "num_parameters": record["num_parameters"],
        "peak_memory_mb": metrics["peak_memory_mb"],
        "epochs": metrics.get("epoch"),
        "train_loss": metrics.get("train_loss"),
    }
    summary.update({k: round(v, 4) for k, v in metrics.items()
                    if k.startswith(("eval_", "test_")) and not k.endswith(("_runtime", "_per_second", "_time"))})
    if record.get("samples"):
        summary["samples"] = record["samples"]
    print(f"[{name}] {json.dumps({k: v for k, v in summary.items() if k != 'samples'})}", flush=True)
    return summary


def base_settings(options) -> str:
    """What the base is cached by: its shape, tokenizer, budget and corpus."""
    return f"{options.preset}-{options.model}-v{options.vocab_size}{'-tok' if options.tokenizer else ''}-" \
           f"b{options.pretrain_batch}x{options.block_size}-s{options.pretrain_steps}-lr{options.pretrain_lr}" \
           f"{'-more' if options.more_text else ''}" \
           f"{'' if options.zh_train_rows == 4000 else f'-zh{options.zh_train_rows}'}"  # its corpus has those reviews


def base_directory(workdir: Path, options) -> Path:
    """Where the base is (--base) or will be cached, known before it is pretrained."""
    if options.base:
        return Path(options.base)
    return workdir / "bases" / re.sub(r"[^A-Za-z0-9_.=-]+", "_", base_settings(options))


def base_model(workdir: Path, options, data) -> tuple[Path, dict]:
    """The pretrained base (cached by its settings, or --base) and its budget."""
    base = base_directory(workdir, options)
    if options.base:
        return base, budget_of(base, options.base)
    shape, key = options.model, base_settings(options)
    if not (base / "scratchlm_run.json").is_file():
        corpus = pretraining_corpus(workdir / "corpus" / "corpus.jsonl", data, options.more_text)
        base.parent.mkdir(parents=True, exist_ok=True)
        run("scratchlm.training.pretrain", [
            "--train_files", corpus, "--preset", options.preset, *(["--config_overrides", shape] if shape else []),
            *(["--tokenizer_name_or_path", options.tokenizer] if options.tokenizer else
              ["--tokenizer_vocab_size", str(options.vocab_size)]), "--block_size", str(options.block_size),
            "--per_device_train_batch_size", str(options.pretrain_batch), "--max_steps", str(options.pretrain_steps),
            "--learning_rate", str(options.pretrain_lr), "--validation_fraction", "0.01",
            "--eval_strategy", "no", "--save_strategy", "no", "--num_samples", "0", "--report_to", "none",
            "--disable_tqdm", "true", "--logging_steps", "25", "--output_dir", str(base), "--overwrite_output",
            "--data_cache_dir", str(workdir / "cache"),
        ], base.parent / f"{base.name}.log")
    return base, budget_of(base, key)


def budget_of(base: Path, settings: str) -> dict:
    """What a base cost and reached, from its `scratchlm-pretrain` run record and settings."""
    record = json.loads((base / "scratchlm_run.json").read_text())
    steps, batch = record["global_step"], record["hyperparameters"]["total_train_batch_size"]
    block_size = (json.loads((base / RUN_SETTINGS_FILE).read_text()).get("data.block_size")
                  or json.loads((base / "config.json").read_text())["max_position_embeddings"])  # its default
    return {
        "settings": settings, "num_parameters": record["num_parameters"], "steps": steps,
        "tokens_seen": steps * batch * block_size,
        "corpus_train_tokens": record.get("train_tokens"),
        "pretraining_minutes": round(record["training_time_s"] / 60, 1),
        "eval_loss": round(record["metrics"].get("eval_loss", float("nan")), 4),
        "eval_bits_per_byte": round(record["metrics"].get("eval_bits_per_byte", float("nan")), 4),
    }


def random_init_directory(workdir: Path, tokenizer: Path | str, options) -> Path:
    tokenizer_key = hashlib.sha1(str(Path(tokenizer).resolve()).encode()).hexdigest()[:12]  # names stay short
    return workdir / "bases" / re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"random-init-{options.preset}-{options.model}-"
                                                                  f"{tokenizer_key}")


def random_init(workdir: Path, tokenizer: Path | str, options) -> Path:
    """A randomly initialised model of the base's shape with the base's tokenizer (`scratchlm-init`, seed 42)."""
    scratch = random_init_directory(workdir, tokenizer, options)
    if not (scratch / "config.json").is_file():
        process = subprocess.run([
            sys.executable, "-c", "from scratchlm.modeling.cli import init_main; init_main()",
            "--preset", options.preset, *(["--config_overrides", options.model] if options.model else []),
            "--tokenizer_name_or_path", str(tokenizer), "--output_dir", str(scratch), "--overwrite_output",
        ], capture_output=True, text=True, check=False)
        if process.returncode != 0:
            raise SystemExit(f"scratchlm-init failed:\n{process.stdout}{process.stderr}")
    return scratch


def baselines(name: str, splits: dict[str, list[dict]]) -> dict:
    """The majority class and TF-IDF + logistic regression (C chosen on dev), scored on test."""
    english = LANGUAGE[name] == "en"
    started = time.perf_counter()
    result = {
        "majority_class": majority_class(splits["train"], splits["test"]),
        "tfidf_logistic_regression": tfidf_logistic_regression(
            splits["train"], splits["dev"], splits["test"], analyzer="word" if english else "char",
            ngram_range=(1, 2) if english else (1, 3)),
    }
    result["tfidf_logistic_regression"]["wall_time_s"] = round(time.perf_counter() - started, 1)
    print(f"[{name} baselines] {json.dumps(result)}", flush=True)
    return result


def scratchlm_runs(name: str, splits: dict[str, list[dict]], workdir: Path, base: Path, scratch: Path,
                   options) -> dict[str, tuple[str, Path, list[str]]]:
    """The ScratchLM runs of one data set: {row: (run name, model, scratchlm-finetune arguments)}."""
    files = {split: write_jsonl(workdir / "data" / name / f"{split}.jsonl", rows) for split, rows in splits.items()}
    english = LANGUAGE[name] == "en"
    common = ["--train_files", files["train"], "--validation_files", files["dev"], "--test_files", files["test"],
              "--max_length", str(options.max_length if english else options.zh_max_length),
              "--language", LANGUAGE[name], "--per_device_train_batch_size", str(options.batch_size),
              "--per_device_eval_batch_size", "128", "--evaluate_before_training", "false",
              "--num_train_epochs", str(options.epochs), "--seed", str(options.seed),
              *(["--classifier_pooling", options.pooling] if options.pooling else []), *options.extra]
    full = ["--method", "full", "--learning_rate", str(options.full_lr)]
    lora = ["--method", "lora", "--learning_rate", str(options.lora_lr), "--lora_r", str(options.lora_r),
            "--lora_alpha", str(options.lora_alpha)]
    models = {"full": (base, full), "lora": (base, lora), "scratch": (scratch, full)}
    return {run_name: (f"{name}-{run_name}{options.tag and '-' + options.tag}",
                               models[run_name][0], [*common, *models[run_name][1]])
                    for run_name in options.runs}


def sft(workdir: Path, base: Path) -> dict:
    instructions = json.loads((DATA / "instruction-llms-from-scratch" / "instruction-data.json").read_text())
    files = {name: write_jsonl(workdir / "data" / "sft" / f"{name}.jsonl", rows) for name, rows in
             (("train", instructions[:935]), ("test", instructions[935:1045]), ("validation", instructions[1045:]))}
    return finetune("sft-lora", workdir, base, [
        "--task", "sft", "--method", "lora", "--train_files", files["train"], "--validation_files",
        files["validation"], "--test_files", files["test"], "--max_length", "512", "--per_device_train_batch_size",
        "8", "--num_train_epochs", "1", "--learning_rate", "2e-3", "--lora_r", "16", "--lora_alpha", "32",
        "--num_samples", "3", "--sample_max_new_tokens", "40",
    ])


# --- report -----------------------------------------------------------------------------------------------------

def table(results: dict) -> str:
    budget = results.get("pretraining")
    lines = [f"Base: {budget['num_parameters']:,} parameters, {budget['tokens_seen']:,} tokens seen in "
             f"{budget['pretraining_minutes']} min of pretraining ({budget['steps']} steps; eval bits/byte "
             f"{budget['eval_bits_per_byte']})." if budget else "No pretrained base in this run.", "",
             "| data | model | dev acc | test acc | test macro-F1 | wall time |", "|---|---|---|---|---|---|"]
    for name in SENTIMENT:
        if name not in results:
            continue
        result = results[name]
        if "tfidf_logistic_regression" in result:
            baseline = result["tfidf_logistic_regression"]
            lines.append(f"| {name} | majority class | | {result['majority_class']['accuracy']:.1%} | "
                         f"{result['majority_class']['macro_f1']:.3f} | |")
            lines.append(f"| {name} | TF-IDF {baseline['analyzer']} {baseline['ngram_range']} + LR "
                         f"(C={baseline['C']}) | {baseline['dev_accuracy']:.1%} | {baseline['accuracy']:.1%} | "
                         f"{baseline['macro_f1']:.3f} | {baseline['wall_time_s']} s |")
        for run_name, label in (("full", "ScratchLM pretrained + full FT"), ("lora", "ScratchLM pretrained + LoRA"),
                                ("scratch", "ScratchLM from scratch (random init, full FT)")):
            if run_name in result:
                row = result[run_name]
                lines.append(f"| {name} | {label} | {row.get('eval_accuracy', float('nan')):.1%} | "
                             f"{row['test_accuracy']:.1%} | {row['test_macro_f1']:.3f} | {row['wall_time_s']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/scratchlm-bench-finetune")
    parser.add_argument("--tasks", nargs="+", default=[*SENTIMENT, "sft"], choices=[*SENTIMENT, "sft"])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS, help="ScratchLM rows per data set.")
    parser.add_argument("--parallel", type=int, default=1, help="Fine-tuning processes at once.")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS of each process. On a machine shared with other work 1 is much faster "
                             "(measured here: 1.9 s per SST-2 step with 1 thread, 14.8 s with 2, at load ~15 on 2 "
                             "cores).")
    parser.add_argument("--skip_baselines", action="store_true", help="ScratchLM rows only (recipe variants).")
    parser.add_argument("--tag", default="", help="Names this variant's runs and results file.")
    # the base
    parser.add_argument("--base", default=None, help="A base made by scratchlm-pretrain, used instead of "
                                                     "pretraining one.")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--model", default="", help="--config_overrides of the base's shape (on --preset).")
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--tokenizer", default=None, help="A tokenizer for the base (default: one trained on its "
                                                          "corpus, --vocab_size tokens).")
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--pretrain_batch", type=int, default=32)
    parser.add_argument("--pretrain_steps", type=int, default=400)
    parser.add_argument("--pretrain_lr", type=float, default=2e-3)
    parser.add_argument("--more_text", action="store_true",
                        help="Pretrain on more text: every training review of waimai_10k and ChnSentiCorp (not only "
                             "the first --zh_train_rows) and the 10,000 instructions of alpaca-chinese-bilingual in "
                             "both languages.")
    # the fine-tuning recipe
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--full_lr", type=float, default=1e-3,
                        help="(scratchlm-finetune's default for classification)")
    parser.add_argument("--lora_lr", type=float, default=1e-3)
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--lora_alpha", type=float, default=16)
    parser.add_argument("--pooling", choices=("last", "mean"), default=None,
                        help="--classifier_pooling of every run (default: scratchlm-finetune's).")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--zh_max_length", type=int, default=512)
    parser.add_argument("--zh_train_rows", type=int, default=4000,
                        help="Train on the first N training rows of the Chinese sets (0: all of them).")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="Further scratchlm-finetune options for every sentiment run (last on the line).")
    options = parser.parse_args()
    if options.base and not (Path(options.base) / "scratchlm_run.json").is_file():
        parser.error(f"--base {options.base} is not a scratchlm-pretrain output directory (no scratchlm_run.json)")
    workdir = Path(options.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict = {"reference": {"kim_2014_cnn_rand": KIM_2014_CNN_RAND}, "options": vars(options)}

    if options.threads:
        THREADS["OMP_NUM_THREADS"] = str(options.threads)
    data = sentiment_data(options.zh_train_rows or None)
    tasks = [name for name in SENTIMENT if name in options.tasks]
    # Where the base and the random-init model are (or will be) is known up front, so every run is planned, and a
    # finished run that a variant would overwrite stops the script, before the base is pretrained.
    base = base_directory(workdir, options)
    scratch = random_init_directory(workdir, options.tokenizer or base, options)
    planned = {name: scratchlm_runs(name, data[name], workdir, base, scratch, options) for name in tasks}
    for runs in planned.values():
        for run_name, model, args in runs.values():
            refuse_overwriting(run_name, workdir, model, args)
    # The from-scratch row needs only the tokenizer, when one is given.
    if {"full", "lora"} & set(options.runs) or "sft" in options.tasks or not options.tokenizer:
        base, results["pretraining"] = base_model(workdir, options, data)
        print(f"[pretraining] {json.dumps(results['pretraining'])}", flush=True)
    if "scratch" in options.runs:
        random_init(workdir, options.tokenizer or base, options)
    jobs = {}
    for name in tasks:
        results[name] = {"sizes": {split: len(rows) for split, rows in data[name].items()}}
        if not options.skip_baselines:
            jobs[(name, "baselines")] = (baselines, name, data[name])
        for row, (run_name, model, args) in planned[name].items():
            jobs[(name, row)] = (finetune, run_name, workdir, model, args)
    # Several jobs at once when asked (their wall times then share the CPUs).
    with ThreadPoolExecutor(max_workers=options.parallel) as pool:
        futures = {key: pool.submit(*job) for key, job in jobs.items()}
        for (name, row), future in futures.items():
            if row == "baselines":
                results[name].update(future.result())
            else:
                results[name][row] = future.result()
    if "sft" in options.tasks:
        results["sft"] = sft(workdir, base)

    results["total_wall_time_s"] = round(time.perf_counter() - started, 1)
    output = RESULTS / f"finetune{options.tag and '-' + options.tag}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print("\n" + table(results))
    print(f"\nresults in {output} ({results['total_wall_time_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
