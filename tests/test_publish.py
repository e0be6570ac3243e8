"""`scratchlm-publish`: what goes to the Hub, how it loads with stock transformers, and how failures are reported.

No test reaches the internet: every socket to a host other than 127.0.0.1 is refused, and uploads go to a closed
local port or a small local server that plays the Hub.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import Trainer, TrainingArguments

import scratchlm  # noqa: F401 - registers ScratchLM with the Auto classes and marks it for remote code
from scratchlm.model_cards import RunRecord, write_model_card
from scratchlm.model_cards import publish as publish_module
from scratchlm.model_cards.cli import main
from scratchlm.model_cards.publish import PublishError, assemble_hub_folder, publish
from scratchlm.modeling import ScratchLMForCausalLM, ScratchLMForSequenceClassification
from scratchlm.modeling.initialization import special_token_ids
from scratchlm.tokenization import train_tokenizer
from scratchlm.training.run import RUN_RECORD_FILE, finish_run, push_run_to_hub

DATA_DIR = Path(os.environ.get("SCRATCHLM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SHAKESPEARE = DATA_DIR / "tinyshakespeare" / "input.txt"
PROMPT = "ROMEO: what light"
CODE_FILES = {"configuration_scratchlm.py", "modeling_scratchlm.py", "tokenization_scratchlm.py"}
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
LM_REPO_FILES = {"README.md", "config.json", "model.safetensors", "generation_config.json", "loss_curve.png",
                 *CODE_FILES, *TOKENIZER_FILES}
CLASSIFIER_REPO_FILES = {"README.md", "config.json", "model.safetensors", *CODE_FILES, *TOKENIZER_FILES}


# ----------------------------------------------------------------------------------------------------------------
# Fixtures: a tokenizer, a language model run finished by finish_run, a classifier, a LoRA adapter


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """Refuse every connection that is not to this machine."""
    connect = socket.socket.connect

    def guarded_connect(sock, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise ConnectionRefusedError(f"the tests may not connect to {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture
def hub_at(monkeypatch):
    """Point huggingface_hub at a local endpoint, online, with a fake token."""

    def point(endpoint: str) -> None:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")

    return point


def _corpus() -> str:
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")[:20_000]
    return "ROMEO: But soft, what light through yonder window breaks?\nJULIET: O Romeo, Romeo!\n" * 200


@pytest.fixture(scope="module")
def tokenizer():
    text = _corpus()
    return train_tokenizer([text[i : i + 400] for i in range(0, len(text), 400)], vocab_size=400, show_progress=False)


def _blocks(tokenizer, size: int = 32, count: int = 8) -> list[dict]:
    ids = tokenizer(_corpus()).input_ids
    return [{"input_ids": ids[i : i + size], "labels": ids[i : i + size]} for i in range(0, size * count, size)]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, tokenizer, tiny_model):
    """A language model trained for two steps and finished by `finish_run`, as `scratchlm-pretrain` does."""
    root = tmp_path_factory.mktemp("lm")
    output_dir = root / "shakespeare-tiny"
    model = tiny_model(**special_token_ids(tokenizer))
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1,
        save_strategy="no", use_cpu=True, report_to="none", disable_tqdm=True, hub_model_id="alice/shakespeare-tiny",
    )
    data = _blocks(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:2], processing_class=tokenizer)
    trainer.train()
    metrics = trainer.evaluate()
    metrics["eval_perplexity"] = math.exp(metrics["eval_loss"])
    record = {
        "task": "text-generation", "kind": "pretraining", "method": "full", "base_model": None,
        "model_name": output_dir.name, "language": ["en"], "datasets": [str(SHAKESPEARE)], "metrics": metrics,
        "samples": [{"prompt": "ROMEO:", "completion": " a sample"}],
    }
    record = finish_run(trainer, tokenizer, RunRecord.from_dict(record))

    model.eval()
    input_ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        reference = {
            "input_ids": input_ids,
            "logits": model(input_ids).logits,
            "hidden": model.model(input_ids).last_hidden_state,
            "greedy": model.generate(input_ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id),
        }
    torch.save(reference, root / "reference.pt")
    return SimpleNamespace(dir=output_dir, reference=root / "reference.pt", trainer=trainer, record=record)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tokenizer, tiny_model):
    """A sequence classifier saved as a fine-tuning command leaves it: model, tokenizer, run record and card."""
    root = tmp_path_factory.mktemp("classifier")
    output_dir = root / "sentiment-tiny"
    id2label = {0: "negative", 1: "positive"}
    model = tiny_model(ScratchLMForSequenceClassification, seed=1, **special_token_ids(tokenizer), num_labels=2,
                       id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    record = {
        "task": "text-classification", "kind": "finetuning", "method": "full", "base_model": "alice/shakespeare-tiny",
        "model_name": output_dir.name, "language": ["en"], "datasets": ["sst2"],
        "metrics": {"eval_accuracy": 0.75, "eval_f1": 0.7}, "num_parameters": model.num_parameters(),
        "id2label": {str(k): v for k, v in id2label.items()},
    }
    (output_dir / RUN_RECORD_FILE).write_text(json.dumps(record))
    write_model_card(output_dir, record)
    texts = ["a fine and noble play", "bad"]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.save({"texts": texts, "logits": model(**batch).logits}, root / "reference.pt")
    return output_dir


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tokenizer, lm_run):
    """A LoRA adapter on the language model, saved with its tokenizer, record and card (a LoRA fine-tuning run)."""
    from peft import LoraConfig, get_peft_model

    output_dir = tmp_path_factory.mktemp("adapter") / "shakespeare-lora"
    base = ScratchLMForCausalLM.from_pretrained(lm_run.dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.02)  # a trained adapter is not the identity
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    record = {
        "task": "text-generation", "kind": "finetuning", "method": "lora", "base_model": str(lm_run.dir),
        "model_name": output_dir.name, "datasets": ["alice/dialogues"], "metrics": {"eval_loss": 3.0},
        "adapter": {"base_model_name_or_path": str(lm_run.dir), "r": 4, "lora_alpha": 8,
                    "target_modules": ["q_proj", "v_proj"]},
    }
    (output_dir / RUN_RECORD_FILE).write_text(json.dumps(record))
    write_model_card(output_dir, record)  # as finish_run does: the base is a local path, so no base_model yet
    assert "base_model" not in ModelCard.load(output_dir / "README.md").data.to_dict()
    return output_dir


@pytest.fixture(scope="module")
def seq2seq_dir(tmp_path_factory, tokenizer, tiny_seq2seq_model):
    """A tiny encoder-decoder saved as `scratchlm-finetune --task seq2seq` leaves it: model, tokenizer, record, card."""
    root = tmp_path_factory.mktemp("seq2seq")
    output_dir = root / "translate-tiny"
    model = tiny_seq2seq_model(seed=2, **special_token_ids(tokenizer), decoder_start_token_id=tokenizer.bos_token_id)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    record = {"task": "text2text-generation", "kind": "finetuning", "method": "full", "base_model": None,
              "model_name": output_dir.name, "language": ["en", "de"], "datasets": ["multi30k"],
              "metrics": {"eval_loss": 3.0}, "num_parameters": model.num_parameters()}
    (output_dir / RUN_RECORD_FILE).write_text(json.dumps(record))
    write_model_card(output_dir, record)
    input_ids = tokenizer([PROMPT], return_tensors="pt").input_ids
    decoder_input_ids = torch.tensor([[tokenizer.bos_token_id, 5, 6]])
    with torch.no_grad():
        logits = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits
    torch.save({"input_ids": input_ids, "decoder_input_ids": decoder_input_ids, "logits": logits}, root / "reference.pt")
    return output_dir


def _names(files) -> set[str]:
    return {Path(f).name for f in files}


# ----------------------------------------------------------------------------------------------------------------
# What goes to the Hub


def test_every_run_writes_a_card_from_its_record(lm_run):
    card = ModelCard.load(lm_run.dir / "README.md")
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "text-generation"
    assert metadata["license"] == "apache-2.0"
    values = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert values["perplexity"] == pytest.approx(lm_run.record.metrics["eval_perplexity"], rel=1e-3)
    assert f"{lm_run.record.num_parameters:,}" in card.text
    assert "![loss curve](loss_curve.png)" in card.text


def test_dry_run_stages_and_lists_exactly_the_repository_files(lm_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "HfApi", None)  # a dry run must not even build a client
    staging = tmp_path / "staged"
    main([str(lm_run.dir), "--repo-id", "alice/shakespeare-tiny", "--dry-run", "--staging_dir", str(staging)])
    printed = capsys.readouterr().out
    assert "dry run, nothing sent" in printed and "11 files" in printed
    for name in LM_REPO_FILES:
        assert name in printed
    assert {p.name for p in staging.iterdir() if not p.name.startswith(".")} == LM_REPO_FILES
    # nothing pickled, no run internals
    assert "training_args.bin" not in printed and (lm_run.dir / "training_args.bin").is_file()
    # the staged card names the repository in its loading examples
    assert 'from_pretrained("alice/shakespeare-tiny", trust_remote_code=True)' in (staging / "README.md").read_text()
    config = json.loads((staging / "config.json").read_text())
    assert config["model_type"] == "scratchlm" and config["auto_map"]["AutoModelForCausalLM"]


def test_both_command_line_forms_and_the_default_staging_folder(lm_run, capsys):
    result = publish(lm_run.dir, "alice/shakespeare-tiny", dry_run=True)
    assert result.staging_dir == lm_run.dir.with_name("shakespeare-tiny-hub") and not result.uploaded
    main(["--model_dir", str(lm_run.dir), "--repo_id", "alice/shakespeare-tiny", "--dry_run"])
    assert "shakespeare-tiny-hub" in capsys.readouterr().out
    shutil.rmtree(result.staging_dir)


def test_classifier_and_adapter_folders(classifier_dir, adapter_dir, lm_run, tmp_path):
    assert _names(assemble_hub_folder(classifier_dir, tmp_path / "cls")) == CLASSIFIER_REPO_FILES

    with pytest.raises(PublishError, match="local path .* --base_model_id"):
        assemble_hub_folder(adapter_dir, tmp_path / "lora")
    files = assemble_hub_folder(adapter_dir, tmp_path / "lora", base_model_id="alice/shakespeare-tiny")
    assert _names(files) == {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenization_scratchlm.py",
                             *TOKENIZER_FILES}
    staged = tmp_path / "lora"
    assert json.loads((staged / "adapter_config.json").read_text())["base_model_name_or_path"] == "alice/shakespeare-tiny"
    metadata = ModelCard.load(staged / "README.md").data.to_dict()
    assert metadata["library_name"] == "peft" and metadata["base_model"] == "alice/shakespeare-tiny"

    # the staged adapter applies to the base model exactly as before
    from peft import PeftModel

    base = ScratchLMForCausalLM.from_pretrained(lm_run.dir).eval()
    ids = torch.load(lm_run.reference)["input_ids"]
    expected = PeftModel.from_pretrained(ScratchLMForCausalLM.from_pretrained(lm_run.dir), adapter_dir).eval()(ids)
    loaded = PeftModel.from_pretrained(base, staged).eval()
    torch.testing.assert_close(loaded(ids).logits, expected.logits, rtol=0, atol=0)

    # an adapter whose config already records a Hub id needs no --base_model_id
    hub_based = _copy_run(adapter_dir, tmp_path / "hub-based")
    adapter_config = json.loads((hub_based / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = "alice/shakespeare-tiny"
    (hub_based / "adapter_config.json").write_text(json.dumps(adapter_config))
    assemble_hub_folder(hub_based, tmp_path / "hub-based-staged")
    metadata = ModelCard.load(tmp_path / "hub-based-staged" / "README.md").data.to_dict()
    assert metadata["base_model"] == "alice/shakespeare-tiny" and metadata["base_model_relation"] == "adapter"


def test_the_remote_code_modules_are_the_packages_own():
    package = Path(scratchlm.__file__).resolve().parents[1]
    files = {p.stem for folder in ("modeling", "tokenization") for p in (package / folder).glob("*.py")
             if p.name.startswith(("configuration_", "modeling_", "tokenization_"))}
    assert set(publish_module.REMOTE_CODE_MODULES) == files


def test_an_encoder_decoder_is_published_with_all_its_code_and_loads_with_stock_transformers(
        seq2seq_dir, tmp_path, run_without_package):
    staged = publish(seq2seq_dir, "alice/translate-tiny", dry_run=True, staging_dir=tmp_path / "hub").staging_dir
    # modeling_scratchlm_seq2seq.py builds on the decoder's blocks: both code files travel, with their configs
    assert {p.name for p in staged.iterdir() if not p.name.startswith(".")} == {
        "README.md", "config.json", "model.safetensors", "generation_config.json", "configuration_scratchlm.py",
        "modeling_scratchlm.py", "configuration_scratchlm_seq2seq.py", "modeling_scratchlm_seq2seq.py",
        "tokenization_scratchlm.py", *TOKENIZER_FILES}
    assert ModelCard.load(staged / "README.md").data.to_dict()["pipeline_tag"] == "text2text-generation"
    result = run_without_package(f"""
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        folder, reference = {str(staged)!r}, torch.load({str(seq2seq_dir.parent / "reference.pt")!r})
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        assert tokenizer([{PROMPT!r}], return_tensors="pt").input_ids.tolist() == reference["input_ids"].tolist()
        with torch.no_grad():
            logits = model(input_ids=reference["input_ids"], decoder_input_ids=reference["decoder_input_ids"]).logits
        torch.testing.assert_close(logits, reference["logits"], rtol=0, atol=0)
        print(type(model).__name__)
    """)
    assert result.stdout.strip() == "ScratchLMSeq2SeqForConditionalGeneration"


# ----------------------------------------------------------------------------------------------------------------
# Loading anywhere: a fresh interpreter without scratchlm, stock transformers and peft only


def test_published_language_model_loads_with_stock_transformers(lm_run, tmp_path, run_without_package):
    staged = publish(lm_run.dir, "alice/shakespeare-tiny", dry_run=True, staging_dir=tmp_path / "hub").staging_dir
    result = run_without_package(f"""
        import torch
        from huggingface_hub import ModelCard
        from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                                  AutoTokenizer, pipeline)

        folder, reference = {str(staged)!r}, torch.load({str(lm_run.reference)!r})
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        assert type(config).__module__.startswith("transformers_modules"), type(config).__module__
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        assert type(tokenizer).__name__ == "ScratchLMTokenizer"
        assert tokenizer({PROMPT!r}, return_tensors="pt").input_ids.tolist() == reference["input_ids"].tolist()

        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(reference["input_ids"]).logits, reference["logits"], rtol=0, atol=0)
            torch.testing.assert_close(base(reference["input_ids"]).last_hidden_state, reference["hidden"],
                                       rtol=0, atol=0)
        classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3)
        assert classifier.score.out_features == 3

        generator = pipeline("text-generation", model=folder, trust_remote_code=True)
        text = generator({PROMPT!r}, max_new_tokens=8, do_sample=False, return_full_text=True)[0]["generated_text"]
        expected = tokenizer.decode(reference["greedy"][0], skip_special_tokens=True)
        assert text == expected, (text, expected)

        card = ModelCard.load(folder + "/README.md")
        assert card.data.pipeline_tag == "text-generation" and card.data.library_name == "transformers"
        print("loaded everywhere")
    """)
    assert "loaded everywhere" in result.stdout


def test_published_classifier_classifies_and_takes_a_new_lora_adapter(classifier_dir, lm_run, tmp_path,
                                                                      run_without_package):
    classifier = publish(classifier_dir, "alice/sentiment-tiny", dry_run=True, staging_dir=tmp_path / "cls").staging_dir
    lm = publish(lm_run.dir, "alice/shakespeare-tiny", dry_run=True, staging_dir=tmp_path / "lm").staging_dir
    result = run_without_package(f"""
        import math
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, Trainer,
                                  TrainingArguments, pipeline)

        folder, reference = {str(classifier)!r}, torch.load({str(classifier_dir.parent / "reference.pt")!r})
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        batch = tokenizer(reference["texts"], return_tensors="pt", padding=True)
        with torch.no_grad():
            torch.testing.assert_close(model(**batch).logits, reference["logits"], rtol=0, atol=1e-6)
        classify = pipeline("text-classification", model=folder, trust_remote_code=True)
        predictions = classify(reference["texts"])
        expected = [model.config.id2label[i] for i in reference["logits"].argmax(-1).tolist()]
        assert [p["label"] for p in predictions] == expected, predictions

        # a new LoRA adapter on the remote-code language model, trained with the Trainer
        tokenizer = AutoTokenizer.from_pretrained({str(lm)!r}, trust_remote_code=True)
        base = AutoModelForCausalLM.from_pretrained({str(lm)!r}, trust_remote_code=True)
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
        before = {{n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}}
        assert before and all("lora_" in n for n in before)
        ids = tokenizer({_corpus()[:3000]!r}).input_ids
        data = [{{"input_ids": ids[i:i + 32], "labels": ids[i:i + 32]}} for i in range(0, 32 * 8, 32)]
        args = TrainingArguments(output_dir="lora-run", max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                                 logging_steps=1, save_strategy="no", use_cpu=True, report_to="none", disable_tqdm=True)
        result = Trainer(model=model, args=args, train_dataset=data).train()
        assert math.isfinite(result.training_loss), result
        changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
        assert any("lora_B" in n for n in changed), changed
        print("classified and adapted", result.training_loss)
    """)
    assert "classified and adapted" in result.stdout


# ----------------------------------------------------------------------------------------------------------------
# Bad input: clear errors, before any network call


def _copy_run(source: Path, target: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*drop))
    return target


def test_a_directory_that_is_not_a_scratchlm_model(tmp_path, lm_run):
    with pytest.raises(PublishError, match="does not exist"):
        publish(tmp_path / "nowhere", "alice/x", dry_run=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PublishError, match="neither config.json"):
        publish(tmp_path / "empty", "alice/x", dry_run=True)
    llama = _copy_run(lm_run.dir, tmp_path / "llama")
    config = json.loads((llama / "config.json").read_text())
    (llama / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(PublishError, match="not a ScratchLM model.*'llama'"):
        publish(llama, "alice/x", dry_run=True)
    no_auto_map = _copy_run(lm_run.dir, tmp_path / "no-auto-map")
    (no_auto_map / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "auto_map"}))
    with pytest.raises(PublishError, match="no auto_map entry for AutoConfig"):
        publish(no_auto_map, "alice/x", dry_run=True)
    pickled = _copy_run(lm_run.dir, tmp_path / "pickled", drop=("model.safetensors",))
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(PublishError, match="no safetensors weights.*pytorch_model.bin"):
        publish(pickled, "alice/x", dry_run=True)
    no_code = _copy_run(lm_run.dir, tmp_path / "no-code", drop=("modeling_scratchlm.py",))
    with pytest.raises(PublishError, match="lacks modeling_scratchlm.py"):
        publish(no_code, "alice/x", dry_run=True)
    assert not any(p.name.endswith("-hub") for p in tmp_path.iterdir())  # nothing was staged


def test_a_model_without_its_tokenizer(tmp_path, lm_run):
    bare = _copy_run(lm_run.dir, tmp_path / "bare", drop=("tokenizer.json", "tokenizer_config.json"))
    with pytest.raises(PublishError, match="has no tokenizer"):
        publish(bare, "alice/x", dry_run=True)
    no_code = _copy_run(lm_run.dir, tmp_path / "no-tokenizer-code", drop=("tokenization_scratchlm.py",))
    with pytest.raises(PublishError, match="lacks tokenization_scratchlm.py"):
        publish(no_code, "alice/x", dry_run=True)


@pytest.mark.parametrize("repo_id", ["", "no-namespace", "a/b/c", "alice/bad..name", "alice/with space", "-alice/x"])
def test_malformed_repository_ids(repo_id, lm_run, tmp_path, capsys):
    with pytest.raises(PublishError, match="repository id"):
        publish(lm_run.dir, repo_id, dry_run=True, staging_dir=tmp_path / "hub")
    assert not (tmp_path / "hub").exists()
    with pytest.raises(SystemExit) as exit_info:
        main([str(lm_run.dir), f"--repo-id={repo_id}", "--dry-run"])
    assert exit_info.value.code == 2
    assert re.search(r"scratchlm-publish: error: .*repository id", capsys.readouterr().err)


def test_a_card_missing_required_metadata(tmp_path, lm_run):
    run = _copy_run(lm_run.dir, tmp_path / "run", drop=(RUN_RECORD_FILE,))
    (run / "README.md").write_text("---\nlibrary_name: transformers\n---\n\n# hand-written card\n")
    with pytest.raises(PublishError, match="missing required metadata: license, pipeline_tag"):
        publish(run, "alice/x", dry_run=True, staging_dir=tmp_path / "hub")
    (run / "README.md").unlink()
    with pytest.raises(PublishError, match="no model card"):
        publish(run, "alice/x", dry_run=True, staging_dir=tmp_path / "hub")
    broken = _copy_run(lm_run.dir, tmp_path / "broken-record")
    (broken / RUN_RECORD_FILE).write_text(json.dumps({"model_name": "x"}))
    with pytest.raises(PublishError, match="cannot write the model card.*task"):
        publish(broken, "alice/x", dry_run=True, staging_dir=tmp_path / "hub2")


def test_truncated_weights_are_refused_before_staging(tmp_path, lm_run):
    run = _copy_run(lm_run.dir, tmp_path / "truncated")
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(PublishError, match=r"truncated/model\.safetensors is truncated or corrupt"):
        publish(run, "alice/x", dry_run=True, staging_dir=tmp_path / "hub")
    assert not (tmp_path / "hub").exists()


def test_auto_map_code_outside_the_model_directory_is_refused(tmp_path, lm_run):
    run = _copy_run(lm_run.dir, tmp_path / "escape")
    (tmp_path / "evil.py").write_text("raise SystemExit('not ours')\n")
    config = json.loads((run / "config.json").read_text())
    config["auto_map"]["AutoModel"] = "../evil.ScratchLMModel"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(PublishError, match="auto_map entry '../evil.ScratchLMModel'.*outside the model directory"):
        publish(run, "alice/x", dry_run=True, staging_dir=tmp_path / "hub")
    assert not (tmp_path / "hub").exists()


@pytest.mark.parametrize(("config_file", "auto_class", "entry", "message"), [
    ("config.json", "AutoModelForCausalLM", "evil/repo--modeling_scratchlm.ScratchLMForCausalLM",
     "another Hub repository"),
    ("config.json", "AutoModel", "modeling_scratchlm.EvilModel", "a class that modeling_scratchlm.py does not define"),
    ("config.json", "AutoConfig", "evil.ScratchLMConfig", "outside the model directory's own ScratchLM code files"),
    ("tokenizer_config.json", "AutoTokenizer", ["evil/repo--tokenization_scratchlm.ScratchLMTokenizer", None],
     "another Hub repository"),
])
def test_auto_map_may_name_only_the_packages_own_classes(tmp_path, lm_run, capsys, config_file, auto_class, entry,
                                                         message):
    run = _copy_run(lm_run.dir, tmp_path / "foreign-code")
    (run / "evil.py").write_text("class ScratchLMConfig:\n    pass\n")
    config = json.loads((run / config_file).read_text())
    config["auto_map"][auto_class] = entry
    (run / config_file).write_text(json.dumps(config))
    shown = entry[0] if isinstance(entry, list) else entry
    with pytest.raises(PublishError, match=re.escape(f"auto_map entry {shown!r} for {auto_class} in {run / config_file}")
                       + f".*{re.escape(message)}"):
        publish(run, "alice/x", dry_run=True, staging_dir=tmp_path / "hub")
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--repo_id", "alice/x", "--dry_run", "--staging_dir", str(tmp_path / "hub")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and shown in err
    assert not (tmp_path / "hub").exists()


@pytest.mark.parametrize("name", ["chat_template.jinja", "loss_curve.png", "tokenizer.json"])
def test_a_link_leaving_the_model_directory_is_refused(tmp_path, lm_run, capsys, name):
    run = _copy_run(lm_run.dir, tmp_path / "linked")
    outside = tmp_path / "private" / name
    outside.parent.mkdir()
    outside.write_bytes((run / name).read_bytes())
    (run / name).unlink()
    (run / name).symlink_to(outside)
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--repo_id", "alice/x", "--dry_run", "--staging_dir", str(tmp_path / "hub")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"{run / name} points to {outside}, outside the model directory" in err
    assert not (tmp_path / "hub").exists()
    # a link that stays inside the directory is followed: the file it names is what is published
    (run / name).unlink()
    (run / "kept").mkdir()
    outside.rename(run / "kept" / name)
    (run / name).symlink_to(Path("kept") / name)
    files = assemble_hub_folder(run, tmp_path / "hub")
    staged = tmp_path / "hub" / name
    assert staged in files and not staged.is_symlink() and staged.read_bytes() == (run / "kept" / name).read_bytes()


def test_a_foreign_staging_folder_is_never_emptied(tmp_path, lm_run):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(PublishError, match="not made by scratchlm-publish"):
        publish(lm_run.dir, "alice/x", dry_run=True, staging_dir=foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(PublishError, match="outside the model directory"):
        publish(lm_run.dir, "alice/x", dry_run=True, staging_dir=lm_run.dir / "hub")


# ----------------------------------------------------------------------------------------------------------------
# The network boundary


def test_unreachable_hub_gives_a_clear_error_and_keeps_the_staged_folder(lm_run, tmp_path, hub_at, capsys):
    hub_at("http://127.0.0.1:9")  # nothing listens on the discard port
    staging = tmp_path / "hub"
    with pytest.raises(PublishError) as caught:
        publish(lm_run.dir, "alice/shakespeare-tiny", staging_dir=staging)
    message = str(caught.value)
    assert "could not reach the Hub" in message and "Nothing was uploaded" in message
    assert str(staging) in message
    assert {p.name for p in staging.iterdir() if not p.name.startswith(".")} == LM_REPO_FILES
    with pytest.raises(SystemExit) as exit_info:
        main([str(lm_run.dir), "--repo-id", "alice/shakespeare-tiny", "--staging_dir", str(staging)])
    assert exit_info.value.code == 2
    assert "scratchlm-publish: error: publishing to alice/shakespeare-tiny failed" in capsys.readouterr().err


def test_no_token_fails_before_any_request(lm_run, tmp_path, hub_at, monkeypatch):
    hub_at("http://127.0.0.1:9")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(PublishError, match="authentication failed.*hf auth login.*Nothing was uploaded"):
        publish(lm_run.dir, "alice/shakespeare-tiny", staging_dir=tmp_path / "hub")


def test_offline_mode_is_reported(lm_run, tmp_path, hub_at, monkeypatch):
    hub_at("http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE"):
        publish(lm_run.dir, "alice/shakespeare-tiny", staging_dir=tmp_path / "hub")


class _HubThatRefusesUploads(BaseHTTPRequestHandler):
    """Creates repositories and checks cards (accepting them, or not), then answers every upload with an error."""

    requests: ClassVar[list[str]] = []
    card_errors: ClassVar[list[dict]] = []

    def _answer(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append(f"POST {self.path}")
        if self.path == "/api/repos/create":
            host, port = self.server.server_address[:2]
            self._answer(200, {"url": f"http://{host}:{port}/alice/shakespeare-tiny", "name": "alice/shakespeare-tiny"})
        elif self.path == "/api/validate-yaml":
            self._answer(400 if self.card_errors else 200, {"errors": self.card_errors, "warnings": []})
        else:
            self._answer(400, {"error": "uploads are refused by this test server"})

    def do_GET(self):
        self.requests.append(f"GET {self.path}")
        self._answer(400, {"error": "refused"})

    def log_message(self, *args):
        pass


def _publish_to_local_hub(lm_run, staging_dir: Path, hub_at, card_errors: list[dict]) -> PublishError:
    _HubThatRefusesUploads.requests = []
    _HubThatRefusesUploads.card_errors = card_errors
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubThatRefusesUploads)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hub_at(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(PublishError) as caught:
            publish(lm_run.dir, "alice/shakespeare-tiny", staging_dir=staging_dir)
    finally:
        server.shutdown()
        server.server_close()
    assert "POST /api/repos/create" in _HubThatRefusesUploads.requests, _HubThatRefusesUploads.requests
    assert not any("/commit/" in request for request in _HubThatRefusesUploads.requests)
    assert (staging_dir / "model.safetensors").is_file()
    return caught.value


def test_a_failed_upload_after_the_repository_was_created_says_so(lm_run, tmp_path, hub_at):
    message = str(_publish_to_local_hub(lm_run, tmp_path / "hub", hub_at, card_errors=[]))
    assert "the Hub answered with an error" in message, (message, _HubThatRefusesUploads.requests)
    assert "exists but no commit was made" in message and str(tmp_path / "hub") in message


def test_a_card_the_hub_refuses_is_reported(lm_run, tmp_path, hub_at):
    error = _publish_to_local_hub(lm_run, tmp_path / "hub", hub_at, card_errors=[{"message": "bad license"}])
    assert "refused the model card's metadata" in str(error) and "bad license" in str(error)
    assert "no commit was made" in str(error)


def test_upload_sends_exactly_the_staged_files(lm_run, tmp_path, monkeypatch):
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kwargs):
            calls["create_repo"] = (repo_id, kwargs)
            return SimpleNamespace(repo_id=repo_id)

        def upload_folder(self, **kwargs):
            calls["upload_folder"] = kwargs
            return SimpleNamespace(commit_url="https://huggingface.co/alice/shakespeare-tiny/commit/0")

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    result = publish(lm_run.dir, "alice/shakespeare-tiny", private=True, token="hf_x", staging_dir=tmp_path / "hub")
    assert result.uploaded and calls["token"] == "hf_x"
    assert calls["create_repo"] == ("alice/shakespeare-tiny", {"private": True, "exist_ok": True, "repo_type": "model"})
    upload = calls["upload_folder"]
    assert Path(upload["folder_path"]) == tmp_path / "hub"
    assert set(upload["allow_patterns"]) == LM_REPO_FILES  # the staging marker stays local


def test_push_run_to_hub_publishes_the_same_folder(lm_run, tmp_path, monkeypatch):
    staged = {}

    def fake_upload(staging_dir, files, repo_id, **kwargs):
        staged.update(repo_id=repo_id, files=_names(files), **kwargs)
        return "https://huggingface.co/alice/shakespeare-tiny/commit/0"

    monkeypatch.setattr(publish_module, "upload_staged_folder", fake_upload)
    result = push_run_to_hub(lm_run.trainer, staging_dir=tmp_path / "hub")
    assert result.uploaded and staged["repo_id"] == "alice/shakespeare-tiny"
    assert staged["files"] == LM_REPO_FILES and staged["commit_message"] == "End of training"
    assert staged["private"] is False and staged["token"] is None


def test_push_run_to_hub_reaches_the_network_boundary(lm_run, tmp_path, hub_at):
    hub_at("http://127.0.0.1:9")
    with pytest.raises(PublishError, match="could not reach the Hub"):
        push_run_to_hub(lm_run.trainer, staging_dir=tmp_path / "hub")
    assert (tmp_path / "hub" / "README.md").is_file()
