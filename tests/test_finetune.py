"""scratchlm-finetune: classification and SFT, full and LoRA, merge, metrics offline, and every bad input.

A tiny "pretrained" model (one layer, 64 wide, 128-token context) and a 600-token tokenizer trained on a slice of
the shared data stand in for a real one; every run takes a few optimizer steps.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from itertools import islice
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

import scratchlm  # noqa: F401 - registers ScratchLM with the Auto classes
from scratchlm.modeling.initialization import init_model
from scratchlm.tokenization import train_tokenizer
from scratchlm.training import finetune as ft
from scratchlm.training.data import IGNORE_INDEX, build_classification_data, build_sft_data
from scratchlm.training.tasks import get_task
from scratchlm.training.tasks.classification import classification_metrics, load_metric

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The command without its console wrapper, so that a user error reaches the test as the exception it is.
finetune_main = ft.main.__wrapped__

CONTEXT = 128  # the tiny base's (conftest's tiny_sizes)


def sst2_rows(data_dir: Path, count: int, start: int = 0, names=("negative", "positive")) -> list[dict]:
    with open(data_dir / "sst2-sentences" / "stsa.binary.train", encoding="utf-8") as lines:
        return [{"sentence": line[2:].strip(), "label": names[int(line[0])]}
                for line in islice(lines, start, start + count)]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("finetune")


@pytest.fixture(scope="module")
def instructions(data_dir) -> list[dict]:
    return json.loads((data_dir / "instruction-llms-from-scratch" / "instruction-data.json").read_text())


@pytest.fixture(scope="module")
def base_dir(workdir, data_dir, instructions, tiny_sizes) -> Path:
    """A tiny pretrained ScratchLM directory: model, tokenizer (with the chat template), generation config."""
    texts = [row["sentence"] for row in sst2_rows(data_dir, 1500)]
    texts += [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in instructions[:300]]
    tokenizer = train_tokenizer(texts, vocab_size=600, show_progress=False)
    model = init_model("tiny", dict(tiny_sizes), tokenizer, seed=0)
    path = workdir / "base"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(base_dir):
    return AutoTokenizer.from_pretrained(base_dir)


@pytest.fixture(scope="module")
def cls_files(workdir, data_dir) -> dict[str, str]:
    rows = sst2_rows(data_dir, 240)
    return {"train": write_jsonl(workdir / "train.jsonl", rows[:160]),
            "dev": write_jsonl(workdir / "dev.jsonl", rows[160:200]),
            "test": write_jsonl(workdir / "test.jsonl", rows[200:])}


@pytest.fixture(scope="module")
def sft_files(workdir, instructions) -> dict[str, str]:
    (workdir / "sft_train.json").write_text(json.dumps(instructions[:64]))
    chats = [{"messages": [{"role": "user", "content": r["instruction"]},
                           {"role": "assistant", "content": r["output"]}]}
             for r in instructions[64:80]]
    return {"train": str(workdir / "sft_train.json"), "dev": write_jsonl(workdir / "sft_dev.jsonl", chats)}


def common(base_dir, output_dir, *extra) -> list[str]:
    return ["--model_name_or_path", str(base_dir), "--output_dir", str(output_dir), "--report_to", "none",
            "--max_steps", "4", "--per_device_train_batch_size", "8", "--learning_rate", "1e-2",
            "--logging_steps", "1", "--disable_tqdm", "true", *extra]


def cls_args(base_dir, output_dir, cls_files, *extra) -> list[str]:
    return common(base_dir, output_dir, "--train_files", cls_files["train"], "--validation_files", cls_files["dev"],
                  "--test_files", cls_files["test"], "--text_column", "sentence", *extra)


def sft_args(base_dir, output_dir, sft_files, *extra) -> list[str]:
    return common(base_dir, output_dir, "--task", "sft", "--train_files", sft_files["train"],
                  "--validation_files", sft_files["dev"], "--num_samples", "2", "--sample_max_new_tokens", "8", *extra)


class Capture:
    """Wraps finish_run to keep the trained model's outputs on fixed inputs, before anything is saved."""

    def __init__(self, inputs):
        self.inputs, self.logits, self.model = inputs, None, None
        self.finish_run = ft.finish_run

    def __call__(self, trainer, tokenizer, record, *args):
        trainer.model.eval()
        with torch.no_grad():
            self.logits = trainer.model(**self.inputs).logits.float().clone()
        self.model = trainer.model
        return self.finish_run(trainer, tokenizer, record, *args)


