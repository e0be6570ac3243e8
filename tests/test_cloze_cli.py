"""`scratchlm-cloze` as a command: it never replaces its own input or an existing file unasked, never leaves half a
file, and names the input file it cannot read. (What the questions are: tests/test_qa.py.)"""

from __future__ import annotations

import json

import pytest

from scratchlm.training.cloze import main

TEXT = ("The Rhine flows through Basel. In 1815 the Congress of Vienna fixed its course.\n\n"
        "It is 1,230 kilometres long and reaches the North Sea at Rotterdam.\n")
ROW = {"id": "q1", "title": "Rhine", "context": "In 1815 the Congress of Vienna fixed the course of the Rhine.",
       "question": "When was the course fixed?", "answers": {"text": ["1815"], "answer_start": [3]}}


def one_line_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scratchlm-cloze: error: ") and "\n" not in error
    return error


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.jsonl").write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    (tmp_path / "data" / "notes.txt").write_text(TEXT, encoding="utf-8")
    return tmp_path / "data"


@pytest.mark.parametrize("flags,output", [
    (["--train_files", "{data}/mine.jsonl"], "{data}/mine.jsonl"),
    (["--train_files", "{data}/mine.jsonl"], "{data}/../data/mine.jsonl"),  # another spelling of it
    (["--train_files", "{data}/*.jsonl"], "{data}/mine.jsonl"),  # a glob
    (["--train_files", "{data}"], "{data}/mine.jsonl"),  # a directory
    (["--text_files", "{data}/notes.txt"], "{data}/notes.txt"),
    (["--text_files", "{data}"], "{data}/notes.txt"),
])
def test_an_output_that_is_an_input_is_refused(inputs, flags, output, capsys):
    before = {path.name: path.read_bytes() for path in inputs.iterdir()}
    argv = [flag.format(data=inputs) for flag in flags]
    for overwrite in ([], ["--overwrite_output"]):
        error = one_line_error([*argv, "--output_file", output.format(data=inputs), *overwrite], capsys)
        assert f"is the input {inputs / output.split('/')[-1]}; write the cloze questions to another file" in error
    assert {path.name: path.read_bytes() for path in inputs.iterdir()} == before


def test_an_existing_output_needs_overwrite_output(inputs, tmp_path, capsys):
    output = tmp_path / "cloze.jsonl"
    output.write_text("earlier questions\n", encoding="utf-8")
    argv = ["--text_files", str(inputs / "notes.txt"), "--output_file", str(output)]
    error = one_line_error(argv, capsys)
    assert f"--output_file {output} exists; pass --overwrite_output to replace it" in error
    assert output.read_text(encoding="utf-8") == "earlier questions\n"
    main([*argv, "--overwrite_output"])
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert rows and all(row["context"][row["answers"]["answer_start"][0]:].startswith(row["answers"]["text"][0])
                        for row in rows)


def test_a_write_that_fails_midway_leaves_the_previous_file(file_size_limit, inputs, tmp_path, capsys):
    """A disk that fills while the questions are written (once: a 0-byte cloze file) leaves the earlier file."""
    output = tmp_path / "cloze.jsonl"
    output.write_text("earlier questions\n" * 20, encoding="utf-8")
    argv = ["--text_files", str(inputs / "notes.txt"), "--output_file", str(output), "--overwrite_output"]
    with file_size_limit(100):  # the questions need more than 100 bytes
        error = one_line_error(argv, capsys)
    assert "File too large" in error
    assert output.read_text(encoding="utf-8") == "earlier questions\n" * 20
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cloze.jsonl", "data"]  # no partial file left


def test_broken_published_json_is_named(tmp_path, capsys):
    published = tmp_path / "train.json"
    published.write_text(json.dumps({"data": [{"title": "Rhine", "paragraphs": []}]})[:30], encoding="utf-8")
    error = one_line_error(["--train_files", str(published), "--output_file", str(tmp_path / "cloze.jsonl")], capsys)
    assert str(published) in error and "Unterminated string" in error


@pytest.mark.parametrize("name,content", [("broken.txt.gz", b"Two dogs\n"), ("rows.jsonl.gz", b"Two dogs\n")])
def test_an_input_that_is_not_gzip_is_named(tmp_path, name, content, capsys):
    (tmp_path / name).write_bytes(content)
    flag = "--text_files" if ".txt" in name else "--train_files"
    error = one_line_error([flag, str(tmp_path / name), "--output_file", str(tmp_path / "cloze.jsonl")], capsys)
    assert f"{tmp_path / name}: not a readable gzip file (Not a gzipped file (b'Tw'))" in error
