"""`scratchlm-generate`: one output line per input line, batched, for encoder-decoder and decoder-only models."""

from __future__ import annotations

import io
import shutil

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, BartConfig, BartForConditionalGeneration

from scratchlm.inference.generate import main
from scratchlm.modeling import init_seq2seq_model
from scratchlm.modeling.initialization import init_model
from scratchlm.tokenization.encoding import encode_with_eos
from scratchlm.training.data.seq2seq import train_joint_tokenizer

LINES = ["A dog runs on the beach.", "Two men play football in a park.", "", "The cat sleeps on a red sofa.",
         "A woman reads a book under a tree, and children are swimming in the lake behind her."]


@pytest.fixture(scope="module")
def tokenizer():
    pairs = Dataset.from_dict({"source": LINES * 4, "target": [["Ein Hund rennt am Strand. Kinder schwimmen."]] * 20})
    return train_joint_tokenizer(pairs, vocab_size=350, min_frequency=1)


@pytest.fixture(scope="module")
def seq2seq_dir(tmp_path_factory, tokenizer, tiny_seq2seq_sizes):
    path = tmp_path_factory.mktemp("scratchlm-seq2seq")
    init_seq2seq_model("tiny", tiny_seq2seq_sizes, tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory, tokenizer):
    """Another encoder-decoder (BART): its `final_logits_bias` lets a test decide what it writes."""
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=None, forced_bos_token_id=None,
    )
    model = BartForConditionalGeneration(config)
    path = tmp_path_factory.mktemp("bart")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory, tokenizer, tiny_sizes):
    path = tmp_path_factory.mktemp("causal")
    init_model("tiny", tiny_sizes, tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_input(tmp_path, lines=LINES):
    path = tmp_path / "input.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_scratchlm_seq2seq_batched_beam_output_equals_one_line_at_a_time(seq2seq_dir, tokenizer, tmp_path):
    output = tmp_path / "out.txt"
    main(["--model_name_or_path", str(seq2seq_dir), "--input_file", str(write_input(tmp_path)), "--output_file",
          str(output), "--batch_size", "2", "--num_beams", "3", "--max_new_tokens", "6", "--min_new_tokens", "3"])
    written = output.read_text(encoding="utf-8").split("\n")
    assert written[-1] == "" and len(written) - 1 == len(LINES)
    model = AutoModelForSeq2SeqLM.from_pretrained(seq2seq_dir).eval()
    for line, out in zip(LINES, written):
        if not line:
            assert out == ""
            continue
        ids, _ = encode_with_eos([line], tokenizer, 10_000)
        generated = model.generate(torch.tensor(ids), num_beams=3, max_new_tokens=6, min_new_tokens=3)
        expected = " ".join(tokenizer.decode(generated[0], skip_special_tokens=True).splitlines()).strip()
        assert out == expected and out


def test_newlines_inside_an_output_are_replaced(bart_dir, tokenizer, tmp_path):
    model = BartForConditionalGeneration.from_pretrained(bart_dir)
    newline = tokenizer("\n")["input_ids"]
    assert len(newline) == 1
    model.final_logits_bias[0, newline[0]] = 1e3  # the model now writes line breaks and nothing else
    model.final_logits_bias[0, tokenizer("dog")["input_ids"][0]] = 1e3 - 1e-3  # or this, where no_repeat bans \n\n
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    output = tmp_path / "out.txt"
    main(["--model_name_or_path", str(tmp_path / "model"), "--input_file", str(write_input(tmp_path)),
          "--output_file", str(output), "--max_new_tokens", "4", "--no_repeat_ngram_size", "2"])
    written = output.read_text(encoding="utf-8").splitlines()
    assert len(written) == len(LINES)
    ids, _ = encode_with_eos([LINES[0]], tokenizer, 10_000)
    raw = tokenizer.decode(model.generate(torch.tensor(ids), max_new_tokens=4, no_repeat_ngram_size=2)[0],
                           skip_special_tokens=True)
    assert "\n" in raw and raw.strip() and written[0] == " ".join(raw.split("\n")).strip()
    assert [bool(out) for out in written] == [bool(line) for line in LINES]


def test_decoder_only_model_continues_each_line_from_stdin(causal_dir, tokenizer, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in LINES)))
    main(["--model_name_or_path", str(causal_dir), "--batch_size", "4", "--max_new_tokens", "5"])
    written = capsys.readouterr().out.split("\n")[:-1]
    assert len(written) == len(LINES)
    model = AutoModelForCausalLM.from_pretrained(causal_dir).eval()
    for line, out in zip(LINES, written):
        if line:
            prompt = torch.tensor([tokenizer(line)["input_ids"]])
            generated = model.generate(prompt, max_new_tokens=5, do_sample=False)[0, prompt.shape[1]:]
            assert out == " ".join(tokenizer.decode(generated, skip_special_tokens=True).splitlines()).strip()


def test_compiled_decoding_writes_what_generate_writes(causal_dir, tmp_path, caplog):
    """--compile runs inference/decoding.py's static-cache loop for greedy decoding of a decoder-only model (dynamo's
    eager backend captures the same graph as inductor without minutes of kernel generation)."""
    outputs = {}
    for name, flags in (("plain", []), ("compiled", ["--compile", "true", "--compile_backend", "eager"])):
        with caplog.at_level("INFO", logger="scratchlm.inference.generate"):
            main(["--model_name_or_path", str(causal_dir), "--input_file", str(write_input(tmp_path)),
                  "--output_file", str(tmp_path / name), "--batch_size", "2", "--max_new_tokens", "12", *flags])
        outputs[name] = (tmp_path / name).read_text(encoding="utf-8")
    assert "compiled static-cache step" in caplog.text
    assert outputs["compiled"] == outputs["plain"] and len(outputs["plain"].splitlines()) == len(LINES)