def probe(tokenizer, texts=("a gripping , funny film", "dull and lifeless")) -> dict:
    ids = [tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in texts]
    width = max(map(len, ids))
    return {"input_ids": torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids]),
            "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])}


def run_captured(argv, inputs) -> Capture:
    # fp32: under bf16 the Trainer's model keeps accelerate's autocast wrapper, and would not match a reloaded model.
    argv = [*argv, "--precision", "fp32"]
    capture = Capture(inputs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ft, "finish_run", capture)
        finetune_main(argv)
    return capture


# ----------------------------------------------------------------------------------------------------------------
# Metrics


def test_metrics_load_offline_by_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    predictions, references = [0, 1, 1, 0, 1], [0, 1, 0, 0, 0]
    assert load_metric("accuracy").compute(predictions=predictions, references=references) == {"accuracy": 0.6}
    assert load_metric("f1").compute(predictions=predictions, references=references)["f1"] == pytest.approx(0.5)
    assert load_metric("precision").compute(predictions=predictions, references=references)["precision"] == \
        pytest.approx(1 / 3)
    assert load_metric("recall").compute(predictions=predictions, references=references)["recall"] == 1.0
    metrics = classification_metrics([0, 1, 2, 2], [0, 1, 1, 2], num_labels=3)
    assert metrics["accuracy"] == 0.75 and metrics["f1"] == metrics["macro_f1"] == pytest.approx(7 / 9)
    with pytest.raises(ValueError, match="no metric 'bleu'"):
        load_metric("bleu")


# ----------------------------------------------------------------------------------------------------------------
# Classification


