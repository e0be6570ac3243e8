"""Honest cards and reports (issue 14, points 6-10): a classifier's headline against the majority class, evaluation
data named as such, usage code that works as written (chat template included), languages detected when not given,
and no noise in the hyperparameters."""

from __future__ import annotations

import json
import logging
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, EvalPrediction, set_seed

from scratchlm.model_cards import render_model_card
from scratchlm.model_cards.publish import publish
from scratchlm.model_cards.run_record import RUN_RECORD_FILE, RunRecord
from scratchlm.training.finetune import report_run
from scratchlm.training.generation import SamplePrompt, sample_generations
from scratchlm.training.language import infer_languages, texts_of_rows
from scratchlm.training.run import UNDERTRAINED_BITS_PER_BYTE, warn_if_base_undertrained
from scratchlm.training.tasks import ClassificationTask

CLASSIFIER = {
    "task": "text-classification", "kind": "finetuning", "method": "lora", "finetune_task": "classification",
    "model_name": "hotel-sentiment", "language": ["zh"],
    "datasets": ["/data/chnsenticorp/train.csv"], "validation_datasets": ["/data/chnsenticorp/dev.csv"],
    "test_datasets": ["/data/chnsenticorp/test.csv"],
    # predicts "positive" for everything: the positive class's F1 looks good, the model learnt nothing
    "metrics": {"eval_accuracy": 0.6855, "eval_f1": 0.8134, "eval_macro_f1": 0.4067, "eval_majority_rate": 0.6855,
                "test_accuracy": 0.69, "test_f1": 0.8166, "test_macro_f1": 0.4083, "test_majority_rate": 0.69},
    "id2label": {"0": "负面", "1": "正面"},
    "adapter": {"base_model_name_or_path": "alice/zh-small", "r": 8, "lora_alpha": 16,
                "target_modules": ["q_proj", "v_proj"], "modules_to_save": []},
    "hyperparameters": {"learning_rate": 0.001, "warmup_steps": 0.05, "max_steps": 60, "num_train_epochs": 3.0},
}


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    return match.group(1) if match else ""


# ----------------------------------------------------------------------------------------------------------------
# 6. accuracy and macro-F1 against the majority class


def test_classification_metrics_include_the_majority_class_rate_of_the_training_labels():
    data = SimpleNamespace(id2label={0: "neg", 1: "pos"}, train={"labels": [1, 1, 1, 0]})  # training majority: 1
    compute = ClassificationTask().compute_metrics(data)
    references = np.array([0, 0, 0, 1, 1])  # the evaluated split leans the other way
    logits = np.array([[0.0, 1.0]] * 5)  # always "pos"
    metrics = compute(EvalPrediction(predictions=logits, label_ids=references))
    assert metrics["majority_rate"] == pytest.approx(0.4)  # answering 1 is right on 2 of the 5 rows
    assert metrics["accuracy"] == pytest.approx(0.4) and metrics["macro_f1"] < metrics["f1"]


def test_a_majority_class_classifier_is_headlined_with_accuracy_macro_f1_and_a_warning(tmp_path, capsys):
    text = render_model_card(CLASSIFIER, tmp_path).text
    top = text.split("## Model details")[0]
    assert "Test accuracy 69.0%, macro-F1 0.408 (always answering the majority class of the training labels: 69.0%)" \
        in top
    assert "Validation accuracy 68.5%, macro-F1 0.407" in top
    assert "⚠️ **Warning.**" in top and "does no better than always answering the majority class" in top
    # the command's final report says the same
    report_run(RunRecord.from_dict({**CLASSIFIER, "trainable_parameters": 10, "training_time_s": 1.0,
                                    "metrics": {**CLASSIFIER["metrics"], "peak_memory_mb": 1.0}}), tmp_path)
    out = capsys.readouterr().out
    assert "Test accuracy 69.0%, macro-F1 0.408" in out and "WARNING: On the test data this model does no better" in out


def test_a_classifier_that_learnt_gets_no_warning(tmp_path):
    metrics = {"eval_accuracy": 0.88, "eval_macro_f1": 0.86, "eval_majority_rate": 0.6855}
    text = render_model_card({**CLASSIFIER, "metrics": metrics}, tmp_path).text
    assert "Validation accuracy 88.0%, macro-F1 0.860" in text and "Warning" not in text


# ----------------------------------------------------------------------------------------------------------------
# 7. evaluation data is not training data; 10. no noise