def test_sampling_is_seeded(causal_dir, tmp_path):
    outputs = []
    for name in ("a", "b"):
        main(["--model_name_or_path", str(causal_dir), "--input_file", str(write_input(tmp_path, LINES[:2])),
              "--output_file", str(tmp_path / name), "--do_sample", "--top_p", "0.9", "--temperature", "1.5",
              "--max_new_tokens", "8", "--seed", "3"])
        outputs.append((tmp_path / name).read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 2


@pytest.mark.parametrize("flags,message", [
    (["--input_file", "missing.txt"], "--input_file not found: missing.txt"),
    (["--num_beams", "0"], "--num_beams must be at least 1"),
])
def test_bad_options_are_one_line_errors(seq2seq_dir, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model_name_or_path", str(seq2seq_dir), *flags])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"scratchlm-generate: error: {message}") and "\n" not in error


def one_line_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scratchlm-generate: error: ") and "\n" not in error
    return error


def test_an_output_that_is_the_input_is_refused_before_the_model_loads(tmp_path, capsys):
    prompts = write_input(tmp_path)
    (tmp_path / "sub").mkdir()
    same = tmp_path / "sub" / ".." / "input.txt"  # another spelling of the input file
    for flags in ([], ["--overwrite_output"]):
        error = one_line_error(["--model_name_or_path", str(tmp_path / "no-model"), "--input_file", str(prompts),
                                "--output_file", str(same), *flags], capsys)
        assert f"--output_file {same} is the --input_file" in error
    assert prompts.read_text(encoding="utf-8") == "".join(line + "\n" for line in LINES)


def test_an_existing_output_needs_overwrite_output(causal_dir, tmp_path, capsys):
    output = tmp_path / "out.txt"
    output.write_text("earlier outputs\n", encoding="utf-8")
    argv = ["--model_name_or_path", str(causal_dir), "--input_file", str(write_input(tmp_path)), "--output_file",
            str(output), "--max_new_tokens", "3"]
    error = one_line_error([*argv[:1], str(tmp_path / "no-model"), *argv[2:]], capsys)
    assert f"--output_file {output} exists; pass --overwrite_output to replace it" in error
    assert output.read_text(encoding="utf-8") == "earlier outputs\n"
    main([*argv, "--overwrite_output"])
    assert len(output.read_text(encoding="utf-8").splitlines()) == len(LINES)


def test_a_write_that_fails_midway_leaves_the_previous_output(file_size_limit, causal_dir, tmp_path, capsys):
    output = tmp_path / "out.txt"
    output.write_text("earlier outputs\n" * 20, encoding="utf-8")
    argv = ["--model_name_or_path", str(causal_dir), "--input_file", str(write_input(tmp_path)), "--output_file",
            str(output), "--overwrite_output", "--batch_size", "1", "--max_new_tokens", "30"]
    with file_size_limit(64):  # the new outputs need more than 64 bytes: a disk that fills
        error = one_line_error(argv, capsys)
    assert "File too large" in error
    assert output.read_text(encoding="utf-8") == "earlier outputs\n" * 20
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.txt", "out.txt"]  # no partial file left


def test_a_truncated_weights_file_is_one_line_naming_it(causal_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(causal_dir, model_dir)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    error = one_line_error(["--model_name_or_path", str(model_dir), "--input_file", str(write_input(tmp_path))],
                           capsys)
    assert str(weights) in error


@pytest.mark.parametrize("flags,message", [
    (["--dtype", "foo"], "--dtype must be one of auto, float32, bfloat16, float16, got 'foo'"),
    pytest.param(["--device", "cuda"], "--device cuda: torch finds no CUDA GPU on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    (["--device", "gpu"], "--device 'gpu' is not a device"),
    (["--model_name_or_path", "./typo"], "typo does not exist: give a model directory"),  # no Hub look-up
])
def test_bad_device_dtype_and_model_path_are_one_line_errors_before_the_model_loads(tmp_path, flags, message,
                                                                                    capsys):
    error = one_line_error(["--model_name_or_path", str(tmp_path / "model"), "--input_file",
                            str(write_input(tmp_path)), *flags], capsys)
    assert error.startswith(f"scratchlm-generate: error: {message}")


def test_an_input_past_the_context_is_one_line_naming_it_before_generating(causal_dir, seq2seq_dir, tmp_path, capsys):
    long_line = "A dog runs on the beach. " * 40  # far more than the tiny models' 128 positions
    path = write_input(tmp_path, ["A dog runs.", long_line])
    error = one_line_error(["--model_name_or_path", str(causal_dir), "--input_file", str(path),
                            "--max_new_tokens", "8"], capsys)
    assert "input line 2 is" in error and "context of 128 tokens" in error and "--max_source_length 120" in error
    error = one_line_error(["--model_name_or_path", str(seq2seq_dir), "--input_file", str(path)], capsys)
    assert "input line 2 is" in error and "--max_source_length 128" in error
    error = one_line_error(["--model_name_or_path", str(causal_dir), "--input_file", str(path),
                            "--max_new_tokens", "200"], capsys)
    assert "--max_new_tokens 200 is more than the model's context of 128" in error
    # cut as asked, the same input is translated
    main(["--model_name_or_path", str(seq2seq_dir), "--input_file", str(path), "--max_source_length", "128",
          "--max_new_tokens", "4", "--output_file", str(tmp_path / "out.txt")])
    assert len((tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()) == 2


def test_an_input_that_is_not_utf8_is_named(causal_dir, tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    error = one_line_error(["--model_name_or_path", str(causal_dir), "--input_file", str(path)], capsys)
    assert str(path) in error and "not UTF-8" in error
