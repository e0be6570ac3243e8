"""`scratchlm-export --format gguf`: the file reads back with `gguf.GGUFReader` holding the weights (permuted for
llama.cpp's rotary layout), the hyper-parameters and the tokenizer. Running it in llama.cpp needs a llama.cpp build,
too slow for the suite: benchmarks/bench_gguf.py does that (tokenization and greedy text against transformers)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="scratchlm-export needs the gguf package (pip install gguf)")

from scratchlm.inference.export import main as export_main  # noqa: E402
from scratchlm.inference.gguf_export import permute_for_llama_cpp  # noqa: E402
from scratchlm.modeling import ScratchLMForCausalLM  # noqa: E402


def _fields(reader):
    return lambda name: reader.fields[name].contents()


def test_f16_export_holds_weights_hyperparameters_and_tokenizer(tiny_causal_lm_dir, tmp_path, capsys):
    from transformers import AutoTokenizer

    output = tmp_path / "tiny.gguf"
    export_main([str(tiny_causal_lm_dir), "--format", "gguf", "--outtype", "f16", "--output_file", str(output)])
    assert "wrote" in capsys.readouterr().out
    reader = gguf.GGUFReader(output)
    value = _fields(reader)
    model = ScratchLMForCausalLM.from_pretrained(tiny_causal_lm_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    config = model.config

    assert value("general.architecture") == "llama"
    assert value("llama.block_count") == config.num_hidden_layers
    assert value("llama.embedding_length") == config.hidden_size
    assert value("llama.attention.head_count") == config.num_attention_heads
    assert value("llama.attention.head_count_kv") == config.num_key_value_heads
    assert value("llama.rope.dimension_count") == config.head_dim
    assert value("tokenizer.ggml.model") == "gpt2"
    assert value("tokenizer.ggml.pre") == "qwen2"
    assert value("tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert value("tokenizer.ggml.add_bos_token") is False
    assert value("tokenizer.chat_template") == tokenizer.chat_template
    tokens = value("tokenizer.ggml.tokens")
    assert len(tokens) == config.vocab_size
    assert tokens[tokenizer.eos_token_id] == tokenizer.eos_token
    assert [tokens[i] for i in tokenizer.encode("hello world")] == tokenizer.convert_ids_to_tokens(
        tokenizer.encode("hello world")
    )
    merges = json.loads((tiny_causal_lm_dir / "tokenizer.json").read_text())["model"]["merges"]
    assert len(value("tokenizer.ggml.merges")) == len(merges)

    tensors = {tensor.name: tensor for tensor in reader.tensors}
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    state = model.state_dict()
    embedding = tensors["token_embd.weight"]
    assert embedding.tensor_type == gguf.GGMLQuantizationType.F16
    np.testing.assert_array_equal(embedding.data, state["model.embed_tokens.weight"].half().numpy())
    query = permute_for_llama_cpp(state["model.layers.1.self_attn.q_proj.weight"], config.num_attention_heads)
    np.testing.assert_array_equal(tensors["blk.1.attn_q.weight"].data, query.half().numpy())
    key = permute_for_llama_cpp(state["model.layers.0.self_attn.k_proj.weight"], config.num_key_value_heads)
    np.testing.assert_array_equal(tensors["blk.0.attn_k.weight"].data, key.half().numpy())
    norm = tensors["output_norm.weight"]
    assert norm.tensor_type == gguf.GGMLQuantizationType.F32
    np.testing.assert_array_equal(norm.data, state["model.norm.weight"].numpy())
    assert len(tensors) == 1 + 1 + 9 * config.num_hidden_layers


def test_permutation_interleaves_rotary_pairs():
    # One head of width 4: transformers pairs rows (0, 2) and (1, 3); llama.cpp wants pairs adjacent.
    weight = torch.arange(4.0).reshape(4, 1)
    assert permute_for_llama_cpp(weight, 1).flatten().tolist() == [0.0, 2.0, 1.0, 3.0]


def test_q8_0_export_is_smaller_and_quantized(tiny_causal_lm_dir, tmp_path):
    export_main([str(tiny_causal_lm_dir), "--outtype", "q8_0", "--output_dir", str(tmp_path)])
    output = tmp_path / f"{tiny_causal_lm_dir.name}-q8_0.gguf"
    tensors = {tensor.name: tensor for tensor in gguf.GGUFReader(output).tensors}
    assert tensors["blk.0.ffn_up.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def test_unknown_pretokenizer_fails_with_reason(tiny_causal_lm_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_causal_lm_dir, model_dir)
    state = json.loads((model_dir / "tokenizer.json").read_text())
    split = state["pre_tokenizer"]["pretokenizers"][0]
    split["pattern"]["Regex"] = split["pattern"]["Regex"].replace(r"\p{N}|", r"\p{N}{1,5}|")
    (model_dir / "tokenizer.json").write_text(json.dumps(state))
    output = tmp_path / "never.gguf"
    with pytest.raises(SystemExit) as exit_info:
        export_main([str(model_dir), "--output_file", str(output)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "scratchlm-export: error:" in message and "llama.cpp has no pre-tokenizer" in message
    assert not output.exists()


def test_bad_arguments_fail_before_work(tiny_causal_lm_dir, tmp_path, capsys):
    for argv, expected in (
        ([str(tiny_causal_lm_dir), "--outtype", "q4", "--output_file", str(tmp_path / "x.gguf")], "--outtype"),
        ([str(tiny_causal_lm_dir), "--format", "onnx", "--output_file", str(tmp_path / "x.gguf")], "--format"),
        ([str(tiny_causal_lm_dir)], "--output_file"),
        ([str(tmp_path / "missing"), "--output_file", str(tmp_path / "x.gguf")], "does not exist"),
    ):
        with pytest.raises(SystemExit):
            export_main(argv)
        assert expected in capsys.readouterr().err


def test_the_old_flag_names_model_dir_and_output_still_work_with_a_deprecation_warning(tiny_causal_lm_dir, tmp_path,
                                                                                      caplog):
    output = tmp_path / "old-names.gguf"
    with caplog.at_level("WARNING", logger="scratchlm.cli"):
        export_main(["--model_dir", str(tiny_causal_lm_dir), "--output", str(output)])
    assert gguf.GGUFReader(output).fields["general.name"].contents() == tiny_causal_lm_dir.name
    assert "--model_dir is deprecated and will be removed in the next release: use --model_name_or_path" in caplog.text
    assert "--output is deprecated and will be removed in the next release: use --output_file" in caplog.text


def test_wrote_is_printed_once_and_a_merged_dir_is_named_after_its_run(tiny_causal_lm_dir, tmp_path, capsys, caplog):
    merged = tmp_path / "chat" / "merged"
    shutil.copytree(tiny_causal_lm_dir, merged)
    export_main([str(merged), "--outtype", "q8_0", "--output_dir", str(tmp_path / "exports")])
    output = tmp_path / "exports" / "chat-q8_0.gguf"
    assert output.is_file()
    assert gguf.GGUFReader(output).fields["general.name"].contents() == "chat"
    out = capsys.readouterr()
    assert (out.out + out.err + caplog.text).count("wrote ") == 1


def test_an_encoder_decoder_is_refused_in_one_line(tiny_causal_lm_dir, tiny_seq2seq_model, tmp_path, capsys):
    model_dir = tmp_path / "s2s"
    tiny_seq2seq_model(vocab_size=400, encoder_layers=1, decoder_layers=1).save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_causal_lm_dir / name, model_dir / name)
    output = tmp_path / "s2s.gguf"
    with pytest.raises(SystemExit) as exit_info:
        export_main([str(model_dir), "--output_file", str(output)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "encoder-decoder" in err[-1] and "decoder-only ScratchLM" in err[-1]
    assert not output.exists()


# Runs scratchlm-export with a limit on the size of any file it writes (RLIMIT_FSIZE): past it, the write fails for
# real mid-file, as on a full disk (EFBIG: Python ignores SIGXFSZ), or with SIGXFSZ's default action the process is
# killed there, as by kill -9 (no cleanup runs).
_EXPORT_WITH_FILE_SIZE_LIMIT = """
import resource, signal, sys
from scratchlm.inference.export import main
if sys.argv[1] == "kill":
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
main(sys.argv[3:])
"""


def _export_with_file_size_limit(how: str, limit: int, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", _EXPORT_WITH_FILE_SIZE_LIMIT, how, str(limit), *argv],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits")
def test_a_write_cut_short_leaves_the_previous_export_as_it_was(tiny_causal_lm_dir, tmp_path):
    output = tmp_path / "model.gguf"
    argv = [str(tiny_causal_lm_dir), "--output_file", str(output), "--overwrite_output"]
    # Killed mid-write, with no export before: nothing under the final name, so a re-run is not told it is done.
    killed = _export_with_file_size_limit("kill", 100_000, argv)
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr
    assert not output.exists()

    export_main([str(tiny_causal_lm_dir), "--output_file", str(output)])
    good = output.read_bytes()
    assert len(good) > 200_000
    killed = _export_with_file_size_limit("kill", len(good) // 2, argv)
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr
    assert output.read_bytes() == good

    full = _export_with_file_size_limit("full-disk", len(good) // 2, argv)
    assert full.returncode == 2, full.stderr
    line = full.stderr.strip().splitlines()[-1]
    assert line.startswith("scratchlm-export: error: writing") and str(output) in line and "as it was" in line
    assert output.read_bytes() == good
    leftovers = {path.name for path in tmp_path.iterdir()} - {output.name}
    assert all(name.endswith(".partial") for name in leftovers)  # only the two killed runs' temporary files
    assert len(leftovers) == 2