def test_evaluation_and_test_files_are_listed_as_what_they_are(tmp_path):
    text = render_model_card(CLASSIFIER, tmp_path).text
    training, evaluation = _section(text, "Training data"), _section(text, "Evaluation data")
    assert "chnsenticorp/train.csv" in training and "dev.csv" not in training and "test.csv" not in training
    assert "validation: `chnsenticorp/dev.csv`" in evaluation and "test: `chnsenticorp/test.csv`" in evaluation
    bias = next(line for line in text.splitlines() if line.startswith("**Bias.**"))
    assert "train.csv" in bias and "dev.csv" not in bias and "test.csv" not in bias


def test_hyperparameters_say_what_decided_the_length_and_show_a_warmup_ratio(tmp_path):
    text = render_model_card(CLASSIFIER, tmp_path).text
    assert "num_train_epochs" not in text
    assert "| run length | max_steps 60 (decides the length; epochs are not used) |" in text
    assert "| warmup | 5% of the training steps (warmup_steps 0.05) |" in text
    assert "Fully trained modules" not in text  # modules_to_save is empty: no empty cell
    epochs_run = {**CLASSIFIER, "hyperparameters": {"max_steps": -1, "num_train_epochs": 3.0, "warmup_steps": 10}}
    text = render_model_card(epochs_run, tmp_path).text
    assert "| run length | num_train_epochs 3 |" in text and "max_steps" not in text and "| warmup | 10 steps |" in text
    with_modules = {**CLASSIFIER, "adapter": {**CLASSIFIER["adapter"], "modules_to_save": ["score"]}}
    assert "| Fully trained modules | score |" in render_model_card(with_modules, tmp_path).text


def test_records_from_other_versions_load():
    record = RunRecord.from_dict({"task": "text-generation", "a_field_from_a_newer_version": 1})
    assert record.task == "text-generation" and record.validation_datasets == [] and record.finetune_task is None


# ----------------------------------------------------------------------------------------------------------------
# 9. languages


@pytest.mark.parametrize(("texts", "expected"), [
    (["明月几时有，把酒问青天。", "这家店的外卖很好吃，送餐也快，KFC 比不上"], ["zh"]),
    (["The quick brown fox jumps over the lazy dog, said 李白."], ["en"]),
    (["Give three tips for staying healthy.", "给出保持健康的三个建议。均衡饮食，定期锻炼。"], ["zh", "en"]),
    (["12345 67890 !!! ??? 😀😀😀 ..."], None),
    (["Привет, как дела? Это русский текст без латиницы."], None),
])
def test_languages_are_inferred_from_the_scripts(texts, expected):
    assert infer_languages(texts) == expected


def test_a_tables_languages_come_from_its_text_not_from_where_its_rows_came_from(tmp_path):
    from scratchlm.training.arguments import FinetuneDataArguments
    from scratchlm.training.data import load_splits

    table = tmp_path / "hotel_reviews_with_a_long_english_file_name.csv"
    table.write_text("label,review\n" + "".join(f"{i % 2},房间很干净，服务也好，下次还住{i}\n" for i in range(30)),
                     encoding="utf-8")
    data_args = FinetuneDataArguments(train_files=[str(table)], text_column="review", validation_split_fraction=0.1)
    train, _, _ = load_splits(data_args, seed=0)
    assert infer_languages(texts_of_rows(train)) == ["zh"]


def test_the_card_says_a_language_was_detected(tmp_path):
    text = render_model_card({**CLASSIFIER, "language_inferred": True}, tmp_path).text
    assert "Language tag (zh) detected in the training text" in text


def test_publishing_warns_when_the_card_has_no_language(tiny_causal_lm_dir, tmp_path, caplog):
    model_dir = tmp_path / "no-language"
    shutil.copytree(tiny_causal_lm_dir, model_dir)
    record = {"task": "text-generation", "model_name": "no-language"}
    (model_dir / RUN_RECORD_FILE).write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="scratchlm"):
        publish(model_dir, "alice/no-language", dry_run=True, staging_dir=tmp_path / "staged")
    assert "names no language" in caplog.text
    caplog.clear()
    (model_dir / RUN_RECORD_FILE).write_text(json.dumps({**record, "language": ["zh"]}))
    with caplog.at_level(logging.WARNING, logger="scratchlm"):
        publish(model_dir, "alice/no-language", dry_run=True, staging_dir=tmp_path / "staged")
    assert "names no language" not in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# 11. an undertrained base is named before fine-tuning


