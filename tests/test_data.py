"""The corpus stage (`scratchlm.corpus`: documents, cleaning, dedup) and pretraining data (`scratchlm.training.data`)
on small corpora written to tmp_path and on shared/data."""

from __future__ import annotations

import itertools
import json
import unicodedata

import pandas as pd
import pytest

from scratchlm.corpus import CleaningReport, clean_documents, load_documents, minhash
from scratchlm.modeling import ScratchLMConfig
from scratchlm.tokenization import train_tokenizer
from scratchlm.training.arguments import PretrainingDataArguments
from scratchlm.training.data import (
    PackedBlockCollator,
    PretrainingDataSettings,
    build_pretraining_data,
    check_block_size,
    check_tokenizer_fits,
    hold_out_tail,
    load_table,
    prepare_documents,
)
from scratchlm.training.data.streaming import build_streaming_data

SHAKESPEARE_HEAD_CHARS = 60_000


@pytest.fixture(scope="module")
def shakespeare(data_dir) -> str:
    return (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tokenizer(shakespeare):
    return train_tokenizer([shakespeare[:SHAKESPEARE_HEAD_CHARS]], vocab_size=600, show_progress=False)


@pytest.fixture
def shakespeare_file(tmp_path, shakespeare):
    path = tmp_path / "shakespeare.txt"
    path.write_text(shakespeare[:SHAKESPEARE_HEAD_CHARS], encoding="utf-8")
    return path


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    return path


def data_args(tmp_path, **overrides) -> PretrainingDataSettings:
    """The settings `scratchlm-pretrain` makes of these data options."""
    return PretrainingDataArguments(data_cache_dir=str(tmp_path / "cache"), **overrides).to_settings()


def training_documents(settings: PretrainingDataSettings):
    return load_documents(settings.train, cache_dir=settings.intermediate_dir)


def block_ids(blocks) -> list[list[int]]:
    """The token ids of every block, from the token store's blocks or a stream's validation `Dataset`."""
    return [[int(token) for token in blocks[i]["input_ids"]] for i in range(len(blocks))]


def texts_of(dataset) -> list[str]:
    return [row["text"] for row in dataset]


# ------------------------------------------------------------------------------------------ cleaning

DIRTY = [
    "Cafe\u0301 au lait, twice.",  # decomposed: NFC composes it
    "Hello\x00 world\x07, said the bell.",  # control characters
    "Too   many    spaces   \nand trailing ones   \n\n\n\nand blank lines.",  # whitespace
    "Line one\r\nline two, Windows style.",  # line endings (whitespace step)
    "hi",  # too short for min_document_chars=5
    "#### $$$$ %%%% ^^^^ &&&& ****",  # mostly symbols
    "A plain sentence that survives every step.",
    "A plain sentence that survives every step.",  # exact duplicate
    "Cafe\u0301 au lait, twice.",  # a duplicate once normalised
]


def test_each_cleaning_step_counts_what_it_changes_and_drops(tmp_path):
    path = write_jsonl(tmp_path / "dirty.jsonl", DIRTY)
    args = data_args(tmp_path, train_files=[str(path)], min_document_chars=5, dedup_min_chars=0)
    cleaned, report = clean_documents(training_documents(args), args.cleaning)

    assert texts_of(cleaned) == [
        unicodedata.normalize("NFC", "Café au lait, twice."),
        "Hello world, said the bell.",
        "Too many spaces\nand trailing ones\n\nand blank lines.",
        "Line one\nline two, Windows style.",
        "A plain sentence that survives every step.",
    ]
    assert report.documents_in == 9 and report.documents_out == 5
    assert report.changed == {"unicode_nfc": 2, "control_characters": 1, "whitespace": 2}
    assert report.dropped == {"too_short": 1, "mostly_symbols": 1, "exact_duplicates": 2, "near_duplicates": 0}

    table = report.to_table()
    assert "exact_duplicates" in table and "9 in, 5 out" in table
    report.save(tmp_path / "report.json")
    assert CleaningReport.from_dict(json.loads((tmp_path / "report.json").read_text())) == report

    # By default documents under 50 characters are never duplicates (a speaker's name repeats in a play).
    args = data_args(tmp_path, train_files=[str(path)], min_document_chars=5)
    cleaned, report = clean_documents(training_documents(args), args.cleaning)
    assert report.dropped["exact_duplicates"] == 0 and report.documents_out == 7


def test_cleaning_switches_turn_steps_off(tmp_path):
    args = data_args(
        tmp_path, train_files=[str(write_jsonl(tmp_path / "dirty.jsonl", DIRTY))], normalize_unicode=False,
        remove_control_characters=False, normalize_whitespace=False, min_document_chars=0, max_symbol_fraction=1.0,
        deduplicate=False,
    )
    cleaned, report = clean_documents(training_documents(args), args.cleaning)
    assert texts_of(cleaned) == DIRTY
    assert sum(report.changed.values()) == sum(report.dropped.values()) == 0
    assert not any(report.enabled.values())


def test_near_deduplication_drops_a_near_copy_and_keeps_distinct_documents(tmp_path):
    base = (
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light."
    )
    near_copy = base.replace("wisdom", "wizardry")
    other = (
        "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, "
        "and nothing particular to interest me on shore, I thought I would sail about a little."
    )
    assert minhash(base).jaccard(minhash(near_copy)) > 0.85 > minhash(base).jaccard(minhash(other))

    path = write_jsonl(tmp_path / "near.jsonl", [base, other, near_copy])
    args = data_args(tmp_path, train_files=[str(path)], near_deduplicate=True)
    cleaned, report = clean_documents(training_documents(args), args.cleaning)
    assert texts_of(cleaned) == [base, other]
    assert report.dropped["near_duplicates"] == 1 and report.dropped["exact_duplicates"] == 0

    with pytest.raises(ValueError, match="streaming"):
        build_pretraining_data(data_args(tmp_path, train_files=[str(path)], near_deduplicate=True, streaming=True),
                               None, 8)


def test_text_documents_are_paragraphs_with_their_line_breaks(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text("ROMEO:\nBut soft.\n\nJULIET:\nAy me.\nO Romeo.\n", encoding="utf-8")
    documents = training_documents(data_args(tmp_path, train_files=[str(path)]))
    assert texts_of(documents) == ["ROMEO:\nBut soft.", "JULIET:\nAy me.\nO Romeo."]


# --------------------------------------------------------------------------------------------- split


def test_held_out_validation_is_the_last_tenth_of_the_bytes(tmp_path, data_dir, shakespeare):
    args = data_args(tmp_path, train_files=[str(data_dir / "tinyshakespeare" / "input.txt")])
    cleaned, report = clean_documents(training_documents(args), args.cleaning)
    train, validation = hold_out_tail(cleaned, 0.1, args)
    assert len(train) + len(validation) == report.documents_out

    train_bytes = sum(len(text.encode()) for text in texts_of(train))
    validation_bytes = sum(len(text.encode()) for text in texts_of(validation))
    assert validation_bytes / (train_bytes + validation_bytes) == pytest.approx(0.1, abs=0.002)
    # nanoGPT: validation starts at byte int(0.9 * n) of the file (tinyshakespeare is ASCII).
    start = shakespeare.index(validation[0]["text"], len(shakespeare) // 2)
    assert start / len(shakespeare) == pytest.approx(0.9, abs=0.003)
    assert shakespeare.rstrip("\n").endswith(validation[-1]["text"])


def test_training_texts_are_the_cleaned_training_part_only(tmp_path):
    texts = [f"Document number {i} has some words." for i in range(20)] + ["Document number 3 has some words."]
    args = data_args(tmp_path, train_files=[str(write_jsonl(tmp_path / "docs.jsonl", texts))], dedup_min_chars=0)
    assert list(prepare_documents(args).training_texts()) == texts[:18]  # 20 distinct documents, the last 2 hold out 10%


# ------------------------------------------------------------------------------------- packing, bpb


def test_blocks_pack_every_document_followed_by_eos(tmp_path, tokenizer, shakespeare_file):
    block_size = 64
    args = data_args(tmp_path, train_files=[str(shakespeare_file)])
    data = build_pretraining_data(args, tokenizer, block_size)
    assert not data.from_cache
    train, validation = block_ids(data.train), block_ids(data.validation)
    assert {len(ids) for ids in train} == {block_size}
    assert all(0 < len(ids) <= block_size for ids in validation)

    cleaned, _ = clean_documents(training_documents(args), args.cleaning)
    expected = [i for text in texts_of(cleaned) for i in tokenizer.encode(text, add_special_tokens=False)
                + [tokenizer.eos_token_id]]
    train_tokens = [i for ids in train for i in ids]
    validation_tokens = [i for ids in validation for i in ids]
    assert data.train_tokens == len(train_tokens) and data.validation_tokens == len(validation_tokens)
    # Training drops only the partial block at its end; validation keeps all its tokens.
    assert train_tokens == expected[: len(train_tokens)]
    assert len(expected) - len(train_tokens) - len(validation_tokens) < block_size
    assert validation_tokens == expected[len(expected) - len(validation_tokens) :]

    decoded = tokenizer.decode(validation_tokens, skip_special_tokens=True)
    assert len(decoded.encode("utf-8")) == data.validation_bytes


def test_validation_files_are_used_when_given(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", [f"Training text {i}, said the clerk." for i in range(40)])
    validation = write_jsonl(tmp_path / "valid.jsonl", ["Née, a validation text.", "Another one\x00 here."])
    args = data_args(tmp_path, train_files=[str(train)], validation_files=[str(validation)])
    data = build_pretraining_data(args, tokenizer, 16)
    assert data.validation_report.changed["control_characters"] == 1
    assert data.validation_bytes == len("Née, a validation text.".encode()) + len("Another one here.")
    assert data.report.documents_out == 40


def test_collator_makes_labels_and_pads_a_short_block():
    batch = PackedBlockCollator(pad_token_id=2)([{"input_ids": [5, 1, 7, 1]}, {"input_ids": [9, 1]}])
    assert batch["input_ids"].tolist() == [[5, 1, 7, 1], [9, 1, 2, 2]]
    assert batch["labels"].tolist() == [[5, 1, 7, 1], [9, 1, -100, -100]]  # eos (1) stays a label
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert "attention_mask" not in PackedBlockCollator()([{"input_ids": [5, 1]}, {"input_ids": [9, 1]}])


# -------------------------------------------------------------------------------------- cache, stream


def test_second_run_loads_the_cache_and_a_changed_setting_misses_it(tmp_path, tokenizer, shakespeare_file):
    args = data_args(tmp_path, train_files=[str(shakespeare_file)])
    first = build_pretraining_data(args, tokenizer, 32)
    second = build_pretraining_data(args, tokenizer, 32)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert block_ids(second.train) == block_ids(first.train)
    assert block_ids(second.validation) == block_ids(first.validation)
    assert (second.validation_bytes, second.report) == (first.validation_bytes, first.report)
    # The cache holds the two token stores and the meta file, nothing of the way there.
    cache = tmp_path / "cache"
    assert sorted(path.name for path in cache.iterdir()) == [second.cache_dir.name]
    assert sorted(path.name for path in second.cache_dir.iterdir()) == ["meta.json", "train", "validation"]
    assert json.loads((second.cache_dir / "meta.json").read_text())["report"]["documents_in"] > 0

    # Another block size reads the same stores: one stream of tokens, cut otherwise.
    other = build_pretraining_data(args, tokenizer, 48)
    assert other.from_cache and other.cache_dir == first.cache_dir
    flat = [token for ids in block_ids(first.train) for token in ids]
    assert [token for ids in block_ids(other.train) for token in ids] == flat[:len(other.train) * 48]

    shard = first.cache_dir / "train" / "shard_00000.bin"  # a damaged store: one line naming the file
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(ValueError, match=f"token store shard {shard} holds"):
        build_pretraining_data(args, tokenizer, 32)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"token store shard {shard} is missing"):
        build_pretraining_data(args, tokenizer, 32)
    no_dedup = data_args(tmp_path, train_files=[str(shakespeare_file)], deduplicate=False)
    assert not build_pretraining_data(no_dedup, tokenizer, 32).from_cache
    shakespeare_file.write_text(shakespeare_file.read_text() + "\nEPILOGUE:\nThe end.\n")
    assert not build_pretraining_data(args, tokenizer, 32).from_cache


def test_streaming_gives_the_same_blocks_as_loading(tmp_path, tokenizer, shakespeare_file):
    args = data_args(tmp_path, train_files=[str(shakespeare_file)])
    loaded = build_pretraining_data(args, tokenizer, 32)
    streamed = build_streaming_data(
        data_args(tmp_path, train_files=[str(shakespeare_file)], streaming=True, shuffle_buffer_size=0), tokenizer, 32
    )
    assert streamed.train_tokens is None and not streamed.from_cache
    first_blocks = [row["input_ids"] for row in itertools.islice(streamed.train, 20)]
    assert first_blocks == block_ids(loaded.train)[:20]
    assert streamed.validation["input_ids"] == block_ids(loaded.validation)
    assert streamed.validation_bytes == loaded.validation_bytes
    assert streamed.report == loaded.report  # the byte-counting pass read the whole stream
    # A second pass (epoch) over the stream starts deduplication afresh instead of dropping everything.
    assert sum(1 for _ in streamed.train) == sum(1 for _ in streamed.train) == len(loaded.train)


# ---------------------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_with_a_clear_error(tmp_path, tokenizer, monkeypatch):
    missing = str(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_pretraining_data(data_args(tmp_path, train_files=[missing]), tokenizer, 32)

    symbols = write_jsonl(tmp_path / "symbols.jsonl", ["#### $$$$", "%%%% ^^^^", "@@@@ !!!!"])
    with pytest.raises(ValueError, match=r"empty after cleaning: 3 documents read.*mostly_symbols: 3"):
        build_pretraining_data(data_args(tmp_path, train_files=[str(symbols)]), tokenizer, 32)

    short = write_jsonl(tmp_path / "short.jsonl", ["Just a few words.", "And a few more."])
    with pytest.raises(ValueError, match="shorter than one block"):
        build_pretraining_data(data_args(tmp_path, train_files=[str(short)]), tokenizer, 512)

    config = ScratchLMConfig.from_preset("tiny")
    with pytest.raises(ValueError, match=r"block_size=1024 .*max_position_embeddings=512"):
        check_block_size(1024, config)
    check_block_size(512, config)
    with pytest.raises(ValueError, match=rf"{len(tokenizer)} tokens .* vocab_size=256"):
        check_tokenizer_fits(tokenizer, ScratchLMConfig.from_preset("tiny", vocab_size=256))
    check_tokenizer_fits(tokenizer, config)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="offline"):
        build_pretraining_data(data_args(tmp_path, dataset_name="someone/some-corpus"), tokenizer, 32)

    bad_utf8 = tmp_path / "bad.txt"
    bad_utf8.write_bytes(b"good text\n\nbad \xff byte\n")
    with pytest.raises(ValueError, match="byte offset 15"):
        build_pretraining_data(data_args(tmp_path, train_files=[str(bad_utf8)]), tokenizer, 32)

    with pytest.raises(ValueError, match="give --train_files or --dataset_name"):
        build_pretraining_data(data_args(tmp_path), tokenizer, 32)
    tokenizer_without_eos = train_tokenizer(["some text to train on"], vocab_size=300, eos_token=None,
                                            show_progress=False)
    with pytest.raises(ValueError, match="no eos token"):
        build_pretraining_data(data_args(tmp_path, train_files=[str(short)]), tokenizer_without_eos, 8)


# ------------------------------------------------------------------------------------------- tables

ROWS = {"label": [1, 0, 1], "sentence": ["good film", "dull, too long", "a gem, 好看"]}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_load_table_reads_each_format_with_its_columns(tmp_path, suffix):
    frame = pd.DataFrame(ROWS)
    path = tmp_path / f"table{suffix}"
    if suffix in (".csv", ".tsv"):
        frame.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix == ".json":
        frame.to_json(path, orient="records", force_ascii=False)
    else:
        frame.to_parquet(path)
    table = load_table(str(path))
    assert table.column_names == ["label", "sentence"]
    assert table.to_dict() == ROWS
    assert load_table(str(path), split="train[:2]")["sentence"] == ROWS["sentence"][:2]


def test_load_table_reads_a_real_csv_and_names_a_missing_file(tmp_path, data_dir):
    table = load_table(str(data_dir / "chnsenticorp" / "ChnSentiCorp_htl_all.csv"))
    assert table.column_names == ["label", "review"] and len(table) == 7766
    assert sorted(set(table["label"])) == [0, 1]
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        load_table(str(tmp_path / "nothing.csv"))
    saved = tmp_path / "saved"
    table.select(range(5)).save_to_disk(str(saved))
    assert load_table(str(saved))["review"] == table["review"][:5]


def test_the_streaming_cleaning_passes_keep_what_clean_documents_keeps(tmp_path, data_dir):
    from scratchlm.corpus import CleaningSettings, SourceSettings
    from scratchlm.corpus.cleaning_pass import cleaned_texts, cleaning_workers, survey

    source = SourceSettings(files=(str(data_dir / "wikitext-2-partial" / "test.txt"),))
    settings = CleaningSettings(min_document_chars=20, max_symbol_fraction=0.3)
    expected, expected_report = clean_documents(load_documents(source, cache_dir=tmp_path), settings)
    with cleaning_workers(2) as pool:
        found = survey(source, settings, name="train", pool=pool)
        texts = list(cleaned_texts(source, settings, found, pool=pool))
        tail = list(cleaned_texts(source, settings, found, start=len(texts) - 3, pool=pool))
    assert found.report == expected_report and expected_report.dropped["exact_duplicates"] > 0
    assert texts == expected["text"] and tail == texts[-3:]
    assert found.kept_bytes.tolist() == [len(text.encode("utf-8")) for text in texts]


def test_seen_digests_keeps_the_first_of_each_digest_across_merges():
    from scratchlm.corpus.dedup import SeenDigests

    seen = SeenDigests(merge_every=4)
    batches = [[1, 2, 2, 3], [3, 4, 5, 1], [6, 6, 7, 2]]
    assert [seen.first_seen(batch).tolist() for batch in batches] == [
        [True, True, False, True], [False, True, True, False], [True, False, True, False]]
    assert len(seen) == 7
