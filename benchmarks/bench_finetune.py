"""Fine-tuning figures: a small model pretrained here, then SST-2 full vs LoRA, Chinese sentiment, and SFT.

1. Pretrain with `scratchlm-pretrain` a small ScratchLM (4 layers, 256 wide, 8k-token tokenizer) on a mixed corpus:
   WikiText-2 valid+test, tinyshakespeare, the SST-2 *training* sentences (no labels) and the review texts of the
   waimai_10k training split (so the tokenizer and the model see Chinese). No SST-2 dev/test sentence and no
   rt-polarity text (SST-2 is drawn from rt-polarity) is pretrained on.
2. SST-2 (sentence level, binary; 6,920 / 872 / 1,821), one epoch of full fine-tuning and one of LoRA, side by
   side: test accuracy and F1, trainable parameters, peak memory (resident set of the run's process: model, data
   and Python included) and wall time. Reference: a CNN trained from scratch with random word vectors, 82.7 %
   (Kim, 2014, "CNN-rand").
3. Chinese sentiment: waimai_10k (11,987 delivery reviews), 80/10/10 split with a fixed seed; one epoch of full
   fine-tuning on the first 4,000 training reviews.
4. SFT with LoRA (one epoch) on instruction-llms-from-scratch (935 train / 110 test / 55 validation, in file
   order): held-out (test) loss on the replies before and after, and a few sample answers.

Each run is a `scratchlm-finetune` process of its own (so peak memory is per run). Results go to
benchmarks/results/finetune.json; the runs to --workdir.

    python benchmarks/bench_finetune.py [--workdir /tmp/scratchlm-bench-finetune] [--pretrain_steps 300]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "finetune.json"
KIM_2014_CNN_RAND = {"sst2_accuracy": 0.827, "rt_polarity_accuracy": 0.761}
MODEL = "hidden_size=256,intermediate_size=688,num_hidden_layers=4,num_attention_heads=4,num_key_value_heads=4," \
        "max_position_embeddings=512"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def sst2_split(name: str) -> list[dict]:
    """`stsa.binary.*` lines are "L sentence" (L = 0 negative, 1 positive)."""
    lines = (DATA / "sst2-sentences" / f"stsa.binary.{name}").read_text(encoding="utf-8").splitlines()
    return [{"label": int(line[0]), "text": line[2:].strip()} for line in lines if line.strip()]


def waimai_splits(seed: int = 0) -> dict[str, list[dict]]:
    import csv

    with open(DATA / "waimai_10k" / "waimai_10k.csv", encoding="utf-8") as handle:
        rows = [{"label": int(row["label"]), "text": row["review"]} for row in csv.DictReader(handle)]
    random.Random(seed).shuffle(rows)
    cut1, cut2 = int(0.8 * len(rows)), int(0.9 * len(rows))
    return {"train": rows[:cut1], "dev": rows[cut1:cut2], "test": rows[cut2:]}


def paragraphs(path: Path) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]


def pretraining_corpus(workdir: Path, waimai_train: list[dict]) -> str:
    wikitext = DATA / "wikitext-2-partial"
    documents = paragraphs(wikitext / "valid.txt") + paragraphs(wikitext / "test.txt")
    documents += paragraphs(DATA / "tinyshakespeare" / "input.txt")
    documents += [row["text"] for row in sst2_split("train")]
    documents += [row["text"] for row in waimai_train]
    random.Random(0).shuffle(documents)
    return write_jsonl(workdir / "corpus" / "corpus.jsonl", [{"text": text} for text in documents])


def run(module: str, args: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.run([sys.executable, "-m", module, *args], stdout=handle, stderr=subprocess.STDOUT,
                                 check=False)
    if process.returncode != 0:
        raise SystemExit(f"{module} failed; see {log}:\n" + "\n".join(log.read_text().splitlines()[-30:]))
    return time.perf_counter() - started


def finetune(name: str, workdir: Path, base: Path, args: list[str]) -> dict:
    output = workdir / name
    seconds = run("scratchlm.training.finetune", [
        "--model_name_or_path", str(base), "--output_dir", str(output), "--overwrite_output", "--report_to", "none",
        "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "50", *args,
    ], workdir / f"{name}.log")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/scratchlm-bench-finetune")
    parser.add_argument("--pretrain_steps", type=int, default=300)
    parser.add_argument("--output", default=str(RESULTS))
    options = parser.parse_args()
    workdir = Path(options.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict = {"reference": {"kim_2014_cnn_rand": KIM_2014_CNN_RAND}}

    # Data, as files scratchlm-finetune reads (jsonl with text/label columns; Alpaca json).
    sst2 = {split: write_jsonl(workdir / "sst2" / f"{split}.jsonl", sst2_split(split))
            for split in ("train", "dev", "test")}
    waimai = waimai_splits()
    waimai_files = {split: write_jsonl(workdir / "waimai" / f"{split}.jsonl", rows) for split, rows in waimai.items()}
    instructions = json.loads((DATA / "instruction-llms-from-scratch" / "instruction-data.json").read_text())
    sft = {name: write_jsonl(workdir / "sft" / f"{name}.jsonl", rows) for name, rows in
           (("train", instructions[:935]), ("test", instructions[935:1045]), ("validation", instructions[1045:]))}

    # 1. Pretraining (reused when --workdir already holds a finished one).
    base = workdir / "pretrained"
    if not (base / "scratchlm_run.json").is_file():
        corpus = pretraining_corpus(workdir, waimai["train"])
        run("scratchlm.training.pretrain", [
            "--train_files", corpus, "--preset", "small", "--config_overrides", MODEL, "--tokenizer_vocab_size",
            "8192", "--block_size", "256", "--per_device_train_batch_size", "16", "--max_steps",
            str(options.pretrain_steps), "--learning_rate", "2e-3", "--validation_fraction", "0.02",
            "--eval_strategy", "no", "--save_strategy", "no", "--num_samples", "0", "--report_to", "none",
            "--disable_tqdm", "true", "--logging_steps", "50", "--output_dir", str(base), "--overwrite_output",
            "--data_cache_dir", str(workdir / "cache"),
        ], workdir / "pretrain.log")
    pretrained = json.loads((base / "scratchlm_run.json").read_text())
    steps, batch = pretrained["global_step"], pretrained["hyperparameters"]["total_train_batch_size"]
    results["pretraining"] = {
        "training_time_s": pretrained["training_time_s"], "num_parameters": pretrained["num_parameters"],
        "steps": steps, "tokens_seen": steps * batch * 256, "train_tokens": pretrained.get("train_tokens"),
        "eval_loss": round(pretrained["metrics"]["eval_loss"], 4),
        "eval_bits_per_byte": round(pretrained["metrics"].get("eval_bits_per_byte", float("nan")), 4),
    }
    print(f"[pretraining] {json.dumps(results['pretraining'])}", flush=True)

    # 2. SST-2, full vs LoRA.
    classification = ["--train_files", sst2["train"], "--validation_files", sst2["dev"], "--test_files", sst2["test"],
                      "--class_names", "negative", "positive", "--max_length", "128", "--language", "en",
                      "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128",
                      "--evaluate_before_training", "false"]
    results["sst2"] = {
        "full": finetune("sst2-full", workdir, base, [
            *classification, "--method", "full", "--num_train_epochs", "1", "--learning_rate", "2e-4"]),
        "lora": finetune("sst2-lora", workdir, base, [
            *classification, "--method", "lora", "--num_train_epochs", "1", "--learning_rate", "2e-3",
            "--lora_r", "16", "--lora_alpha", "32"]),
    }

    # 3. Chinese sentiment.
    results["waimai_10k"] = finetune("waimai-full", workdir, base, [
        "--train_files", waimai_files["train"], "--validation_files", waimai_files["dev"],
        "--test_files", waimai_files["test"], "--max_length", "128", "--language", "zh",
        "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "128", "--num_train_epochs", "1", "--learning_rate", "2e-4",
        "--evaluate_before_training", "false", "--max_train_documents", "4000",
    ])

    # 4. SFT with LoRA: test loss before and after.
    results["sft"] = finetune("sft-lora", workdir, base, [
        "--task", "sft", "--method", "lora", "--train_files", sft["train"], "--validation_files", sft["validation"],
        "--test_files", sft["test"], "--max_length", "512", "--per_device_train_batch_size", "8",
        "--num_train_epochs", "1", "--learning_rate", "2e-3", "--lora_r", "16", "--lora_alpha", "32",
        "--num_samples", "3", "--sample_max_new_tokens", "40",
    ])

    results["total_wall_time_s"] = round(time.perf_counter() - started, 1)
    Path(options.output).parent.mkdir(parents=True, exist_ok=True)
    Path(options.output).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"results in {options.output} ({results['total_wall_time_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
