"""Sequence-to-sequence data (parallel files, tables with list columns), sacreBLEU/ROUGE, T5 span corruption and
BART text infilling."""

from __future__ import annotations

import copy
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from scratchlm.training.data.denoising import (
    SpanCorruptionCollator,
    TextInfillingCollator,
    add_sentinel_tokens,
    corrupt_spans,
    infill,
    infilling_mask,
    input_and_target_lengths,
    noise_counts,
    random_spans_noise_mask,
    reconstruct,
    sentinel_token_ids,
    sentinel_tokens,
)
from scratchlm.training.data.seq2seq import (
    build_seq2seq_data,
    load_pairs,
    pairs_from_table,
    prepare_seq2seq_split,
    read_lines,
    train_joint_tokenizer,
)
from scratchlm.training.data.tables import load_table
from scratchlm.training.evaluation import load_metric, score_generations

EN = ["A dog runs on the beach.", "Two men play football in a park.", "The cat sleeps on a red sofa.",
      "A woman reads a book under a tree.", "Children are swimming in the lake."]
DE = ["Ein Hund rennt am Strand.", "Zwei Männer spielen Fußball in einem Park.", "Die Katze schläft auf einem roten "
      "Sofa.", "Eine Frau liest ein Buch unter einem Baum.", "Kinder schwimmen im See."]


@pytest.fixture(scope="module")
def tokenizer():
    pairs = Dataset.from_dict({"source": EN * 4, "target": [[text] for text in DE] * 4})
    return train_joint_tokenizer(pairs, vocab_size=400, min_frequency=1, num_sentinels=20)


def write_lines(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ data


def test_parallel_files_of_different_lengths_name_both_files_and_counts(tmp_path):
    source = write_lines(tmp_path / "train.en.gz", EN)
    target = write_lines(tmp_path / "train.de", DE[:3])
    with pytest.raises(ValueError) as error:
        load_pairs(source_file=source, target_file=target)
    message = str(error.value)
    assert str(source) in message and str(target) in message and "5 lines" in message and "3" in message


def test_parallel_files_gzip_empty_lines_dropped_and_counted(tmp_path, tokenizer, caplog):
    source = write_lines(tmp_path / "s.en.gz", [EN[0], "", EN[1], EN[2]])
    target = write_lines(tmp_path / "t.de.gz", [DE[0], DE[1], "  ", DE[2]])
    pairs = load_pairs(source_file=source, target_file=target)
    assert pairs["source"] == ["A dog runs on the beach.", "", "Two men play football in a park.", EN[2]]
    with caplog.at_level("WARNING"):
        examples, references, report = prepare_seq2seq_split(pairs, tokenizer, split="train", max_source_length=64,
                                                              max_target_length=64)
    assert report.dropped_empty == 2 and report.examples == 2 and references == [[DE[0]], [DE[2]]]
    assert "dropped 2 of 4 rows" in caplog.text
    assert tokenizer.decode(examples[1]["labels"], skip_special_tokens=True) == DE[2]
    assert tokenizer.decode(examples[1]["input_ids"], skip_special_tokens=True) == EN[2]

    empty = load_pairs(source_file=write_lines(tmp_path / "e.en", ["", "x"]),
                       target_file=write_lines(tmp_path / "e.de", ["y", " "]))
    with pytest.raises(ValueError, match="no usable train example"):
        prepare_seq2seq_split(empty, tokenizer, split="train", max_source_length=64, max_target_length=64)


def test_read_lines_splits_on_newlines_only(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_bytes("one\u2028still one\r\ntwo\n".encode())
    assert read_lines(path) == ["one\u2028still one", "two"]


def test_a_cut_off_or_fake_gzip_or_latin1_parallel_file_is_named(tmp_path):
    target = write_lines(tmp_path / "t.de", DE)
    cut = tmp_path / "cut.en.gz"
    cut.write_bytes(gzip.compress("".join(line + "\n" for line in EN * 20).encode())[:40])
    fake = tmp_path / "fake.en.gz"
    fake.write_text("".join(line + "\n" for line in EN))
    for path in (cut, fake):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a readable gzip file"):
            load_pairs(source_file=path, target_file=target)
    latin1 = tmp_path / "latin1.en"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(latin1))}: invalid UTF-8 at byte offset 3"):
        load_pairs(source_file=latin1, target_file=target)


