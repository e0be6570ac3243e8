"""Preference tuning (DPO) of the instruction benchmark's SFT model, side by side with its SFT parent, one run.

- Base: the directory given with --base, or one pretrained here with `scratchlm-pretrain` on English text
  (`bench_finetune.english_text`: WikiText-2 valid+test, tinyshakespeare, SciTLDR, Multi30k, SQuAD contexts, the
  instruction data), cached in --workdir by its settings.
- SFT parent: the directory given with --sft, or the instruction benchmark's recipe (as in bench_finetune.py):
  `scratchlm-finetune --task sft --method lora --merge` on instruction-llms-from-scratch, 935 train / 110 test /
  55 validation rows in file order; the merged model is the parent.
- Pairs: for every train / validation / test row, prompt = the row as the SFT model saw it (the chat template's user
  turn), chosen = the reference reply, rejected = the SFT model's own sampled reply (temperature 0.8, top-k 50,
  seeded). Empty samples and samples equal to the reference are left out (the data checks would skip them).
- DPO: `scratchlm-finetune --task dpo` from the parent on the train pairs (validation pairs evaluated, test pairs
  tested by the command itself).
- Held-out report, on the test pairs, for the parent and the DPO model: the reply loss (mean negative log-likelihood
  per reference-reply token, what SFT's test loss measures), the log-probability preference accuracy (share of
  pairs whose chosen reply has the higher summed log-probability) and mean log-probability margin, and the DPO
  reward accuracy and margin as TRL measures them against the parent (both 0 for the parent by construction).

    python benchmarks/bench_dpo.py                                   # pretrain, SFT, pairs, DPO: the full run
    python benchmarks/bench_dpo.py --sft runs/sft/merged             # DPO from an existing SFT model
    python benchmarks/bench_dpo.py --smoke                           # minutes: tiny base, few rows and steps

Results go to benchmarks/results/dpo[-TAG].json and a Markdown table is printed. Timings on a shared CPU are
inflated and noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import english_text, run, write_jsonl  # noqa: E402

import scratchlm  # noqa: E402,F401 - registers ScratchLM with the Auto classes
from scratchlm.training.data import alpaca_to_messages, tokenize_conversations  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SPLITS = {"train": slice(0, 935), "test": slice(935, 1045), "validation": slice(1045, 1100)}  # the book's split
SMOKE = {"preset": "tiny", "model": "", "vocab_size": 2048, "pretrain_steps": 60, "pretrain_batch": 16,
         "corpus_documents": 3000, "sft_steps": 40, "train_pairs": 96, "held_out_pairs": 32, "max_new_tokens": 32,
         "dpo_steps": 24, "dpo_lr": 5e-5, "batch_size": 8}


# --- the models -------------------------------------------------------------------------------------------------

def base_model(workdir: Path, options) -> Path:
    """The pretrained base, cached by its settings."""
    key = (f"{options.preset}-{options.model}-v{options.vocab_size}-b{options.pretrain_batch}x{options.block_size}-"
           f"s{options.pretrain_steps}-d{options.corpus_documents}")
    base = workdir / "bases" / re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)
    if not (base / "scratchlm_run.json").is_file():
        documents = english_text()[:options.corpus_documents or None]
        corpus = write_jsonl(workdir / "corpus" / f"english-{len(documents)}.jsonl", [{"text": t} for t in documents])
        base.parent.mkdir(parents=True, exist_ok=True)
        run("scratchlm.training.pretrain", [
            "--train_files", corpus, "--preset", options.preset,
            *(["--config_overrides", options.model] if options.model else []),
            "--tokenizer_vocab_size", str(options.vocab_size), "--block_size", str(options.block_size),
            "--per_device_train_batch_size", str(options.pretrain_batch), "--max_steps", str(options.pretrain_steps),
            "--learning_rate", "2e-3", "--validation_fraction", "0.01", "--eval_strategy", "no",
            "--save_strategy", "no", "--num_samples", "0", "--report_to", "none", "--disable_tqdm", "true",
            "--logging_steps", "25", "--output_dir", str(base), "--overwrite_output",
            "--data_cache_dir", str(workdir / "cache"),
        ], base.parent / f"{base.name}.log")
    return base


def finetune(name: str, workdir: Path, model: Path, args: list[str]) -> tuple[Path, dict]:
    """A `scratchlm-finetune` process; (its output directory, its metrics)."""
    output = workdir / "runs" / name
    output.parent.mkdir(parents=True, exist_ok=True)
    seconds = run("scratchlm.training.finetune", [
        "--model_name_or_path", str(model), "--output_dir", str(output), "--overwrite_output", "--report_to", "none",
        "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "10", *args,
    ], output.parent / f"{name}.log")
    metrics = json.loads((output / "metrics.json").read_text())
    print(f"[{name}] {seconds:.0f} s, train_loss {metrics.get('train_loss', float('nan')):.4f}", flush=True)
    return output, metrics


def sft_model(workdir: Path, base: Path, rows: dict[str, list[dict]], options) -> Path:
    files = {split: write_jsonl(workdir / "data" / "sft" / f"{split}.jsonl", split_rows)
             for split, split_rows in rows.items()}
    output, _ = finetune("sft", workdir, base, [
        "--task", "sft", "--method", "lora", "--merge", "--train_files", files["train"], "--validation_files",
        files["validation"], "--test_files", files["test"], "--max_length", str(options.max_length),
        "--per_device_train_batch_size", str(options.batch_size), "--learning_rate", "2e-3", "--lora_r", "16",
        "--lora_alpha", "32", "--num_samples", "0", "--evaluate_before_training", "false",
        *(["--max_steps", str(options.sft_steps)] if options.sft_steps else ["--num_train_epochs", "1"]),
    ])
    return output / "merged"


# --- pairs ------------------------------------------------------------------------------------------------------

def prompt_messages(row: dict) -> list[dict]:
    return alpaca_to_messages(row["instruction"], row["input"], row["output"])[:-1]


@torch.no_grad()
def sampled_replies(model_dir: Path, prompts: list[list[dict]], options) -> list[str]:
    """The SFT model's own reply to each prompt (sampled, seeded), generated in left-padded batches."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    replies = []
    set_seed(options.seed)
    for start in range(0, len(prompts), 16):
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 for p in prompts[start:start + 16]]
        inputs = tokenizer(texts, return_tensors="pt", padding=True)
        output = model.generate(**inputs, max_new_tokens=options.max_new_tokens, do_sample=True, temperature=0.8,
                                top_k=50, pad_token_id=tokenizer.pad_token_id)
        replies += tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [reply.strip() for reply in replies]


