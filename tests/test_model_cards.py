"""Model cards rendered from run records: metadata that the Hub accepts, and a body drawn only from the record."""

from __future__ import annotations

import copy
import json

import pytest
from huggingface_hub import ModelCard

from scratchlm.model_cards import (
    RunRecord,
    eval_results_from_record,
    render_model_card,
    validate_model_card,
    write_model_card,
)

ARCHITECTURE = {
    "model_type": "scratchlm", "num_hidden_layers": 2, "hidden_size": 128, "intermediate_size": 352,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 400, "max_position_embeddings": 512,
    "rope_type": "default", "tie_word_embeddings": True,
}

PRETRAINING_RECORD = {
    "task": "text-generation",
    "kind": "pretraining",
    "method": "full",
    "base_model": None,
    "model_name": "shakespeare-tiny",
    "language": ["en"],
    "license": "apache-2.0",
    "datasets": ["/work/shared/data/tinyshakespeare/input.txt", "karpathy/tiny_shakespeare"],
    "metrics": {"eval_loss": 4.1234, "eval_perplexity": 61.8, "eval_bits_per_byte": 1.9321, "train_runtime": 12.0},
    "eval_results": [
        {"task_type": "text-generation", "task_name": "Language modelling",
         "dataset_name": "/work/shared/data/tinyshakespeare/input.txt", "dataset_type": "text",
         "dataset_split": "validation", "metric_type": metric_type, "metric_name": name, "metric_value": value}
        for metric_type, name, value in (("perplexity", "Perplexity", 61.8), ("bits_per_byte", "Bits per byte", 1.9321),
                                         ("loss", "Loss (nats per token)", 4.1234))
    ],
    "architecture": ARCHITECTURE,
    "num_parameters": 420480,
    "trainable_parameters": 420480,
    "hyperparameters": {"learning_rate": 0.001, "lr_scheduler_type": "cosine", "warmup_steps": 2, "max_steps": 20,
                        "per_device_train_batch_size": 8, "precision": "fp32", "seed": 42},
    "global_step": 20,
    "environment": {"torch": "2.13.0+cpu", "transformers": "5.24.0", "device": "CPU (x86_64)"},
    "loss_curve": "loss_curve.png",
    "samples": [{"prompt": "ROMEO:", "completion": " what light | through ```yonder``` window"}, "KING: a sample"],
    "training_time_s": 95.3,
    "finished_at": "2025-11-29T04:00:00+0000",
    "cleaning_report": {"documents_in": 1200, "documents_kept": 1190, "removed": {"duplicates": 7, "too_short": 3}},
}

CLASSIFICATION_RECORD = {
    "task": "text-classification",
    "kind": "finetuning",
    "method": "full",
    "base_model": "alice/scratchlm-zh-small",
    "model_name": "waimai-sentiment",
    "language": ["zh"],
    "datasets": ["/work/shared/data/waimai_10k/waimai_10k.csv"],
    "metrics": {"eval_loss": 0.41, "eval_accuracy": 0.8712, "eval_f1": 0.8533},
    "architecture": {**ARCHITECTURE, "vocab_size": 8192},
    "num_parameters": 1234567,
    "trainable_parameters": 1234567,
    "id2label": {"0": "negative", "1": "positive"},
}

LORA_RECORD = {
    **CLASSIFICATION_RECORD,
    "task": "text-generation",
    "model_name": "tiny-chat-lora",
    "method": "lora",
    "base_model": "alice/shakespeare-tiny",
    "metrics": {"eval_loss": 2.5, "eval_perplexity": 12.18},
    "trainable_parameters": 8192,
    "adapter": {"base_model_name_or_path": "alice/shakespeare-tiny", "r": 8, "lora_alpha": 16,
                "target_modules": ["q_proj", "v_proj"]},
}
LORA_RECORD.pop("id2label")


def _metadata(card: ModelCard) -> dict:
    return card.data.to_dict()


def _metric_values(metadata: dict) -> dict[str, float]:
    return {m["type"]: m["value"] for result in metadata["model-index"][0]["results"] for m in result["metrics"]}


