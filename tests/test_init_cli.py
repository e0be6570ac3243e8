"""`scratchlm-init`: a randomly initialised model, sized and wired for its tokenizer."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig

from scratchlm.modeling.cli import init_main
from scratchlm.tokenization import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, data_dir):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:30_000]
    directory = tmp_path_factory.mktemp("tok")
    train_tokenizer([text], vocab_size=400, show_progress=False).save_pretrained(directory)
    return directory


def test_init_with_tokenizer_writes_its_ids_into_config_and_generation_config(tokenizer_dir, tmp_path):
    output = tmp_path / "init"
    init_main(["--preset", "tiny", "--tokenizer_name_or_path", str(tokenizer_dir), "--output_dir", str(output),
               "--config-overrides", "num_hidden_layers=3,max_position_embeddings=256"])
    tokenizer = AutoTokenizer.from_pretrained(output)
    config = json.loads((output / "config.json").read_text())
    generation = GenerationConfig.from_pretrained(output)
    assert config["vocab_size"] == len(tokenizer) == 400
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_pretrained(output)
    assert model.config.num_hidden_layers == 3 and model.config.max_position_embeddings == 256


def user_error(main, argv, capsys) -> str:
    """The one line a console command prints for a user error (it exits with status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_init_refuses_to_overwrite_and_rejects_bad_overrides(tmp_path, capsys):
    output = tmp_path / "init"
    init_main(["--preset", "tiny", "--output_dir", str(output)])
    assert "--overwrite_output" in user_error(init_main, ["--preset", "tiny", "--output_dir", str(output)], capsys)
    init_main(["--preset", "tiny", "--output_dir", str(output), "--overwrite_output", "--seed", "3"])
    x = str(tmp_path / "x")
    assert "hiden_size" in user_error(init_main, ["--output_dir", x, "--config_overrides", "hiden_size=64"], capsys)
    assert "not of the form field=value" in user_error(
        init_main, ["--output_dir", x, "--config_overrides", "hidden_size"], capsys)
    assert "divisible" in user_error(
        init_main, ["--preset", "tiny", "--output_dir", x, "--config_overrides", "hidden_size=130"], capsys)


def test_overrides_are_the_fields_of_the_architecture_being_built(tmp_path, capsys):
    # The encoder-decoder's depths were refused when every override was checked against the decoder's config.
    output = tmp_path / "seq2seq"
    init_main(["--architecture", "seq2seq", "--preset", "tiny", "--output_dir", str(output),
               "--config_overrides", "encoder_layers=3,decoder_layers=1"])
    model = AutoModelForSeq2SeqLM.from_pretrained(output)
    assert (model.config.encoder_layers, model.config.decoder_layers) == (3, 1)
    assert (len(model.model.encoder.layers), len(model.model.decoder.layers)) == (3, 1)
    x = str(tmp_path / "x")
    assert user_error(init_main, ["--output_dir", x, "--config_overrides", "encoder_layers=3"], capsys).endswith(
        "unknown ScratchLMConfig field(s) in --config_overrides: encoder_layers")
    assert user_error(init_main, ["--architecture", "seq2seq", "--output_dir", x, "--config_overrides",
                                  "classifier_pooling=mean"], capsys).endswith(
        "unknown ScratchLMSeq2SeqConfig field(s) in --config_overrides: classifier_pooling")


@pytest.mark.parametrize("architecture, config_class", [("decoder", "ScratchLMConfig"),
                                                         ("seq2seq", "ScratchLMSeq2SeqConfig")])
def test_an_override_of_the_wrong_type_is_one_line_naming_the_field_and_value(architecture, config_class, tmp_path,
                                                                              capsys):
    message = user_error(init_main, ["--architecture", architecture, "--preset", "tiny", "--output_dir",
                                     str(tmp_path / "x"), "--config_overrides", "hidden_dropout=abc"], capsys)
    assert message == (f"scratchlm-init: error: {config_class}.hidden_dropout must be a number in [0, 1), "
                       "got 'abc'")
    assert not (tmp_path / "x").exists()


def test_old_flag_spellings_still_work(tmp_path, caplog):
    init_main(["--preset", "tiny", "--output", str(tmp_path / "old")])
    init_main(["--preset", "tiny", "--output", str(tmp_path / "old"), "--overwrite"])
    assert (tmp_path / "old" / "config.json").is_file()
    assert "--output is deprecated" in caplog.text and "--overwrite is deprecated" in caplog.text


def test_init_and_convert_refuse_an_existing_file_as_output(tmp_path, capsys):
    from scratchlm.modeling.cli import convert_main

    target = tmp_path / "model.bin"
    target.write_bytes(b"keep me")
    message = user_error(init_main, ["--preset", "tiny", "--output_dir", str(target)], capsys)
    assert "is an existing file" in message and str(target) in message
    init_main(["--preset", "tiny", "--output_dir", str(tmp_path / "scratch")])
    message = user_error(convert_main, ["--to_llama", str(tmp_path / "scratch"), "--output_dir", str(target)], capsys)
    assert "is an existing file" in message
    assert target.read_bytes() == b"keep me"