@pytest.mark.parametrize("row, problem", [
    ({"source": "A dog.", "target": {"de": "Ein Hund."}}, "row 2: column 'target' holds a value of type dict"),
    ({"source": {"en": "A dog."}, "target": "Ein Hund."}, "row 2: column 'source' holds a value of type dict"),
    ({"source": "A dog.", "target": ["Ein Hund.", {"de": "Hund"}]}, "row 2: column 'target' holds a list with a value of type dict"),
    ({"source": "A dog.", "target": 7}, "row 2: column 'target' holds a value of type int"),
])
def test_a_source_or_target_that_is_no_text_is_an_error_naming_file_row_and_column(tmp_path, row, problem):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"source": "A cat.", "target": "Eine Katze."}) + "\n" + json.dumps(row) + "\n")
    pairs = load_table(str(path), with_origins=True)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} {re.escape(problem)}.*expected a string or a list "
                                         "of strings"):
        pairs_from_table(pairs)


def test_long_sources_truncated_and_counted_with_eos_last(tokenizer):
    pairs = Dataset.from_dict({"source": [" ".join(EN), EN[0]], "target": [[DE[0]], [DE[1]]]})
    limit = len(tokenizer(EN[0])["input_ids"]) + 1  # EN[0] and its eos fit exactly
    examples, _, report = prepare_seq2seq_split(pairs, tokenizer, split="train", max_source_length=limit,
                                                max_target_length=64)
    assert report.truncated_sources == 1 and report.truncated_targets == 0
    assert len(examples[0]["input_ids"]) == limit
    assert tokenizer.decode(examples[1]["input_ids"], skip_special_tokens=True) == EN[0]
    assert all(row[-1] == tokenizer.eos_token_id for row in [*examples["input_ids"], *examples["labels"]])


def test_list_columns_scitldr_style(tmp_path, tokenizer):
    rows = [
        {"source": ["First sentence.", "Second sentence."], "target": ["tldr one", "tldr two", ""]},
        {"source": ["Only sentence."], "target": ["single tldr"]},
    ]
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    pairs = load_pairs(table=str(path))
    assert pairs["source"][0] == "First sentence. Second sentence."
    data = build_seq2seq_data(pairs, pairs, None, tokenizer, max_source_length=64, max_target_length=32)
    # training: one example per reference; evaluation: one per row, all references kept for scoring
    assert len(data.train) == 3 and len(data.validation) == 2
    assert data.references["validation"] == [["tldr one", "tldr two"], ["single tldr"]]
    assert data.sources["validation"] == pairs["source"]
    with pytest.raises(ValueError, match="no column 'abstract'.*--source_column"):
        load_pairs(table=str(path), source_column="abstract")


def test_real_data_multi30k_and_scitldr(data_dir, tokenizer):
    multi30k = load_pairs(source_file=data_dir / "multi30k/val.en.gz", target_file=data_dir / "multi30k/val.de.gz")
    assert len(multi30k) == 1014 and all(len(refs) == 1 for refs in multi30k["target"])
    scitldr = load_pairs(table=str(data_dir / "scitldr-a/dev.jsonl"))
    assert len(scitldr) == 619 and max(len(refs) for refs in scitldr["target"]) > 1
    data = build_seq2seq_data(scitldr.select(range(50)), None, None, tokenizer, max_source_length=128,
                              max_target_length=64, train_on="first")
    assert data.reports["train"].truncated_sources > 0 and len(data.train) == len(data.references["train"]) == 50


def test_joint_tokenizer_has_both_languages_and_special_sentinels(tokenizer):
    english_only = train_joint_tokenizer(Dataset.from_dict({"source": EN * 4, "target": [[text] for text in EN] * 4}),
                                         vocab_size=400, min_frequency=1)
    german = " ".join(DE)
    assert len(tokenizer(german)["input_ids"]) < len(english_only(german)["input_ids"])
    vocab = tokenizer.get_vocab()
    ids = tokenizer("x <extra_id_3> y")["input_ids"]
    assert vocab["<extra_id_3>"] in ids
    assert "extra_id" not in tokenizer.decode(ids, skip_special_tokens=True)


# --------------------------------------------------------------------------------------------- metrics


