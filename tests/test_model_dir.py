"""The model loading shared by chat, serve and export (inference/model_dir.py): a LoRA adapter directory is loaded
onto its base and merged; a truncated safetensors file, a device this machine lacks, an unknown dtype and an
encoder-decoder where a decoder-only model is needed are each one line naming the file or flag."""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scratchlm.inference.chat import main as chat_main
from scratchlm.inference.model_dir import load_causal_lm, model_name
from scratchlm.modeling import init_seq2seq_model
from scratchlm.modeling.cli import convert_main

MAX_NEW_TOKENS = 6


def user_error(main, argv, capsys, stdin="hello\n", monkeypatch=None) -> str:
    """The one line a console command prints for a user error (it exits with status 2)."""
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert len(line) < 400, line
    return line


@pytest.fixture(scope="module")
def adapter_dir(tiny_causal_lm_dir, tmp_path_factory):
    """A LoRA adapter on the tiny model, saved alone (adapter_config.json naming the base; no tokenizer), as
    `scratchlm-finetune --method lora` saves one; random (not zero) LoRA weights, so that it changes the model."""
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
    torch.manual_seed(1)
    config = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)
    directory = tmp_path_factory.mktemp("adapter")
    get_peft_model(base, config).save_pretrained(directory)
    assert json.loads((directory / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_causal_lm_dir)
    assert not (directory / "config.json").exists() and not (directory / "tokenizer.json").exists()
    return directory


@pytest.fixture(scope="module")
def merged_dir(tiny_causal_lm_dir, adapter_dir, tmp_path_factory):
    """The adapter merged into its base with peft and saved as a full model (with the base's tokenizer)."""
    from peft import PeftModel

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir), adapter_dir)
    directory = tmp_path_factory.mktemp("merged")
    merged.merge_and_unload().save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_causal_lm_dir).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def seq2seq_dir(tiny_tokenizer, tiny_seq2seq_sizes, tmp_path_factory):
    """A tiny ScratchLM encoder-decoder with a tokenizer."""
    directory = tmp_path_factory.mktemp("s2s")
    init_seq2seq_model("tiny", tiny_seq2seq_sizes, tiny_tokenizer).save_pretrained(directory)
    tiny_tokenizer.save_pretrained(directory)
    return directory


def _logits(model):
    with torch.inference_mode():
        return model(torch.tensor([[5, 17, 42, 99, 123, 7]])).logits


def test_adapter_dir_loads_the_base_with_the_adapter_merged(tiny_causal_lm_dir, adapter_dir):
    from peft import PeftModel

    model, tokenizer = load_causal_lm(adapter_dir, device="cpu")
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir), adapter_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir).eval()
    assert not isinstance(model, PeftModel)  # merged: a plain transformers model
    torch.testing.assert_close(_logits(model), _logits(unmerged), atol=1e-4, rtol=1e-4)
    assert (_logits(model) - _logits(base)).abs().max() > 1e-2  # the adapter really changes the model
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(tiny_causal_lm_dir).get_vocab()  # the base's


def test_chat_with_an_adapter_dir_equals_chat_with_the_merged_model(adapter_dir, merged_dir, monkeypatch, capsys):
    replies = []
    for directory in (adapter_dir, merged_dir):
        monkeypatch.setattr("sys.stdin", io.StringIO("hello, how are you?\nNumbers like 2019\n"))
        chat_main([str(directory), "--max_new_tokens", str(MAX_NEW_TOKENS)])
        replies.append(capsys.readouterr().out)
    assert replies[0] == replies[1] and replies[0].count("\n") == 2


def test_export_of_an_adapter_dir_equals_the_export_of_the_merged_model(adapter_dir, merged_dir, tmp_path):
    gguf = pytest.importorskip("gguf")
    from scratchlm.inference.export import main as export_main

    export_main([str(adapter_dir), "--output_dir", str(tmp_path)])
    export_main([str(merged_dir), "--output_file", str(tmp_path / "merged.gguf")])
    from_adapter = {t.name: t.data for t in gguf.GGUFReader(tmp_path / f"{adapter_dir.name}-f16.gguf").tensors}
    from_merged = {t.name: t.data for t in gguf.GGUFReader(tmp_path / "merged.gguf").tensors}
    assert from_adapter.keys() == from_merged.keys()
    for name, data in from_merged.items():
        assert (from_adapter[name] == data).all(), name


def test_adapter_whose_base_is_missing_is_one_line(adapter_dir, tmp_path, monkeypatch, capsys):
    moved = tmp_path / "adapter"
    shutil.copytree(adapter_dir, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone" / "lm")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    line = user_error(chat_main, [str(moved)], capsys, monkeypatch=monkeypatch)
    assert str(tmp_path / "gone" / "lm") in line and "does not exist" in line


def _truncated(directory, tmp_path, name="model.safetensors"):
    copy = tmp_path / directory.name
    shutil.copytree(directory, copy)
    weights = copy / name
    os.truncate(weights, weights.stat().st_size // 2)
    return copy, weights


def test_truncated_weights_are_one_line_naming_the_file(tiny_causal_lm_dir, adapter_dir, tmp_path, monkeypatch,
                                                        capsys):
    from scratchlm.inference.export import main as export_main

    model_dir, weights = _truncated(tiny_causal_lm_dir, tmp_path)
    for main, argv in (
        (chat_main, [str(model_dir)]),
        (export_main, [str(model_dir), "--output_file", str(tmp_path / "x.gguf")]),
        (convert_main, ["--to_llama", str(model_dir), "--output_dir", str(tmp_path / "llama")]),
    ):
        line = user_error(main, argv, capsys, monkeypatch=monkeypatch)
        assert str(weights) in line and "truncated" in line
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "llama").exists()

    adapter, adapter_weights = _truncated(adapter_dir, tmp_path, "adapter_model.safetensors")
    line = user_error(chat_main, [str(adapter)], capsys, monkeypatch=monkeypatch)
    assert str(adapter_weights) in line and "truncated" in line


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--device", "cuda", "no CUDA GPU"),
        ("--device", "mps", "MPS is not available"),
        ("--device", "tpu9", "auto, cpu, cuda, cuda:N, mps"),
        ("--dtype", "foo", "auto, float32, bfloat16, float16"),
    ],
)
def test_bad_device_or_dtype_is_one_line(tiny_causal_lm_dir, flag, value, expected, monkeypatch, capsys):
    if value == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if value == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    line = user_error(chat_main, [str(tiny_causal_lm_dir), flag, value], capsys, monkeypatch=monkeypatch)
    assert flag in line and expected in line


def test_chat_on_an_encoder_decoder_says_it_needs_a_causal_model(seq2seq_dir, monkeypatch, capsys):
    line = user_error(chat_main, [str(seq2seq_dir)], capsys, monkeypatch=monkeypatch)
    assert "encoder-decoder" in line and "decoder-only (causal)" in line


def test_model_name_of_a_merged_dir_is_its_run(tmp_path):
    assert model_name(tmp_path / "chat" / "merged") == "chat"
    assert model_name(tmp_path / "lm") == "lm"