def preference_pairs(model_dir: Path, rows: list[dict], options) -> list[dict]:
    prompts = [prompt_messages(row) for row in rows]
    rejected = sampled_replies(model_dir, prompts, options)
    return [{"prompt": prompt, "chosen": [{"role": "assistant", "content": row["output"]}],
             "rejected": [{"role": "assistant", "content": reply}]}
            for prompt, row, reply in zip(prompts, rows, rejected)
            if reply and reply != row["output"].strip()]


# --- held-out figures -------------------------------------------------------------------------------------------

@torch.no_grad()
def reply_log_probs(model, tokenizer, chats: list[list[dict]], max_length: int) -> tuple[list[float], list[int]]:
    """Summed log-probability and token count of each chat's assistant reply (closing eos included)."""
    data, _ = tokenize_conversations(chats, tokenizer, max_length=max_length, split="held-out")
    if len(data) != len(chats):
        raise SystemExit(f"{len(chats) - len(data)} held-out chats have no reply within {max_length} tokens")
    sums, counts = [], []
    for example in data:
        ids = torch.tensor([example["input_ids"]])
        labels = torch.tensor(example["labels"][1:])
        log_probs = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
        mask = labels != -100
        sums.append(log_probs[mask].gather(-1, labels[mask, None]).sum().item())
        counts.append(int(mask.sum()))
    return sums, counts


def held_out_figures(model_dir: Path, pairs: list[dict], max_length: int) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    chosen, chosen_tokens = reply_log_probs(model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs], max_length)
    rejected, _ = reply_log_probs(model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs], max_length)
    return {
        "reply_loss": round(-sum(chosen) / sum(chosen_tokens), 4),
        "logp_preference_accuracy": round(sum(c > r for c, r in zip(chosen, rejected)) / len(pairs), 4),
        "logp_margin": round(sum(c - r for c, r in zip(chosen, rejected)) / len(pairs), 4),
    }