def test_bleu_equals_the_sacrebleu_command_line(data_dir, tmp_path):
    references = read_lines(data_dir / "multi30k/val.de.gz")[:300]
    second = [line if index % 3 else "" for index, line in enumerate(read_lines(data_dir / "multi30k/val.en.gz"))]
    hypotheses = [" ".join(word for i, word in enumerate(line.split()) if i % 4 != 1) for line in references]
    hyp_file = write_lines(tmp_path / "hyp.txt", hypotheses)
    ref_files = [write_lines(tmp_path / "ref0.txt", references), write_lines(tmp_path / "ref1.txt", second[:300])]
    cli = Path(sys.executable).with_name("sacrebleu")
    printed = subprocess.run([str(cli), *map(str, ref_files), "-i", str(hyp_file), "-m", "bleu", "chrf", "-b",
                              "-w", "4"], capture_output=True, text=True, check=True).stdout
    printed = json.loads(printed)  # with -b and two metrics the tool prints a JSON list of the two scores
    ours = load_metric("sacrebleu").compute(
        predictions=hypotheses, references=[[ref, extra] if extra else [ref] for ref, extra in zip(references,
                                                                                              second)])
    assert 10 < ours["bleu"] < 90
    assert round(ours["bleu"], 4) == printed[0] and round(ours["chrf"], 4) == printed[1]


def test_rouge_takes_the_best_reference_per_example():
    rouge = load_metric("rouge")
    predictions = ["we propose a new loss for training", "a model for text"]
    first, second = ["a new loss is proposed", "models of text"], ["we propose a loss", "a model for images"]
    both = rouge.compute(predictions=predictions, references=[[a, b] for a, b in zip(first, second)])
    for key in ("rouge1", "rouge2", "rougeL"):
        per_example = [max(rouge.compute(predictions=[p], references=[[a]])[key],
                           rouge.compute(predictions=[p], references=[[b]])[key])
                       for p, a, b in zip(predictions, first, second)]
        assert both[key] == pytest.approx(sum(per_example) / 2)
    assert set(score_generations(predictions, first)) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL"}


# ------------------------------------------------------------------------------------------- denoising


@pytest.mark.parametrize("length,density,mean_span", [(128, 0.15, 3.0), (100, 0.3, 5.0), (7, 0.15, 3.0)])
def test_span_corruption_rate_span_length_and_reconstruction(length, density, mean_span):
    rng = np.random.default_rng(0)
    sentinels = list(range(1000, 1100))
    noise, spans = noise_counts(length, density, mean_span)
    assert noise == max(1, round(length * density)) and spans == max(1, round(noise / mean_span))
    input_length, target_length = input_and_target_lengths(length, density, mean_span)
    for _ in range(50):
        original = rng.integers(5, 900, size=length).tolist()
        mask = random_spans_noise_mask(length, density, mean_span, rng)
        assert mask.sum() == noise and not mask[0]
        assert int(np.sum(mask[1:] & ~mask[:-1])) == spans
        inputs, labels = corrupt_spans(original, mask, sentinels, eos_token_id=1)
        assert (len(inputs), len(labels)) == (input_length, target_length)
        assert reconstruct(inputs, labels, sentinels, eos_token_id=1) == original


def test_span_corruption_collator_on_packed_blocks(tokenizer):
    collator = SpanCorruptionCollator(tokenizer, noise_density=0.25, mean_noise_span_length=2.0, num_sentinels=20,
                                      seed=0)
    text = " ".join(EN + DE)
    ids = tokenizer(text)["input_ids"]
    blocks = [{"input_ids": ids[:40]}, {"input_ids": ids[40:64]}]
    batch = collator(blocks)
    assert batch["input_ids"].shape[0] == 2 and batch["labels"].shape[0] == 2
    sentinels = sentinel_token_ids(tokenizer, 20)
    for row, block in enumerate(blocks):
        inputs = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        labels = [t for t in batch["labels"][row].tolist() if t != -100]
        assert reconstruct(inputs, labels, sentinels, tokenizer.eos_token_id) == block["input_ids"]
    assert not torch.equal(collator(blocks)["input_ids"], batch["input_ids"])  # fresh spans every epoch


def expand_masks(inputs: list[int], original: list[int], mask_id: int) -> bool:
    """Whether `inputs` is `original` with runs of tokens each replaced by one `mask_id` (in order)."""
    pattern = "".join(f"{token}," if token != mask_id else "(?:\\d+,)+?" for token in inputs)
    return re.fullmatch(pattern, "".join(f"{token}," for token in original)) is not None


@pytest.mark.parametrize("length,ratio,poisson_lambda", [(128, 0.3, 3.0), (255, 0.3, 3.0), (50, 0.5, 1.0),
                                                          (5, 0.3, 3.0)])