def test_classification_full_end_to_end(base_dir, cls_files, workdir, tokenizer):
    output = workdir / "cls-full"
    capture = run_captured(cls_args(base_dir, output, cls_files), probe(tokenizer))
    metrics = json.loads((output / "metrics.json").read_text())
    for key in ("eval_accuracy", "eval_f1", "eval_macro_f1", "test_accuracy", "test_f1", "eval_accuracy_before"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert (output / "README.md").is_file() and "Accuracy" in (output / "README.md").read_text()
    record = json.loads((output / "scratchlm_run.json").read_text())
    assert record["task"] == "text-classification" and record["id2label"] == {"0": "negative", "1": "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(output)
    assert model.config.id2label == {0: "negative", 1: "positive"} and model.config.label2id["positive"] == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id
    with torch.no_grad():
        torch.testing.assert_close(model(**probe(tokenizer)).logits, capture.logits)


def test_the_learning_rate_defaults_to_the_tasks_measured_best(base_dir, cls_files, workdir):
    output = workdir / "cls-default-lr"
    argv = cls_args(base_dir, output, cls_files, "--max_steps", "1", "--evaluate_before_training", "false")
    at = argv.index("--learning_rate")
    del argv[at:at + 2]
    finetune_main(argv)
    record = json.loads((output / "scratchlm_run.json").read_text())
    assert record["hyperparameters"]["learning_rate"] == 1e-3  # classification, full fine-tuning
    finetune_main([*argv[:-2], "--method", "lora", "--output_dir", str(workdir / "cls-default-lr-lora")])
    record = json.loads((workdir / "cls-default-lr-lora" / "scratchlm_run.json").read_text())
    assert record["hyperparameters"]["learning_rate"] == 1e-3
    assert get_task("sft").default_learning_rate == {"full": 1e-4, "lora": 1e-4}


def test_config_overrides_change_the_fine_tuned_models_config_and_unknown_fields_are_named(base_dir, cls_files,
                                                                                           workdir):
    output = workdir / "cls-dropout"
    argv = cls_args(base_dir, output, cls_files, "--max_steps", "1", "--evaluate_before_training", "false")
    finetune_main([*argv, "--config_overrides", "hidden_dropout=0.1,attention_dropout=0.2"])
    config = json.loads((output / "config.json").read_text())
    assert (config["hidden_dropout"], config["attention_dropout"]) == (0.1, 0.2)
    assert json.loads((base_dir / "config.json").read_text())["hidden_dropout"] == 0.0  # the base is untouched
    with pytest.raises(ValueError, match=f"--config_overrides: the config of {base_dir} has no field hidden_dropuot"):
        finetune_main([*argv[:2], "--output_dir", str(workdir / "bad-override"), *argv[4:], "--config_overrides",
                       "hidden_dropuot=0.1"])
    assert not (workdir / "bad-override").exists()


def test_no_validation_data_turns_evaluation_off_instead_of_failing(base_dir, cls_files, workdir, caplog):
    argv = common(base_dir, workdir / "cls-no-validation", "--train_files", cls_files["train"], "--text_column",
                  "sentence", "--validation_split_fraction", "0", "--max_steps", "2", "--evaluate_before_training",
                  "false")
    with caplog.at_level(logging.WARNING, logger="scratchlm.training.finetune"):
        finetune_main(argv)  # eval_strategy defaults to "epoch": the Trainer alone would refuse to start
    assert "no evaluation during training (--eval_strategy epoch ignored)" in caplog.text
    assert (workdir / "cls-no-validation" / "scratchlm_run.json").is_file()
    with pytest.raises(ValueError, match="--load_best_model_at_end needs validation data"):
        finetune_main([*argv[:2], "--output_dir", str(workdir / "cls-best"), *argv[4:], "--load_best_model_at_end",
                       "true", "--save_strategy", "epoch"])


def test_classification_resumes_from_its_checkpoint(base_dir, cls_files, workdir, caplog):
    output = workdir / "cls-resume"
    argv = cls_args(base_dir, output, cls_files, "--save_strategy", "steps", "--save_steps", "2")
    finetune_main(argv)
    card = (output / "README.md").read_text()
    with caplog.at_level(logging.WARNING):
        finetune_main(argv)  # finished: left as it is
    assert "already holds this run" in caplog.text and (output / "README.md").read_text() == card
    assert (output / "checkpoint-4").is_dir()
    (output / "scratchlm_run.json").unlink()  # as if the run had been cut before its end
    caplog.clear()
    with caplog.at_level(logging.INFO):  # resuming is routine: logged at INFO
        finetune_main(argv)
    assert "resuming from" in caplog.text and "checkpoint-4" in caplog.text


@pytest.fixture(scope="module")
def lora_classifier(base_dir, cls_files, workdir, tokenizer):
    output = workdir / "cls-lora"
    capture = run_captured(
        cls_args(base_dir, output, cls_files, "--method", "lora", "--lora_r", "4", "--merge"), probe(tokenizer),
    )
    return output, capture


def test_classification_lora_adapter_loads_with_peft(lora_classifier, base_dir, tokenizer):
    from peft import PeftModel

    output, capture = lora_classifier
    config = json.loads((output / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == base_dir.resolve() and config["r"] == 4
    # classification adapts the embeddings too (the measured default), beside every attention and MLP projection
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                             "embed_tokens"}
    assert any("embed_tokens.lora_embedding_A" in key for key in load_file(output / "adapter_model.safetensors"))
    assert "score" in config["modules_to_save"]
    assert "score" in " ".join(load_file(output / "adapter_model.safetensors"))  # the head is saved with it
    record = json.loads((output / "scratchlm_run.json").read_text())
    assert record["method"] == "lora" and record["adapter"]["r"] == 4
    assert record["trainable_parameters"] < record["num_parameters"] / 2
    base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=2)
    model = PeftModel.from_pretrained(base, output).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**probe(tokenizer)).logits, capture.logits)


