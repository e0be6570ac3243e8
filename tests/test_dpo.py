"""scratchlm-finetune --task dpo: preference pairs read and checked, full and LoRA runs on TRL's DPOTrainer.

A tiny model (one layer, 64 wide, 128-token context) with a tokenizer trained on the instruction data stands in for
an SFT model; pairs prefer a row's own reply to another row's; every run takes a few optimizer steps.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

import scratchlm  # noqa: F401 - registers ScratchLM with the Auto classes
from scratchlm.modeling.initialization import init_model
from scratchlm.tokenization import train_tokenizer
from scratchlm.training import finetune as ft
from scratchlm.training.data.preferences import build_preference_data, preference_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

finetune_main = ft.main.__wrapped__  # the command without its console wrapper: user errors arrive as exceptions

CONTEXT = 128  # the tiny base's (conftest's tiny_sizes)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dpo")


@pytest.fixture(scope="module")
def instructions(data_dir) -> list[dict]:
    rows = json.loads((data_dir / "instruction-llms-from-scratch" / "instruction-data.json").read_text())
    return [row for row in rows if not row["input"] and len(row["output"]) < 120][:80]


@pytest.fixture(scope="module")
def base_dir(workdir, instructions, tiny_sizes) -> Path:
    tokenizer = train_tokenizer([f"{r['instruction']}\n{r['output']}" for r in instructions] * 3, vocab_size=500,
                                show_progress=False)
    model = init_model("tiny", dict(tiny_sizes), tokenizer, seed=0)
    path = workdir / "base"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(base_dir):
    return AutoTokenizer.from_pretrained(base_dir)


def plain_pairs(rows: list[dict]) -> list[dict]:
    """prompt/chosen/rejected strings: a row's own reply preferred to the next row's."""
    return [{"prompt": row["instruction"], "chosen": row["output"], "rejected": rows[(i + 1) % len(rows)]["output"]}
            for i, row in enumerate(rows)]


def chat_pairs(rows: list[dict]) -> list[dict]:
    """Whole conversations as chosen and rejected, no prompt column (the prompt is the shared first turn)."""
    return [{key: [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair[key]}]
             for key in ("chosen", "rejected")} for pair in plain_pairs(rows)]


@pytest.fixture(scope="module")
def pair_files(workdir, instructions) -> dict[str, str]:
    return {"train": write_jsonl(workdir / "train.jsonl", plain_pairs(instructions[:64])),
            "chat_train": write_jsonl(workdir / "chat_train.jsonl", chat_pairs(instructions[:64])),
            # Held-out here means evaluated, not unseen: a few steps of a tiny random model move the training pairs.
            "dev": write_jsonl(workdir / "dev.jsonl", plain_pairs(instructions[:64])[:16])}


def dpo_args(base_dir, output_dir, train, dev, *extra) -> list[str]:
    return ["--task", "dpo", "--model_name_or_path", str(base_dir), "--output_dir", str(output_dir),
            "--train_files", train, "--validation_files", dev, "--report_to", "none", "--max_steps", "4",
            "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--learning_rate", "1e-3",
            "--logging_steps", "1", "--disable_tqdm", "true", "--num_samples", "1", "--sample_max_new_tokens", "4",
            *extra]


def test_plain_and_chat_pairs_render_alike_and_bad_rows_are_counted(tokenizer, instructions, caplog):
    rows = plain_pairs(instructions[:6])
    table = Dataset.from_list([*rows,
                               {"prompt": "Say yes.", "chosen": "Yes.", "rejected": " Yes. "},   # identical
                               {"prompt": "Say yes.", "chosen": "Yes.", "rejected": None},       # missing
                               {"prompt": "", "chosen": "Yes.", "rejected": "No."},              # empty prompt
                               {"prompt": "word " * 200, "chosen": "Yes.", "rejected": "No."}])  # prompt too long
    with caplog.at_level(logging.WARNING, logger="scratchlm"):
        pairs, report = preference_pairs(table, tokenizer, split="train", max_length=CONTEXT, system_prompt="Be kind.")
    assert (report.rows, report.pairs, report.dropped_identical, report.dropped_missing,
            report.dropped_long_prompt) == (10, 6, 1, 2, 1)
    assert "skipped 2 of 10 rows with a missing or empty" in caplog.text
    assert pairs[0]["prompt"] == [{"role": "system", "content": "Be kind."},
                                  {"role": "user", "content": rows[0]["prompt"]}]
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": rows[0]["chosen"]}]
    # The same pairs as whole conversations without a prompt column come out the same (TRL's extract_prompt).
    chats = build_preference_data(Dataset.from_list(chat_pairs(instructions[:6])), None, None, tokenizer,
                                  max_length=CONTEXT, system_prompt="Be kind.").train
    assert chats.to_list() == pairs.to_list()


def test_no_usable_pair_and_missing_columns_are_clear_errors(tokenizer):
    useless = Dataset.from_list([{"prompt": "Hi", "chosen": "Same", "rejected": "Same"},
                                 {"prompt": "Hi", "chosen": "", "rejected": "No"}])
    with pytest.raises(ValueError, match=r"no usable train preference pair in 2 rows: 1 with a missing .* 1 with "
                                         r"identical replies"):
        preference_pairs(useless, tokenizer, split="train", max_length=CONTEXT)
    with pytest.raises(ValueError, match="needs 'chosen' and 'rejected' columns.*has: prompt, response"):
        preference_pairs(Dataset.from_list([{"prompt": "Hi", "response": "Yes"}]), tokenizer, split="train",
                         max_length=CONTEXT)
    with pytest.raises(ValueError, match=r"train row 0: 'chosen' must be a string or a list"):
        preference_pairs(Dataset.from_list([{"prompt": "Hi", "chosen": 3, "rejected": 4}]), tokenizer,
                         split="train", max_length=CONTEXT)


def test_a_beta_that_is_not_positive_is_refused_before_training(base_dir, pair_files, workdir):
    output = workdir / "dpo-negative"
    for beta in ("-1", "0", "nan"):
        with pytest.raises(ValueError, match=rf"^--beta must be a positive number .*, got {beta}"):
            finetune_main(dpo_args(base_dir, output, pair_files["train"], pair_files["dev"], "--beta", beta))
    assert not output.exists()


def test_dpo_full_run_records_reward_metrics(base_dir, pair_files, workdir):
    output = workdir / "dpo-full"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finetune_main(dpo_args(base_dir, output, pair_files["train"], pair_files["dev"], "--report_to", "tensorboard"))
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]  # TRL reads it at every step
    record = json.loads((output / "scratchlm_run.json").read_text())
    metrics = json.loads((output / "metrics.json").read_text())
    assert record["task"] == "text-generation" and record["global_step"] == 4
    assert record["data_report"]["train"]["pairs"] == 64
    # Before training the policy is its own reference (a frozen copy): rewards 0, the loss log 2.
    assert metrics["eval_rewards/margins_before"] == pytest.approx(0, abs=1e-3)
    assert metrics["eval_loss"] < metrics["eval_loss_before"] == pytest.approx(math.log(2), abs=1e-3)
    assert 0 <= metrics["eval_rewards/accuracies"] <= 1 and metrics["eval_rewards/margins"] > 0
    card = (output / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "Reward accuracy" in card
    assert (output / "loss_curve.png").is_file() and len(record["samples"]) == 1
    assert any(output.glob("runs/*/events.out.tfevents.*"))  # TensorBoard
    trained = AutoModelForCausalLM.from_pretrained(output)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    assert not torch.equal(trained.model.embed_tokens.weight, base.model.embed_tokens.weight)


def test_dpo_lora_on_chat_pairs_resumes_and_loads_with_peft(base_dir, pair_files, workdir):
    from peft import AutoPeftModelForCausalLM

    output = workdir / "dpo-lora"
    args = dpo_args(base_dir, output, pair_files["chat_train"], pair_files["dev"], "--method", "lora",
                    "--learning_rate", "5e-3", "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "no")
    finetune_main([*args[:args.index("--max_steps") + 1], "2", *args[args.index("--max_steps") + 2:]])
    assert (output / "checkpoint-2").is_dir() and not (output / "ref").exists()
    finetune_main(args)  # four steps: continues from checkpoint-2
    record = json.loads((output / "scratchlm_run.json").read_text())
    assert record["global_step"] == 4 and record["method"] == "lora" and record["adapter"]["r"] == 8
    metrics = record["metrics"]
    assert metrics["eval_loss"] < math.log(2) and metrics["eval_rewards/margins"] > 0  # log 2: the adapter off
    assert set(record["train_losses"]) == {"1", "2", "3", "4"}
    adapted = AutoPeftModelForCausalLM.from_pretrained(output).eval()
    assert list(adapted.peft_config) == ["default"]  # no copy of the adapter as a reference
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    ids = torch.tensor([[3, 20, 30, 40, 50]])
    with torch.no_grad():
        assert not torch.allclose(adapted(input_ids=ids).logits, base(input_ids=ids).logits)

    # A continued adapter is its own reference (TRL's frozen copy): no reward before training, and the copy is
    # not saved with the result.
    further = workdir / "dpo-lora-further"
    finetune_main(dpo_args(base_dir, further, pair_files["train"], pair_files["dev"], "--method", "lora",
                           "--adapter_name_or_path", str(output), "--max_steps", "1", "--num_samples", "0"))
    metrics = json.loads((further / "metrics.json").read_text())
    assert metrics["eval_loss_before"] == pytest.approx(math.log(2), abs=1e-3)
    assert not (further / "ref").exists()
