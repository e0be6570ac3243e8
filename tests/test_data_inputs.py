"""The data package with bad and awkward input: files named in errors, per-source text columns, --sample_by,
--errors, stale cache folders, zero-valued options, one reading of the corpus per run, and near-duplicates."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys

import pytest
from datasets import Dataset

from scratchlm.cli import parse_args
from scratchlm.corpus import load_documents, near_duplicate_keep_indices
from scratchlm.tokenization import train_tokenizer
from scratchlm.training.arguments import FinetuneDataArguments, PretrainingDataArguments, ScratchLMTrainingArguments
from scratchlm.training.data import (
    PretrainingDataSettings,
    TableSettings,
    build_classification_data,
    build_pretraining_data,
    check_max_length,
    load_splits,
    load_table,
    prepare_documents,
)

SENTENCES = [f"Sentence number {n} tells of {w} and of nothing else at all." for n, w in
             enumerate(["ships", "shoes", "sealing wax", "cabbages", "kings", "the sea", "pigs", "wings"] * 3)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([" ".join(SENTENCES)] * 4, vocab_size=300, show_progress=False)


def pretraining_args(tmp_path, **overrides) -> PretrainingDataSettings:
    """The settings `scratchlm-pretrain` makes of these data options."""
    return PretrainingDataArguments(data_cache_dir=str(tmp_path / "cache"), **overrides).to_settings()


def training_documents(settings: PretrainingDataSettings):
    return load_documents(settings.train, cache_dir=settings.intermediate_dir)


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


# ----------------------------------------------------------------------------- fine-tuning tables name the file


def test_table_errors_name_the_file_and_line(tmp_path):
    broken = write(tmp_path / "broken.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl line 2: invalid JSON"):
        load_table(broken)
    not_records = write(tmp_path / "rows.json", json.dumps({"rows": [{"text": "a"}], "version": 2}, indent=2))
    with pytest.raises(ValueError, match=r"rows\.json: a JSON object \(keys: rows, version\) where a list of records"):
        load_table(not_records)
    scalars = write(tmp_path / "scalars.jsonl", '{"text": "a"}\n["b"]\n')
    with pytest.raises(ValueError, match=r"scalars\.jsonl line 2: expected a JSON object \(a record\), got list"):
        load_table(scalars)
    header_only = write(tmp_path / "header.csv", "text,label\n")
    with pytest.raises(ValueError, match=r"header\.csv: a header but no rows"):
        load_table(header_only)
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(ValueError, match=r"table file is empty: .*empty\.csv"):
        load_table(empty)
    latin1 = write(tmp_path / "latin1.csv", "text,label\ncaf\xe9,1\n".encode("latin-1"))
    not_utf8 = r"latin1\.csv: invalid UTF-8 at byte offset 14.*re-save the file as UTF-8"
    with pytest.raises(ValueError, match=not_utf8) as error:
        load_table(latin1)
    assert "--errors" not in str(error.value)  # scratchlm-finetune has no --errors option
    one_record = write(tmp_path / "one.json", json.dumps({"text": "a", "label": 1}))  # JSON lines, one line
    assert load_table(one_record)["text"] == ["a"]


def test_a_missing_label_is_reported_at_its_row_in_the_file_after_the_hold_out_shuffle(tmp_path, tokenizer):
    rows = [f"review {n},{n % 2}" for n in range(1, 21)]
    rows[6] = "review 7,"  # the 7th data row has no label
    path = write(tmp_path / "reviews.csv", "text,label\n" + "\n".join(rows) + "\n")
    train, validation, test = load_splits(TableSettings(train_files=(path,), validation_split_fraction=0.5), seed=3)
    with pytest.raises(ValueError, match=r"reviews\.csv row 7: no label in column 'label'"):
        build_classification_data(train, validation, test, tokenizer)


# --------------------------------------------------------------------------------------- pretraining input


def test_pretraining_accepts_errors_replace_and_its_strict_error_says_so(tmp_path, tokenizer):
    path = write(tmp_path / "bad.txt", b"\n\n".join(s.encode() for s in SENTENCES[:12]) + b"\n\ncaf\xe9 au lait\n")
    with pytest.raises(ValueError, match=r"bad\.txt: invalid UTF-8 at byte offset \d+.*--errors replace"):
        training_documents(pretraining_args(tmp_path, train_files=[path]))
    (args,) = parse_args([PretrainingDataArguments], ["--train_files", path, "--errors", "replace",
                                                      "--data_cache_dir", str(tmp_path / "cache")])
    documents = training_documents(args.to_settings())
    assert documents[len(documents) - 1]["text"] == "caf\ufffd au lait"
    assert build_pretraining_data(args.to_settings(), tokenizer, 16).train_tokens > 0


@pytest.mark.parametrize("errors", ["strict", "replace"])
def test_a_cut_off_gzip_is_named_in_pretraining_and_tables(tmp_path, errors):
    text = "\n\n".join(SENTENCES).encode()
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gzip.compress(text)[:100])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(cut))}: not a readable gzip file"):
        training_documents(pretraining_args(tmp_path, train_files=[str(cut)], errors=errors))
    table = tmp_path / "cut.jsonl.gz"
    table.write_bytes(gzip.compress("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES).encode())[:100])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(table))}: not a readable gzip file"):
        load_table(str(table))


def test_per_source_text_columns_in_pretraining(tmp_path, data_dir):
    song = data_dir / "chinese-poetry" / "宋词" / "ci.song.0.json"
    reviews = data_dir / "waimai_10k" / "waimai_10k.csv"
    (args,) = parse_args([PretrainingDataArguments], [
        "--train_files", str(song), str(reviews), "--text_column", f"{song}:paragraphs", "waimai_10k.csv:review",
        "--max_train_documents", "1200", "--data_cache_dir", str(tmp_path / "cache"),
    ])
    texts = list(training_documents(args.to_settings())["text"])
    assert texts[0] == "\n".join(json.loads(song.read_text(encoding="utf-8"))[0]["paragraphs"])
    assert texts[1000].startswith("很快，好吃") and len(texts) == 1200
    in_order = pretraining_args(tmp_path, train_files=[str(song), str(reviews)], text_column=["paragraphs", "review"],
                                max_train_documents=1200)
    assert list(training_documents(in_order)["text"]) == texts


def test_too_few_documents_to_hold_out_names_the_option(tmp_path):
    one_paragraph = write(tmp_path / "poem.txt", "\n".join(SENTENCES) + "\n")  # no blank line: one document
    with pytest.raises(ValueError, match=r"from 1 training document.*--validation_files.*--sample_by line"):
        prepare_documents(pretraining_args(tmp_path, train_files=[one_paragraph]))
    documents = prepare_documents(pretraining_args(tmp_path, train_files=[one_paragraph], sample_by="line"))
    assert len(documents.train) + len(documents.validation) == len(set(SENTENCES))


def test_the_tokenizer_and_the_packer_share_one_reading_of_the_corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    write(path, "\n\n".join(SENTENCES[:20]) + "\n")
    args = pretraining_args(tmp_path, train_files=[str(path)])
    documents = prepare_documents(args)
    trained = train_tokenizer(documents.training_texts(), vocab_size=300, show_progress=False)
    write(path, "\n\n".join(s.upper() for s in SENTENCES[:20]) + "\n")  # the file changes after the reading
    data = build_pretraining_data(args, trained, 8, documents=documents)
    packed = trained.decode([int(t) for i in range(len(data.train)) for t in data.train[i]["input_ids"]],
                            skip_special_tokens=True)
    assert "Sentence number 0 tells of ships" in packed and "SENTENCE" not in packed

    # A stream held out by bytes: the tokenizer's pass also finds the split, which matches the loaded corpus's.
    write(path, "\n\n".join(SENTENCES[:20]) + "\n")
    streamed = prepare_documents(pretraining_args(tmp_path, train_files=[str(path)], streaming=True))
    assert list(streamed.training_texts()) == SENTENCES[:20]  # the stream, held-out tail included, read once
    assert list(streamed.validation["text"]) == list(prepare_documents(args).validation["text"]) == SENTENCES[18:20]
    assert [row["text"] for row in streamed.train] == SENTENCES[:18]


def test_a_killed_cache_write_is_cleaned_up_by_the_next_run(tmp_path, tokenizer):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    cache = tmp_path / "cache"
    stale = cache / f".tmp-{'ab' * 16}-{dead_pid}-0123abcd"
    in_progress = cache / f".tmp-{'cd' * 16}-{os.getpid()}-4567cdef"
    for folder in (stale, in_progress):
        (folder / "train").mkdir(parents=True)
    path = write(tmp_path / "corpus.txt", "\n\n".join(SENTENCES) + "\n")
    build_pretraining_data(pretraining_args(tmp_path, train_files=[path]), tokenizer, 8)
    assert not stale.exists() and in_progress.exists()
    assert not [p for p in cache.iterdir() if re.match(r"\.tmp-", p.name) and p != in_progress]


# ------------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(("argv", "message"), [
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be a positive integer, got 0"),
    (["--max_steps", "0"], "--max_steps 0 trains nothing"),
    (["--num_train_epochs", "0"], "--num_train_epochs must be positive"),
])
def test_zero_training_options_are_refused_naming_the_flag(tmp_path, argv, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_args([ScratchLMTrainingArguments], ["--output_dir", str(tmp_path / "run"), *argv])


def test_data_options_have_one_meaning_per_command(tmp_path):
    with pytest.raises(ValueError, match="--block_size must be a positive integer, got 0"):
        parse_args([PretrainingDataArguments], ["--block_size", "0"])
    with pytest.raises(ValueError, match="--max_length must be a positive integer, got 0"):
        parse_args([FinetuneDataArguments], ["--max_length", "0"])
    # One flag, one meaning: fine-tuning's old alias of --max_length is gone, not silently another option.
    for old in ("--block_size", "--validation_fraction"):
        with pytest.raises(ValueError, match=f"not used.*{old}"):
            parse_args([FinetuneDataArguments], [old, "0.2"])
    (finetune_data,) = parse_args([FinetuneDataArguments], ["--max_length", "64"])
    assert finetune_data.max_length == 64
    assert not {"streaming", "block_size", "near_deduplicate"} & set(vars(finetune_data))

    class Config:
        max_position_embeddings = 128

    check_max_length(128, Config())
    with pytest.raises(ValueError, match=r"max_length=129 is larger than the model's context .*--max_length 128"):
        check_max_length(129, Config())


# ------------------------------------------------------------------------------------------- near-duplicates


def test_planted_near_duplicates_are_dropped_and_distinct_documents_kept(data_dir):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    paragraphs = list(dict.fromkeys(p.strip() for p in text[:200_000].split("\n\n") if len(p.strip()) >= 50))
    copies = [p[: len(p) // 2] + "#" + p[len(p) // 2 + 1 :] for p in paragraphs if len(p) >= 300][::3]
    documents = Dataset.from_dict({"text": paragraphs + copies})
    kept = near_duplicate_keep_indices(documents, 0.85, min_chars=50)
    assert kept == list(range(len(paragraphs))) and len(copies) >= 10
    # Shorter than min_chars: never dropped, however similar.
    short = Dataset.from_dict({"text": ["ROMEO: yes", "ROMEO: yes!", "ROMEO: yes"]})
    assert near_duplicate_keep_indices(short, 0.85, min_chars=50) == [0, 1, 2]