def table(results: dict) -> str:
    lines = ["| model | held-out reply loss | log-p preference accuracy | log-p margin (nats) | DPO reward accuracy "
             "| DPO reward margin |", "|---|---:|---:|---:|---:|---:|"]
    for name in ("sft_parent", "dpo"):
        row = results[name]
        # The parent is the reference: its implicit reward is 0 by definition (what TRL measures is float noise).
        rewards = ("0 (the reference)", "0") if name == "sft_parent" else \
            (f"{row['reward_accuracy']:.3f}", f"{row['reward_margin']:.4f}")
        lines.append(f"| {name} | {row['reply_loss']:.4f} | {row['logp_preference_accuracy']:.3f} | "
                     f"{row['logp_margin']:.2f} | {rewards[0]} | {rewards[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/scratchlm-bench-dpo")
    parser.add_argument("--tag", default="")
    parser.add_argument("--base", help="A pretrained ScratchLM directory (default: pretrain one here).")
    parser.add_argument("--sft", help="An SFT model directory (default: fine-tune the base here).")
    parser.add_argument("--smoke", action="store_true", help=f"A few minutes' run: {SMOKE}.")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--model", default="hidden_size=256,intermediate_size=688,num_hidden_layers=4,"
                                           "num_attention_heads=4,num_key_value_heads=4,max_position_embeddings=512")
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--pretrain_batch", type=int, default=32)
    parser.add_argument("--pretrain_steps", type=int, default=400)
    parser.add_argument("--corpus_documents", type=int, default=0, help="Pretrain on the first N documents (0: all).")
    parser.add_argument("--sft_steps", type=int, default=0, help="SFT optimizer steps (0: one epoch).")
    parser.add_argument("--train_pairs", type=int, default=0, help="DPO on the first N training rows (0: all 935).")
    parser.add_argument("--held_out_pairs", type=int, default=0, help="At most N test and validation rows (0: all).")
    parser.add_argument("--max_new_tokens", type=int, default=64, help="Length of the sampled (rejected) replies.")
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--method", choices=("full", "lora"), default="full")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--dpo_lr", type=float, default=5e-6)
    parser.add_argument("--dpo_steps", type=int, default=0, help="DPO optimizer steps (0: one epoch).")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    if options.smoke:
        explicit = {a.lstrip("-").split("=")[0] for a in sys.argv[1:] if a.startswith("--")}
        for key, value in SMOKE.items():
            if key not in explicit:
                setattr(options, key, value)
    workdir = Path(options.workdir)
    torch.manual_seed(options.seed)
    started = time.perf_counter()

    instructions = json.loads((DATA / "instruction-llms-from-scratch" / "instruction-data.json").read_text())
    rows = {split: instructions[part] for split, part in SPLITS.items()}
    base = Path(options.base) if options.base else (None if options.sft else base_model(workdir, options))
    parent = Path(options.sft) if options.sft else sft_model(workdir, base, rows, options)
    limits = {"train": options.train_pairs, "validation": options.held_out_pairs, "test": options.held_out_pairs}
    pairs = {split: preference_pairs(parent, rows[split][:limits[split] or None], options) for split in rows}
    files = {split: write_jsonl(workdir / "data" / "dpo" / f"{split}.jsonl", split_pairs)
             for split, split_pairs in pairs.items()}
    print(f"pairs (rows whose sample is empty or equals the reference left out): "
          f"{ {split: len(p) for split, p in pairs.items()} }", flush=True)
    dpo_dir, dpo_metrics = finetune(f"dpo-{options.method}", workdir, parent, [
        "--task", "dpo", "--method", options.method, "--train_files", files["train"], "--validation_files",
        files["validation"], "--test_files", files["test"], "--max_length", str(options.max_length), "--beta",
        str(options.beta), "--learning_rate", str(options.dpo_lr), "--per_device_train_batch_size",
        str(options.batch_size), "--per_device_eval_batch_size", str(options.batch_size), "--num_samples", "0",
        *(["--max_steps", str(options.dpo_steps)] if options.dpo_steps else ["--num_train_epochs", "1"]),
        *(["--merge"] if options.method == "lora" else []),
    ])
    dpo_model = dpo_dir / "merged" if options.method == "lora" else dpo_dir

    results = {
        "settings": vars(options), "base": str(base) if base else None, "sft_parent_dir": str(parent),
        "pairs": {split: len(p) for split, p in pairs.items()},
        "sft_parent": {**held_out_figures(parent, pairs["test"], options.max_length),
                       "reward_accuracy_measured": dpo_metrics.get("test_rewards/accuracies_before", math.nan),
                       "reward_margin_measured": dpo_metrics.get("test_rewards/margins_before", math.nan),
                       "dpo_loss": dpo_metrics.get("test_loss_before", math.nan)},
        "dpo": {**held_out_figures(dpo_model, pairs["test"], options.max_length),
                "reward_accuracy": dpo_metrics["test_rewards/accuracies"],
                "reward_margin": dpo_metrics["test_rewards/margins"], "dpo_loss": dpo_metrics["test_loss"]},
        "dpo_metrics": dpo_metrics,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"dpo{'-' + options.tag if options.tag else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nHeld-out pairs (test split, {len(pairs['test'])}); DPO {options.method}, beta {options.beta}\n")
    print(table(results))
    print(f"\n{path}; {results['wall_time_s']:.0f} s in all (shared CPU: timings inflated and noisy)")


if __name__ == "__main__":
    main()