def test_classification_merged_model_loads_without_peft(lora_classifier, tokenizer, run_without_package):
    output, capture = lora_classifier
    merged = output / "merged"
    assert not (merged / "adapter_config.json").exists() and (merged / "README.md").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    assert model.config.id2label == {0: "negative", 1: "positive"}
    inputs = probe(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, capture.logits, atol=1e-4, rtol=1e-4)
    # Stock transformers, remote code, neither scratchlm nor peft importable.
    result = run_without_package(f"""
        import sys, json, torch
        sys.modules["peft"] = None
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained({str(merged)!r}, trust_remote_code=True).eval()
        inputs = json.loads({json.dumps({k: v.tolist() for k, v in inputs.items()})!r})
        inputs = {{k: torch.tensor(v) for k, v in inputs.items()}}
        with torch.no_grad():
            print(json.dumps(model(**inputs).logits.tolist()))
    """)
    logits = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(logits, capture.logits, atol=1e-4, rtol=1e-4)


def test_labels_strings_ints_and_class_names(tokenizer):
    table = Dataset.from_dict({"text": ["good", "bad", "fine", "meh"], "label": [2, 10, 2, 1]})
    data = build_classification_data(table, None, None, tokenizer)
    assert data.id2label == {0: "1", 1: "2", 2: "10"} and data.train["labels"] == [1, 2, 1, 0]  # numeric order
    assert all(ids[-1] == tokenizer.eos_token_id for ids in data.train["input_ids"])
    binary = Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]})
    named = build_classification_data(binary, None, None, tokenizer, label_names=["neg", "pos"])
    assert named.id2label == {0: "neg", 1: "pos"} and named.train["labels"] == [1, 0]
    pairs = Dataset.from_dict({"premise": ["a b c " * 40], "hypothesis": ["d e"], "label": ["yes"]})
    pairs = pairs.add_item({"premise": "x", "hypothesis": "y", "label": "no"})
    data = build_classification_data(pairs, None, None, tokenizer, text_column="premise",
                                     text_pair_column="hypothesis", max_length=32)
    assert len(data.train[0]["input_ids"]) == 32 and data.reports["train"].truncated == 1
    assert tokenizer.decode(data.train[0]["input_ids"]).endswith("<|eos|>d e<|eos|>")  # the short text is kept


# ----------------------------------------------------------------------------------------------------------------
# SFT


def test_sft_labels_cover_only_the_replies(tokenizer):
    alpaca = Dataset.from_dict({"instruction": ["Add the numbers.", "Say hi."], "input": ["2 and 3", ""],
                                "output": ["2 + 3 = 5.", "Hi!"]})
    data = build_sft_data(alpaca, None, None, tokenizer, max_length=CONTEXT, system_prompt="Be brief.")
    example = data.train[0]
    reply = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    prompt = [t for t, label in zip(example["input_ids"], example["labels"]) if label == IGNORE_INDEX]
    assert tokenizer.decode(reply) == "2 + 3 = 5.<|eos|>"
    assert tokenizer.decode(prompt) == ("<|im_start|>system\nBe brief.<|eos|>\n<|im_start|>user\nAdd the numbers.\n\n"
                                        "2 and 3<|eos|>\n<|im_start|>assistant\n\n")
    chat = Dataset.from_dict({"messages": [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                                            {"role": "user", "content": "Bye"},
                                            {"role": "assistant", "content": "Ciao"}]]})
    example = build_sft_data(chat, None, None, tokenizer, max_length=CONTEXT).train[0]
    reply = [t if label != IGNORE_INDEX else None for t, label in zip(example["input_ids"], example["labels"])]
    spans = tokenizer.decode([t for t in reply if t is not None])
    assert spans == "Yo<|eos|>Ciao<|eos|>"
    packed = build_sft_data(alpaca, None, None, tokenizer, max_length=CONTEXT, packing=True)
    assert len(packed.train) == 1 and packed.train[0]["labels"].count(IGNORE_INDEX) < len(packed.train[0]["labels"])