def test_card_round_trips_with_valid_hub_metadata(tmp_path):
    (tmp_path / "loss_curve.png").write_bytes(b"\x89PNG")
    path = write_model_card(tmp_path, PRETRAINING_RECORD)
    assert path == tmp_path / "README.md"

    metadata = ModelCard.load(path).data.to_dict()
    assert metadata["license"] == "apache-2.0"
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "text-generation"
    assert metadata["language"] == ["en"]
    assert {"scratchlm", "text-generation", "custom_code"} <= set(metadata["tags"])
    # only Hub data set ids go into the metadata; a local file is named in the text
    assert metadata["datasets"] == ["karpathy/tiny_shakespeare"]
    assert "base_model" not in metadata  # trained from scratch
    assert metadata["model-index"][0]["name"] == "shakespeare-tiny"
    assert _metric_values(metadata) == {"perplexity": 61.8, "bits_per_byte": 1.9321, "loss": 4.1234}
    validate_model_card(path, require_results=True)


def test_card_body_is_drawn_from_the_record(tmp_path):
    (tmp_path / "loss_curve.png").write_bytes(b"\x89PNG")
    text = render_model_card(PRETRAINING_RECORD, tmp_path, repo_id="alice/shakespeare-tiny").text

    assert "\n# shakespeare-tiny\n" in text
    assert "| Parameters | 420,480 (420480) |" in text
    assert "| Key/value heads (GQA) | 2 |" in text
    assert "| Context length (tokens) | 512 |" in text
    assert "| learning_rate | 0.001 |" in text and "| lr_scheduler_type | cosine |" in text
    assert "| Perplexity | 61.8 | tinyshakespeare/input.txt | validation |" in text
    assert "| Bits per byte | 1.9321 |" in text
    assert "![loss curve](loss_curve.png)" in text
    assert "| Documents kept | 1,190 |" in text and "| Removed: duplicates | 7 |" in text
    assert "[karpathy/tiny_shakespeare](https://huggingface.co/datasets/karpathy/tiny_shakespeare)" in text
    assert 'AutoModelForCausalLM.from_pretrained("alice/shakespeare-tiny", trust_remote_code=True)' in text
    assert 'pipeline("text-generation", model="alice/shakespeare-tiny", trust_remote_code=True)' in text
    # a sample holding backticks and a pipe stays inside its (longer) fence
    assert "````text\nROMEO: what light | through ```yonder``` window\n````" in text
    assert "KING: a sample" in text
    assert "## Intended use and limitations" in text and "biases of its training data" in text
    assert "420,480 parameters" in text
    # this machine's directories are not published
    assert "/work/shared" not in text and "/work/shared" not in str(render_model_card(PRETRAINING_RECORD, tmp_path))


def test_missing_optional_parts_are_left_out(tmp_path):
    record = {"task": "text-generation", "model_name": "bare"}
    card = render_model_card(record, tmp_path)
    text = card.text
    for section in ("## Evaluation", "![loss curve]", "## Sample generations", "## Training data", "### Hyperparameters",
                    "## Model details"):
        assert section not in text
    assert "## How to use" in text and "## Intended use and limitations" in text
    metadata = _metadata(validate_model_card(card))
    assert metadata["license"] == "apache-2.0" and "model-index" not in metadata


def test_loss_curve_is_shown_only_when_its_file_exists(tmp_path):
    assert "![loss curve]" not in render_model_card(PRETRAINING_RECORD, tmp_path).text
    (tmp_path / "loss_curve.png").write_bytes(b"\x89PNG")
    assert "![loss curve](loss_curve.png)" in render_model_card(PRETRAINING_RECORD, tmp_path).text


def test_results_are_derived_from_metrics_when_the_record_has_none():
    record = {**PRETRAINING_RECORD, "eval_results": []}
    results = eval_results_from_record(record)
    assert [(r.metric_type, r.metric_value) for r in results] == [
        ("perplexity", 61.8), ("bits_per_byte", 1.9321), ("loss", 4.1234)]
    assert all(r.dataset_split == "validation" and "/work/" not in r.dataset_name for r in results)
    # non-finite values never reach the model-index
    assert eval_results_from_record({**record, "metrics": {"eval_perplexity": float("inf")}}) == []


def test_classification_card(tmp_path):
    card = render_model_card(CLASSIFICATION_RECORD, tmp_path, repo_id="alice/waimai-sentiment")
    metadata = _metadata(validate_model_card(card, require_results=True))
    assert metadata["pipeline_tag"] == "text-classification"
    assert metadata["language"] == ["zh"]
    assert metadata["base_model"] == "alice/scratchlm-zh-small"
    assert metadata["base_model_relation"] == "finetune"
    assert _metric_values(metadata) == {"loss": 0.41, "accuracy": 0.8712, "f1": 0.8533}
    text = card.text
    assert "| Accuracy | 0.8712 |" in text and "| F1 | 0.8533 |" in text
    assert "| 0 | negative |" in text and "| 1 | positive |" in text
    assert "AutoModelForSequenceClassification.from_pretrained" in text
    assert 'pipeline("text-classification", model="alice/waimai-sentiment", trust_remote_code=True)' in text
    assert "fine-tuned from `alice/scratchlm-zh-small`" in text and "Chinese" in text