def test_fine_tuning_an_undertrained_base_warns(tmp_path, caplog):
    record = {"task": "text-generation", "kind": "pretraining", "global_step": 60, "train_tokens": 120_000}
    for bits_per_byte, warned in ((UNDERTRAINED_BITS_PER_BYTE + 0.9, True), (UNDERTRAINED_BITS_PER_BYTE - 0.6, False)):
        (tmp_path / RUN_RECORD_FILE).write_text(json.dumps({**record, "metrics": {"eval_bits_per_byte": bits_per_byte}}))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="scratchlm"):
            assert warn_if_base_undertrained(tmp_path, "classification") == bits_per_byte
        assert ("is undertrained for --task classification" in caplog.text) is warned
    assert warn_if_base_undertrained(tmp_path / "no-record", "sft") is None  # nothing to go by: no warning


# ----------------------------------------------------------------------------------------------------------------
# 4 (second half). samples never hold a partial UTF-8 character


def test_samples_stop_before_a_partial_character(tiny_causal_lm_dir):
    from scratchlm.modeling import ScratchLMForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    model = ScratchLMForCausalLM.from_pretrained(tiny_causal_lm_dir)
    prompts = [SamplePrompt(text, text) for text in ("春风又绿", "明月", "emoji 😀", "床前")]
    samples = sample_generations(model, tokenizer, prompts, max_new_tokens=24, seed=0)
    assert all("\ufffd" not in sample["completion"] for sample in samples)
    # the same generations decoded plainly do hold broken characters (the random model emits stray bytes)
    broken = 0
    for prompt in prompts:
        set_seed(0)
        inputs = tokenizer(prompt.text, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=24, do_sample=True, temperature=0.8, top_k=50)
        broken += "\ufffd" in tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert broken


# ----------------------------------------------------------------------------------------------------------------
# 8. every card's usage code runs as written, without ScratchLM


def _usage_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", _section(text, "How to use"), flags=re.S)


def test_every_cards_usage_code_runs_without_the_package(tiny_causal_lm_dir, tmp_path, run_without_package):
    from peft import LoraConfig, get_peft_model

    from scratchlm.modeling import ScratchLMConfig, ScratchLMForCausalLM, ScratchLMForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    config = ScratchLMConfig.from_pretrained(tiny_causal_lm_dir)
    classifier_dir = tmp_path / "classifier"
    torch.manual_seed(0)
    id2label = {0: "负面", 1: "正面"}
    classifier_config = ScratchLMConfig(**{**config.to_dict(), "num_labels": 2, "id2label": id2label,
                                           "label2id": {v: k for k, v in id2label.items()}})
    ScratchLMForSequenceClassification(classifier_config).save_pretrained(classifier_dir)
    tokenizer.save_pretrained(classifier_dir)
    adapter_dir = tmp_path / "sft-lora"
    lora = get_peft_model(ScratchLMForCausalLM.from_pretrained(tiny_causal_lm_dir),
                          LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    lora.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)

    base = {"model_name": "m", "language": ["zh"], "samples": [{"prompt": "明月几时有", "completion": "x"}]}
    cards = {
        "pretrained": (render_model_card({**base, "task": "text-generation"}, tiny_causal_lm_dir,
                                         repo_id=str(tiny_causal_lm_dir)), False),
        "classifier": (render_model_card({**base, "task": "text-classification", "kind": "finetuning",
                                          "finetune_task": "classification", "id2label": {"0": "负面", "1": "正面"}},
                                         classifier_dir, repo_id=str(classifier_dir)), False),
        "sft": (render_model_card({**base, "task": "text-generation", "kind": "finetuning", "finetune_task": "sft"},
                                  tiny_causal_lm_dir, repo_id=str(tiny_causal_lm_dir)), True),
        "sft-lora": (render_model_card({**base, "task": "text-generation", "kind": "finetuning", "method": "lora",
                                        "finetune_task": "sft", "adapter": {"r": 2}}, adapter_dir,
                                       repo_id=str(adapter_dir)), True),
    }
    script = []
    for name, (card, chat) in cards.items():
        blocks = _usage_blocks(card.text)
        assert blocks, f"the {name} card shows no usage code"
        assert all(("apply_chat_template" in block or "messages" in block) is chat for block in blocks), name
        for block in blocks:
            script.append(f"print('--- {name}', flush=True)\nexec({block!r}, {{}})")
    result = run_without_package("\n".join(script))
    assert result.stdout.count("--- ") == sum(len(_usage_blocks(card.text)) for card, _ in cards.values())
    assert "负面" in result.stdout or "正面" in result.stdout  # the classifier printed a label name
