"""`scratchlm-tokenizer`: flags, config file, the report (coverage, readable tokens), the output directory guard."""

from __future__ import annotations

import csv
import json
import logging

import pytest
from transformers import AutoTokenizer

from scratchlm.tokenization.cli import main as cli_main


@pytest.fixture(scope="module")
def mixed_corpus(data_dir, tmp_path_factory):
    """100 kB of Shakespeare as .txt and 500 Song ci as .jsonl (their text in `paragraphs`)."""
    corpus = tmp_path_factory.mktemp("corpus")
    (corpus / "shakespeare.txt").write_text(
        (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:100_000], encoding="utf-8"
    )
    poems = json.loads((data_dir / "chinese-poetry" / "宋词" / "ci.song.1000.json").read_text(encoding="utf-8"))
    with (corpus / "song.jsonl").open("w", encoding="utf-8") as handle:
        for poem in poems[:500]:
            handle.write(json.dumps({"paragraphs": poem["paragraphs"]}, ensure_ascii=False) + "\n")
    return corpus


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_cli_end_to_end_report(mixed_corpus, tmp_path, capsys):
    output = tmp_path / "tok"
    cli_main([
        "--train_files", str(mixed_corpus / "*.txt"), str(mixed_corpus / "song.jsonl"), "--text_column", "paragraphs",
        "--vocab_size", "1000", "--min_frequency", "3", "--extra_tokens", "ROMEO", "--output_dir", str(output),
        "--show_progress", "false",
    ])
    report = capsys.readouterr().out
    assert f"saved tokenizer to {output}: vocabulary 1000, pre-tokenizer qwen2" in report
    assert "bytes/token" in report and "tokens/character" in report
    assert "distinct characters" in report and "distinct Chinese characters" in report

    loaded = AutoTokenizer.from_pretrained(output, trust_remote_code=True)
    assert len(loaded) == 1000
    assert loaded.convert_ids_to_tokens(4) == "ROMEO"
    text = "ROMEO:\n明月几时有"
    assert loaded.decode(loaded.encode(text)) == text
    # Tokens are shown as text: the newest tokens of a vocabulary learnt mostly on Chinese include Chinese words,
    # never byte-level stand-ins such as "æ".
    newest = report.split("newest tokens: ", 1)[1].splitlines()[0].split(" | ")
    assert len(newest) == 16
    assert any("\u4e00" <= character <= "\u9fff" for token in newest for character in token), newest
    assert not any(character in "ÃÂæåçèéäĠĊ" for token in newest for character in token), newest
    assert report.split("sample (␣ is a space): ", 1)[1].splitlines()[0].replace(" | ", "") == "First␣Citizen:"


def test_deprecated_flags_still_work(tmp_path, capsys, caplog):
    (tmp_path / "a.txt").write_text("some words and more words\n" * 50)
    with caplog.at_level(logging.WARNING):
        cli_main(["--files", str(tmp_path / "a.txt"), "--vocab-size", "300", "--output", str(tmp_path / "tok"),
                  "--show-progress", "false"])
    assert "--files is deprecated" in caplog.text and "use --train_files" in caplog.text
    assert "--output is deprecated" in caplog.text and "use --output_dir" in caplog.text
    assert (tmp_path / "tok" / "tokenizer.json").is_file()


def test_output_dir_guard(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("some words and more words\n" * 50)
    train = ["--train_files", str(tmp_path / "a.txt"), "--vocab_size", "300", "--show_progress", "false"]
    tok = tmp_path / "tok"
    cli_main([*train, "--output_dir", str(tok)])
    capsys.readouterr()
    assert "already holds a tokenizer (tokenizer.json)" in _error(capsys, [*train, "--output_dir", str(tok)])

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "tokenizer.json").write_text("{}")
    error = _error(capsys, [*train, "--output_dir", str(model)])
    assert error.startswith("scratchlm-tokenizer: error: --output_dir") and "holds a model (config.json)" in error
    assert (model / "tokenizer.json").read_text() == "{}"  # refused before training, nothing replaced

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    assert "is not empty" in _error(capsys, [*train, "--output_dir", str(foreign)])
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert "exists and is not a directory" in _error(capsys, [*train, "--output_dir", str(not_a_dir)])

    cli_main([*train, "--output_dir", str(model), "--overwrite_output"])
    assert AutoTokenizer.from_pretrained(model, trust_remote_code=True).pretokenizer == "qwen2"
    (tmp_path / "empty").mkdir()
    cli_main([*train, "--output_dir", str(tmp_path / "empty")])


def test_cli_config_file_and_errors(tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait\n" * 20)
    config = tmp_path / "tok.yaml"
    config.write_text(
        f"train_files: [{tmp_path / 'bad.txt'}]\nvocab_size: 300\noutput_dir: {tmp_path / 'tok'}\n"
        "show_progress: false\npretokenizer: scratchlm-v1\n"
    )
    assert "bad.txt: invalid UTF-8 at byte offset 3" in _error(capsys, ["--config", str(config)])
    cli_main([str(config), "--errors", "replace"])
    assert "saved tokenizer to" in capsys.readouterr().out
    assert AutoTokenizer.from_pretrained(tmp_path / "tok", trust_remote_code=True).pretokenizer == "scratchlm-v1"
    assert "corpus file not found: 'nope.txt'" in _error(capsys, ["--train_files", "nope.txt", "--output_dir", "x"])
    assert "too small" in _error(capsys, ["--train_files", "nope.txt", "--vocab_size", "100", "--output_dir", "x"])
    assert "--train_files and/or --dataset_name" in _error(capsys, ["--output_dir", str(tmp_path / "y")])


def test_dataset_name_and_a_text_column_per_source(data_dir, tmp_path, capsys):
    import datasets

    datasets.Dataset.from_dict({"content": ["清风明月本无价"] * 200}).save_to_disk(tmp_path / "saved")
    poems = tmp_path / "poems.jsonl"
    poems.write_text('{"paragraphs": ["明月几时有？", "把酒问青天。"]}\n' * 100, encoding="utf-8")
    reviews = data_dir / "waimai_10k" / "waimai_10k.csv"
    cli_main([
        "--dataset_name", str(tmp_path / "saved"), "--train_files", str(poems), str(reviews),
        "--text_column", f"{tmp_path / 'saved'}:content", f"{poems}:paragraphs", f"{reviews}:review",
        "--vocab_size", "600", "--output_dir", str(tmp_path / "tok"), "--show_progress", "false",
    ])
    with reviews.open(encoding="utf-8", newline="") as handle:
        review_rows = sum(1 for row in csv.DictReader(handle) if row["review"].strip())
    # Every source was read, each through its own column: 200 rows, 100 poems and the reviews.
    assert f"{200 + 100 + review_rows} documents" in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok", trust_remote_code=True)
    assert len(tokenizer.encode("清风明月本无价")) < len("清风明月本无价".encode())