def test_text_infilling_masks_the_ratio_in_spans_and_keeps_the_block_as_labels(length, ratio, poisson_lambda):
    rng = np.random.default_rng(0)
    mask_id, eos = 999, 1
    runs = []
    for _ in range(50):
        original = rng.integers(5, 900, size=length).tolist()
        mask = infilling_mask(length, ratio, poisson_lambda, rng)
        assert mask.sum() == min(max(round(length * ratio), 1), length - 1) and not mask[0]
        spans = int(np.sum(mask[1:] & ~mask[:-1]))
        runs.append(mask.sum() / spans)
        inputs, labels = infill(original, mask, mask_id, eos)
        assert labels == [*original, eos]
        assert len(inputs) == length - int(mask.sum()) + spans + 1 <= length + 1 and inputs[-1] == eos
        assert inputs.count(mask_id) == spans and expand_masks(inputs[:-1], original, mask_id)
    if length >= 128:  # Poisson(lambda) span lengths (merged where they touch): a mean run of about lambda or more
        assert poisson_lambda * 0.8 < np.mean(runs) < poisson_lambda * 2


def test_text_infilling_collator_uses_the_first_sentinel_as_mask_and_draws_afresh(tokenizer):
    collator = TextInfillingCollator(tokenizer, mask_ratio=0.3, poisson_lambda=2.0, seed=0)
    mask_id = sentinel_token_ids(tokenizer, 1)[0]
    assert tokenizer.mask_token_id is None and collator.mask_token_id == mask_id
    ids = tokenizer(" ".join(EN + DE))["input_ids"]
    blocks = [{"input_ids": ids[:40]}, {"input_ids": ids[40:64]}]
    batch = collator(blocks)
    for row, block in enumerate(blocks):
        inputs = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        labels = [t for t in batch["labels"][row].tolist() if t != -100]
        assert labels == [*block["input_ids"], tokenizer.eos_token_id]
        assert mask_id in inputs and expand_masks(inputs[:-1], block["input_ids"], mask_id)
    assert not torch.equal(collator(blocks)["input_ids"], batch["input_ids"])  # fresh spans every epoch
    with pytest.raises(ValueError, match="mask_ratio must be between 0 and 1"):
        TextInfillingCollator(tokenizer, mask_ratio=1.0)


def test_sentinels_missing_is_a_clear_error_and_can_be_added(tokenizer):
    with pytest.raises(ValueError, match="no sentinel token '<extra_id_20>'.*add_sentinel_tokens"):
        sentinel_token_ids(tokenizer, 30)
    extended = copy.deepcopy(tokenizer)
    assert add_sentinel_tokens(extended, 30) == 10
    assert len(sentinel_token_ids(extended, 30)) == 30 and len(extended) == len(tokenizer) + 10
    new_id = extended.convert_tokens_to_ids(sentinel_tokens(30)[-1])
    dog, beach = extended("dog")["input_ids"], extended(" beach")["input_ids"]
    assert extended.decode([*dog, new_id, *beach], skip_special_tokens=True) == "dog beach"


# ------------------------------------------------------------------------------------------- the task


def test_seq2seq_task_scores_generated_text_against_all_references(tokenizer, tmp_path, tiny_seq2seq_sizes):
    from transformers import Seq2SeqTrainingArguments

    from scratchlm.modeling import init_seq2seq_model
    from scratchlm.training.tasks.seq2seq import Seq2SeqTask

    table = Dataset.from_dict({"source": EN, "target": [[de, de.upper()] for de in DE]})
    task = Seq2SeqTask()  # its default options: columns source and target, every reference trained on
    data = task.build_data(table, table, None, tokenizer, data_args=None, max_length=64)
    assert len(data.train) == 2 * len(EN) and len(data.validation) == len(EN)
    model = init_seq2seq_model("tiny", tiny_seq2seq_sizes, tokenizer)
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), predict_with_generate=True, generation_num_beams=2,
                                    generation_max_length=12, per_device_eval_batch_size=2, report_to=[],
                                    include_for_metrics=["inputs"], use_cpu=True)
    trainer = task.trainer_class(model=model, args=args, data_collator=task.collator(tokenizer),
                                 processing_class=tokenizer, compute_metrics=task.compute_metrics(data))
    output = trainer.predict(data.validation)
    predictions = [" ".join(tokenizer.decode(row[row >= 0], skip_special_tokens=True).split())
                   for row in output.predictions]
    expected = score_generations(predictions, data.references["validation"])
    assert {key: output.metrics[f"test_{key}"] for key in expected} == pytest.approx(expected)