def test_sft_truncation_is_reported_and_replies_beyond_the_context_fail(tokenizer, caplog):
    long = Dataset.from_dict({"instruction": ["word " * 200, "Short?"], "output": ["answer", "Yes."]})
    with caplog.at_level(logging.WARNING):
        data = build_sft_data(long, None, None, tokenizer, max_length=64)
    report = data.reports["train"]
    assert (report.truncated, report.dropped_no_reply, report.examples) == (1, 1, 1)
    assert "dropped 1 rows with nothing of the reply left within 64 tokens" in caplog.text
    with pytest.raises(ValueError, match="no reply is left within 64 tokens"):
        build_sft_data(long.select([0]), None, None, tokenizer, max_length=64)
    partly = build_sft_data(Dataset.from_dict({"instruction": ["Hi"], "output": ["word " * 200]}), None, None,
                            tokenizer, max_length=64)
    assert partly.reports["train"].truncated == 1 and len(partly.train[0]["input_ids"]) == 64


def test_sft_lora_with_gradient_checkpointing(base_dir, sft_files, workdir):
    from peft import AutoPeftModelForCausalLM

    output = workdir / "sft-lora"
    finetune_main(sft_args(base_dir, output, sft_files, "--method", "lora", "--activation_checkpointing", "--packing",
                     "--merge"))
    record = json.loads((output / "scratchlm_run.json").read_text())
    metrics = record["metrics"]
    assert math.isfinite(metrics["train_loss"]) and metrics["eval_loss"] < metrics["eval_loss_before"]
    assert record["hyperparameters"]["gradient_checkpointing"] is True
    assert len(record["samples"]) == 2 and all("reference" in s for s in record["samples"])
    # a causal LM's embeddings are tied to its output layer: not adapted by default (classification's are)
    assert "embed_tokens" not in record["adapter"]["target_modules"] and "q_proj" in record["adapter"]["target_modules"]
    weights = load_file(output / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: training changed every adapter
    inputs = {"input_ids": torch.tensor([[3, 20, 30, 40, 50]])}
    adapted = AutoPeftModelForCausalLM.from_pretrained(output).eval()
    merged = AutoModelForCausalLM.from_pretrained(output / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, adapted(**inputs).logits, atol=1e-4, rtol=1e-4)


def test_sft_full_chat_format_and_push(base_dir, sft_files, workdir, monkeypatch):
    pushed = []
    monkeypatch.setattr(ft, "push_run_to_hub", lambda trainer: pushed.append(Path(trainer.args.output_dir).name))
    output = workdir / "sft-full"
    finetune_main(common(base_dir, output, "--task", "sft", "--train_files", sft_files["dev"], "--num_samples", "1",
                   "--sample_max_new_tokens", "4", "--validation_split_fraction", "0.25", "--push_to_hub",
                   "--language", "en"))
    record = json.loads((output / "scratchlm_run.json").read_text())
    assert record["task"] == "text-generation" and record["data_report"]["validation"]["examples"] == 4
    assert pushed == ["sft-full"] and record["language"] == ["en"]  # pushed once, at the end, by scratchlm-publish
    assert AutoModelForCausalLM.from_pretrained(output).config.model_type == "scratchlm"


def test_sft_over_long_held_out_prompts_are_skipped_and_the_adapter_records_an_absolute_base(
        base_dir, sft_files, workdir, instructions, monkeypatch, caplog):
    """A held-out prompt longer than the context is skipped (counted) before training, not a crash after it; a
    base given as a relative path is recorded absolute, so the adapter loads from any working directory."""
    from peft import AutoPeftModelForCausalLM

    long_prompt = " ".join(row["instruction"] for row in instructions[:60])  # far beyond the 128-token context
    chats = [{"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Yes."}]}
             for text in (long_prompt, "Name a colour.")]
    dev = write_jsonl(workdir / "sft_long_dev.jsonl", chats)
    output = workdir / "sft-long-prompt"
    monkeypatch.chdir(base_dir.parent)
    caplog.set_level(logging.WARNING, logger="scratchlm")
    finetune_main(common(base_dir.name, output, "--task", "sft", "--method", "lora", "--train_files",
                         sft_files["train"], "--validation_files", dev, "--num_samples", "2",
                         "--sample_max_new_tokens", "4", "--max_steps", "1", "--evaluate_before_training", "false"))
    assert "skipping 1 of 2 held-out prompts" in caplog.text
    record = json.loads((output / "scratchlm_run.json").read_text())
    assert [sample["prompt"] for sample in record["samples"]] == ["Name a colour."]
    assert record["base_model"] == str(base_dir.resolve())
    assert json.loads((output / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_dir.resolve())
    monkeypatch.chdir(workdir.parent)
    assert AutoPeftModelForCausalLM.from_pretrained(output).config.model_type == "scratchlm"


# ----------------------------------------------------------------------------------------------------------------
# Bad input: each fails before training, saying what is wrong


def test_missing_columns(base_dir, cls_files, sft_files, workdir):
    with pytest.raises(ValueError, match=r"no column 'text'.*sentence.*--text_column"):
        finetune_main(common(base_dir, workdir / "bad1", "--train_files", cls_files["train"]))
    with pytest.raises(ValueError, match=r"no column 'stars'.*--label_column"):
        finetune_main(cls_args(base_dir, workdir / "bad2", cls_files, "--label_column", "stars"))
    with pytest.raises(ValueError, match="'messages' column .* or 'instruction' and 'output'"):
        finetune_main(common(base_dir, workdir / "bad3", "--task", "sft", "--train_files", cls_files["train"]))


def test_label_outside_the_label_set(base_dir, cls_files, workdir, data_dir):
    rows = sst2_rows(data_dir, 5, start=300)
    rows[3]["label"] = "neutral"
    dev = write_jsonl(workdir / "dev-neutral.jsonl", rows)
    message = r"dev-neutral\.jsonl row 4: label 'neutral' is not in the label set \(negative, positive\)"
    with pytest.raises(ValueError, match=message):
        finetune_main(common(base_dir, workdir / "bad4", "--train_files", cls_files["train"], "--validation_files", dev,
                       "--text_column", "sentence"))
    with pytest.raises(ValueError, match=r"\.jsonl row 1: label 'positive' is not in the label set \(bad, good\)"):
        finetune_main(cls_args(base_dir, workdir / "bad5", cls_files, "--class_names", "bad", "good"))


def test_empty_texts_are_dropped_with_a_warning_or_fail_when_all_are(tokenizer, caplog):
    table = Dataset.from_dict({"text": ["good", " ", None, "bad"], "label": [1, 0, 1, 0]})
    with caplog.at_level(logging.WARNING):
        data = build_classification_data(table, None, None, tokenizer)
    assert len(data.train) == 2 and "dropped 2 of 4 rows with an empty text" in caplog.text
    with pytest.raises(ValueError, match="every row of the validation data has an empty 'text'"):
        build_classification_data(table, table.select([1, 2]), None, tokenizer)
    with pytest.raises(ValueError, match="every row has an empty instruction or reply"):
        build_sft_data(Dataset.from_dict({"instruction": ["Hi"], "output": [""]}), None, None, tokenizer,
                       max_length=64)


def test_base_model_that_is_not_a_scratchlm(base_dir, cls_files, workdir):
    llama = workdir / "not-scratchlm"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="holds a 'gpt2' model, not a ScratchLM model"):
        finetune_main(cls_args(llama, workdir / "bad6", cls_files))
    with pytest.raises(FileNotFoundError, match="--model_name_or_path .*missing-model: no such file or directory"):
        finetune_main(cls_args(workdir / "missing-model", workdir / "bad7", cls_files))


