"""`scratchlm-init`: a randomly initialised model, sized and wired for its tokenizer."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

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
    init_main(["--preset", "tiny", "--tokenizer", str(tokenizer_dir), "--output", str(output),
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


def test_init_refuses_to_overwrite_and_rejects_bad_overrides(tmp_path):
    output = tmp_path / "init"
    init_main(["--preset", "tiny", "--output", str(output)])
    with pytest.raises(FileExistsError, match="--overwrite"):
        init_main(["--preset", "tiny", "--output", str(output)])
    init_main(["--preset", "tiny", "--output", str(output), "--overwrite", "--seed", "3"])
    with pytest.raises(ValueError, match="unknown ScratchLMConfig field.*hiden_size"):
        init_main(["--preset", "tiny", "--output", str(tmp_path / "x"), "--config-overrides", "hiden_size=64"])
    with pytest.raises(ValueError, match="not of the form field=value"):
        init_main(["--preset", "tiny", "--output", str(tmp_path / "x"), "--config-overrides", "hidden_size"])
    with pytest.raises(ValueError, match="hidden_size.*divisible"):
        init_main(["--preset", "tiny", "--output", str(tmp_path / "x"), "--config-overrides", "hidden_size=130"])