def test_lora_adapter_card(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "alice/shakespeare-tiny"}))
    card = render_model_card(LORA_RECORD, tmp_path, repo_id="alice/tiny-chat-lora")
    metadata = _metadata(validate_model_card(card, require_results=True))
    assert metadata["library_name"] == "peft"
    assert metadata["base_model"] == "alice/shakespeare-tiny"
    assert metadata["base_model_relation"] == "adapter"
    assert {"lora", "peft"} <= set(metadata["tags"])
    text = card.text
    assert 'AutoPeftModelForCausalLM.from_pretrained("alice/tiny-chat-lora", trust_remote_code=True)' in text
    assert "| Rank r | 8 |" in text and "| Target modules | q_proj, v_proj |" in text
    assert "| Trainable parameters in this run | 8,192 |" in text
    assert "inherits the limitations and biases of its base model" in text


def test_merged_lora_model_card_is_a_transformers_card(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    metadata = _metadata(render_model_card(LORA_RECORD, tmp_path))
    assert metadata["library_name"] == "transformers"
    assert metadata["base_model"] == "alice/shakespeare-tiny"
    assert metadata["base_model_relation"] == "finetune"


def test_a_local_base_model_stays_out_of_the_metadata(tmp_path):
    record = {**CLASSIFICATION_RECORD, "base_model": str(tmp_path)}
    card = render_model_card(record, tmp_path)
    assert "base_model" not in _metadata(card)
    assert str(tmp_path) not in card.text and f"{tmp_path.name} (a local model)" in card.text
    # ... unless its Hub id is given
    assert _metadata(render_model_card(record, tmp_path, base_model="alice/base"))["base_model"] == "alice/base"


def test_validation_names_the_missing_metadata(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("---\nlibrary_name: transformers\n---\n\n# A card without license or pipeline tag\n")
    with pytest.raises(ValueError, match="missing required metadata: license, pipeline_tag"):
        validate_model_card(path)

    card = render_model_card({"task": "text-generation", "model_name": "bare"})
    with pytest.raises(ValueError, match="model-index"):
        validate_model_card(card, require_results=True)

    adapter_card = ModelCard("---\nlicense: mit\nlibrary_name: peft\npipeline_tag: text-generation\n---\n\nx\n")
    validate_model_card(adapter_card)  # a LoRA run on a local base model still gets its card ...
    with pytest.raises(ValueError, match="base_model"):  # ... but it cannot be published without the base's id
        validate_model_card(adapter_card, require_base_model=True)

    with pytest.raises(ValueError, match="no model card"):
        validate_model_card(tmp_path / "missing.md")


def test_bad_records_are_refused(tmp_path):
    with pytest.raises(ValueError, match="task"):
        render_model_card({"task": "translation", "model_name": "x"})
    with pytest.raises(ValueError, match="task"):
        write_model_card(tmp_path, {"model_name": "x"})
    assert not (tmp_path / "README.md").exists()
    with pytest.raises(TypeError):
        render_model_card(["not", "a", "record"])


def test_rendering_does_not_modify_the_record(tmp_path):
    record = copy.deepcopy(PRETRAINING_RECORD)
    write_model_card(tmp_path, record)
    assert record == PRETRAINING_RECORD


@pytest.mark.parametrize("write", [
    lambda directory, record: write_model_card(directory, record),
    lambda directory, record: RunRecord.from_dict(record).save(directory),
], ids=["card", "run record"])
def test_a_write_that_fails_midway_leaves_the_previous_file(file_size_limit, tmp_path, write):
    """A disk that fills while the card or the run record is written leaves the earlier file as it was."""
    path = write(tmp_path, PRETRAINING_RECORD)
    before = path.read_bytes()
    with file_size_limit(200), pytest.raises(OSError, match="File too large"):  # either file needs more
        write(tmp_path, {**PRETRAINING_RECORD, "model_name": "shakespeare-tiny-2"})
    assert path.read_bytes() == before
    assert [child.name for child in tmp_path.iterdir()] == [path.name]  # no partial file left