def test_adapter_for_another_base(base_dir, cls_files, sft_files, workdir, tokenizer, lora_classifier, tiny_sizes):
    from peft import LoraConfig, get_peft_model

    other = init_model("tiny", {**tiny_sizes, "hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1},
                       tokenizer, seed=0)
    adapter = workdir / "other-adapter"
    get_peft_model(other, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    message = r"trained on another base model .*q_proj has in_features=64, the adapter 32"
    with pytest.raises(ValueError, match=message):
        finetune_main(sft_args(base_dir, workdir / "bad8", sft_files, "--method", "lora", "--adapter_name_or_path",
                         str(adapter)))
    classifier_adapter, _ = lora_classifier
    with pytest.raises(ValueError, match="was trained for SEQ_CLS, this run is CAUSAL_LM"):
        finetune_main(sft_args(base_dir, workdir / "bad9", sft_files, "--method", "lora", "--adapter_name_or_path",
                         str(classifier_adapter)))
    with pytest.raises(ValueError, match="is a LoRA adapter, not a model"):
        finetune_main(cls_args(classifier_adapter, workdir / "bad10", cls_files))


def test_a_value_the_optimizer_rejects_is_named_first_and_a_run_that_took_no_step_claims_nothing(base_dir, cls_files,
                                                                                                 workdir):
    output = workdir / "cls-bad-optimizer"
    with pytest.raises(ValueError, match="--learning_rate must be a number at least 0, got -5"):
        finetune_main(cls_args(base_dir, output, cls_files, "--learning_rate", "-5"))
    assert not output.exists()
    # The Trainer finds this mistake only as training starts, after the evaluation before training (which drew a loss
    # curve): the attempt leaves nothing, and the corrected command (another learning rate) is not "another run".
    argv = cls_args(base_dir, output, cls_files, "--max_steps", "1")
    with pytest.raises(ValueError):
        finetune_main([*argv, "--learning_rate", "3e-3", "--optim_args", "betas"])
    assert not output.exists()
    finetune_main([*argv, "--learning_rate", "1e-3"])
    assert json.loads((output / "scratchlm_run.json").read_text())["hyperparameters"]["learning_rate"] == 1e-3


def test_bad_config_overrides_of_the_base_and_truncated_weights_are_one_line_each(base_dir, cls_files, workdir):
    output = workdir / "bad-base"
    with pytest.raises(ValueError, match=r"--config_overrides hidden_dropout=abc: expected a dropout in \[0, 1\)"):
        finetune_main(cls_args(base_dir, output, cls_files, "--config_overrides", "hidden_dropout=abc"))
    message = r"--config_overrides hidden_size=32: .* trained with hidden_size=64, and its saved weights would not fit"
    with pytest.raises(ValueError, match=message):
        finetune_main(cls_args(base_dir, output, cls_files, "--config_overrides", "hidden_size=32"))
    truncated = workdir / "truncated-base"
    shutil.copytree(base_dir, truncated)
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(OSError, match=r"truncated-base/model\.safetensors is truncated or corrupt"):
        finetune_main(cls_args(truncated, output, cls_files))
    with pytest.raises(FileNotFoundError, match="--adapter_name_or_path ./no-adapter: no such file or directory"):
        finetune_main(cls_args(base_dir, output, cls_files, "--method", "lora", "--adapter_name_or_path",
                               "./no-adapter"))
    assert not output.exists()


def test_bad_options(base_dir, cls_files, workdir):
    with pytest.raises(ValueError, match="^--merge is an option of --method lora, not of --method full$"):
        finetune_main(cls_args(base_dir, workdir / "bad11", cls_files, "--merge"))
    with pytest.raises(ValueError, match="^--adapter_name_or_path is an option of --method lora, not of --method full$"):
        finetune_main(cls_args(base_dir, workdir / "bad11", cls_files, "--adapter_name_or_path", str(base_dir)))
    with pytest.raises(ValueError, match="--task must be one of"):
        finetune_main(cls_args(base_dir, workdir / "bad12", cls_files, "--task", "translation"))
    with pytest.raises(ValueError, match=r"--lora_target_modules qkv_proj not in the model.*q_proj"):
        finetune_main(cls_args(base_dir, workdir / "bad13", cls_files, "--method", "lora", "--lora_target_modules", "qkv_proj"))
