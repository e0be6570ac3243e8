"""Streamed pretraining data: the corpus read, cleaned, tokenized and packed on the fly, in shards.

Every training file (and every data set source) is one shard of the training stream. When the shards divide evenly
among the processes of a run, accelerate gives each process whole shards of its own (`IterableDataset.shard`, the
split `datasets.distributed.split_dataset_by_node` makes), so no process reads another's text; otherwise the stream
is one shard that every process reads, keeping its slice of each global batch. Each shard is cleaned on its own
(exact duplicates are found within a shard) and packed on its own (its last partial block is dropped).

Validation is `validation_files`/`validation_split`, or the last documents holding `validation_fraction` of the
training bytes: one pass over the shards finds where that tail starts (the pass's result is kept in the cache, so
the other processes and a resumed run do not read the corpus for it), the tail is stored and packed, and training
stops before it.

Resuming in place (`resume_stream_in_place`): without a shuffle buffer (`shuffle_buffer_size` 1) each process saves
its stream position (torchdata's `StatefulDataLoader`, the `datasets` stream's `state_dict`) with every checkpoint;
a resumed run starts at the shard it was reading and does not read again the shards it had consumed (the current
shard is read from its start up to the position). With a shuffle buffer the buffer's content is not part of that
position, so the Trainer re-reads the stream and skips the batches it consumed, as it does for any data set.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from scratchlm.corpus import (
    DOCUMENT_FEATURES,
    TEXT,
    CleaningReport,
    SourceSettings,
    clean_documents,
    content_hash,
    load_documents,
    resolve_files,
    unwrap_generation_error,
)
from scratchlm.files import atomic_write_text

from .checks import eos_token_id
from .pretraining import (
    BLOCK_FEATURES,
    PackedBlockCollator,
    PretrainingData,
    PretrainingDataSettings,
    prepare_documents,
    tail_split_index,
    tokenizer_fingerprint,
)

logger = logging.getLogger(__name__)

STREAM_POSITION_FILE = "stream_position-rank{rank}.pt"
HELD_OUT_FILE = "stream-held-out.json"
TOKENIZE_BATCH = 1000


@dataclass(frozen=True)
class StreamShard:
    """One shard of the training stream: a source of one file or one data set, and, for the shard in which the
    held-out tail starts, the number of its cleaned documents that train."""

    source: SourceSettings
    documents: int | None = None

    def describe(self) -> str:
        return ", ".join(self.source.sources) + (f" (first {self.documents} documents)" if self.documents else "")


def stream_shards(source: SourceSettings) -> list[SourceSettings]:
    """The shards of `source`: one per file it names and one per data set; a corpus-wide `max_documents` keeps the
    corpus one shard (the limit counts across files)."""
    if source.max_documents is not None:
        return [source]
    shards = []
    for index, name in enumerate(source.sources):
        if name in source.datasets:
            shards.append(replace(source, files=(), datasets=(name,),
                                  text_column=source.text_column.column(index, name)))
            continue
        shards.extend(replace(source, files=(str(path),), datasets=(),
                              text_column=source.text_column.column(index, name, path))
                      for path in resolve_files(name))
    return shards


def _cleaned_texts(source: SourceSettings, settings: PretrainingDataSettings) -> tuple[Iterator[str], CleaningReport]:
    documents, report = clean_documents(load_documents(source), settings.cleaning, name="train")
    return (row[TEXT] for row in documents), report


def _pack(texts: Iterator[str], tokenizer, block_size: int, keep_tail: bool) -> Iterator[dict]:
    """Tokenize the texts, each followed by eos, into one flat stream cut into blocks of `block_size`."""
    eos = eos_token_id(tokenizer)
    buffer: list[int] = []
    while batch := list(itertools.islice(texts, TOKENIZE_BATCH)):
        encoded = tokenizer(batch, add_special_tokens=False, return_attention_mask=False, verbose=False)
        for ids in encoded["input_ids"]:
            buffer.extend(ids)
            buffer.append(eos)
        full = len(buffer) // block_size * block_size
        for start in range(0, full, block_size):
            yield {"input_ids": buffer[start:start + block_size]}
        del buffer[:full]
    if keep_tail and buffer:
        yield {"input_ids": buffer}


def _generate_training_blocks(groups: list[list[StreamShard]], settings: PretrainingDataSettings, tokenizer,
                              block_size: int, announce: bool) -> Iterator[dict]:
    # `groups` is a list: `datasets` divides it among the processes (and resumes at a group of it).
    for shard in itertools.chain.from_iterable(groups):
        if announce:
            logger.info("Stream shard: reading %s", shard.describe())
        texts, _ = _cleaned_texts(shard.source, settings)
        yield from _pack(itertools.islice(texts, shard.documents), tokenizer, block_size, keep_tail=False)


def _merged_report(reports: list[CleaningReport]) -> CleaningReport:
    merged = CleaningReport(name="train", enabled=reports[0].enabled)
    for report in reports:
        merged.documents_in += report.documents_in
        merged.documents_out += report.documents_out
        for step, count in report.changed.items():
            merged.changed[step] += count
        for step, count in report.dropped.items():
            merged.dropped[step] += count
    return merged


def _find_held_out_tail(shards: list[SourceSettings], settings: PretrainingDataSettings) -> dict:
    """Where the held-out tail starts ({"shard", "document"}) and the cleaning report of the whole corpus: read from
    the cache, or found by one pass over every shard."""
    path = Path(settings.intermediate_dir) / HELD_OUT_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    logger.info("Streaming: reading the training corpus once to find the last %.0f%% of its bytes",
                100 * settings.validation_fraction)
    sizes: list[int] = []
    ends: list[int] = []
    reports = []
    for shard in shards:
        texts, report = _cleaned_texts(shard, settings)
        sizes.extend(len(text.encode("utf-8")) for text in texts)
        ends.append(len(sizes))
        reports.append(report)
    split = tail_split_index(np.asarray(sizes, dtype=np.int64), settings.validation_fraction,
                             settings.train.sample_by)
    shard = int(np.searchsorted(ends, split, side="right"))
    held_out = {"shard": shard, "document": split - (ends[shard - 1] if shard else 0),
                "report": _merged_report(reports).to_dict()}
    atomic_write_text(path, json.dumps(held_out, indent=2) + "\n")
    return held_out


def _generate_held_out_documents(shards: tuple[SourceSettings, ...], skip: int,
                                 settings: PretrainingDataSettings) -> Iterator[dict]:
    for index, shard in enumerate(shards):
        texts, _ = _cleaned_texts(shard, settings)
        for text in itertools.islice(texts, skip if index == 0 else 0, None):
            yield {TEXT: text}


def _generate_validation_blocks(documents: Dataset, tokenizer, block_size: int) -> Iterator[dict]:
    texts = (text for batch in documents.iter(batch_size=TOKENIZE_BATCH) for text in batch[TEXT])
    yield from _pack(texts, tokenizer, block_size, keep_tail=True)


def _split_training_and_validation(settings: PretrainingDataSettings, documents):
    """(training shards, validation documents, training report, validation report)."""
    shards = stream_shards(settings.train)
    if settings.validation is not None:
        documents = documents or prepare_documents(settings)
        return [StreamShard(shard) for shard in shards], documents.validation, documents.report, \
            documents.validation_report
    held_out = _find_held_out_tail(shards, settings)
    first, skip = held_out["shard"], held_out["document"]
    validation = unwrap_generation_error(
        Dataset.from_generator, _generate_held_out_documents, features=DOCUMENT_FEATURES,
        gen_kwargs={"shards": tuple(shards[first:]), "skip": skip, "settings": settings},
        cache_dir=settings.intermediate_dir, fingerprint=f"stream-held-out-{settings.documents_key}",
    )
    training = [StreamShard(shard) for shard in shards[:first]] + ([StreamShard(shards[first], skip)] if skip else [])
    return training, validation, CleaningReport.from_dict(held_out["report"]), None


def build_streaming_data(settings: PretrainingDataSettings, tokenizer, block_size: int, *, seed: int = 42,
                         num_processes: int = 1, documents=None) -> PretrainingData:
    """The stream of training blocks of `block_size` tokens, in shards `num_processes` processes can divide (see the
    module docstring), and the stored validation blocks. `documents` are the run's `PreparedDocuments` when the
    tokenizer was trained on them (their validation documents are used when validation data is given)."""
    eos = eos_token_id(tokenizer)
    collator = PackedBlockCollator(pad_token_id=eos if tokenizer.pad_token_id is None else tokenizer.pad_token_id)
    logger.info("Streaming the training corpus: cleaned and tokenized on the fly, not cached")
    shards, validation_documents, report, validation_report = _split_training_and_validation(settings, documents)
    if len(shards) % num_processes == 0:
        logger.info("Stream: %d shards, %d per process; each process reads only its own", len(shards),
                    len(shards) // num_processes)
        groups = [[shard] for shard in shards]
    else:
        logger.info("Stream: %d shard(s) do not divide among %d processes; every process reads the whole stream "
                    "and keeps its slice of each global batch", len(shards), num_processes)
        groups = [shards]  # one shard for datasets, which would otherwise give the processes unequal parts

    def stream(announce: bool) -> IterableDataset:
        return IterableDataset.from_generator(_generate_training_blocks, features=BLOCK_FEATURES, gen_kwargs={
            "groups": groups, "settings": settings, "tokenizer": tokenizer, "block_size": block_size,
            "announce": announce})

    if next(iter(stream(announce=False)), None) is None:
        raise ValueError(f"the streamed training text makes no whole block of block_size={block_size} tokens (each "
                         "shard's last partial block is dropped); use a smaller --block_size or more text")
    train = stream(announce=True)
    if settings.shuffle_buffer_size > 1:
        train = train.shuffle(seed=seed, buffer_size=settings.shuffle_buffer_size)
    fingerprint = content_hash(["stream-validation-blocks", settings.documents_key,
                                tokenizer_fingerprint(tokenizer), block_size])
    validation = unwrap_generation_error(
        Dataset.from_generator, _generate_validation_blocks, features=BLOCK_FEATURES,
        gen_kwargs={"documents": validation_documents, "tokenizer": tokenizer, "block_size": block_size},
        cache_dir=settings.intermediate_dir, fingerprint=f"blocks-{fingerprint}",
    )
    return PretrainingData(
        train=train,
        validation=validation,
        validation_bytes=sum(len(text.encode("utf-8")) for batch in validation_documents.iter(batch_size=1000)
                             for text in batch[TEXT]),
        validation_tokens=sum(len(ids) for batch in validation.iter(batch_size=1000) for ids in batch["input_ids"]),
        train_tokens=None,
        report=report,
        from_cache=False,
        collator=collator,
        validation_report=validation_report,
    )


def resumes_in_place(settings: PretrainingDataSettings) -> bool:
    """Whether a resumed streamed run can start at its saved stream position (no shuffle buffer, torchdata
    installed) instead of re-reading the stream."""
    return settings.streaming and settings.shuffle_buffer_size <= 1 \
        and importlib.util.find_spec("torchdata") is not None


class StreamPositionCallback(TrainerCallback):
    """Saves each process's stream position into every checkpoint, and restores it when the run resumes."""

    def __init__(self, resume_from: str | None):
        self.resume_from = resume_from

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if self.resume_from is None:
            return
        position = torch.load(stream_position_file(self.resume_from, args.process_index), weights_only=True)
        train_dataloader.load_state_dict(position)
        logger.info("Stream resumed at its saved position in %s: the shards consumed before it are not read again",
                    self.resume_from)

    def on_save(self, args, state, control, train_dataloader=None, **kwargs):
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        path = stream_position_file(checkpoint, args.process_index)
        partial = path.with_name(path.name + ".partial")
        torch.save(train_dataloader.state_dict(), partial)
        partial.replace(path)


def stream_position_file(checkpoint: str | Path, rank: int) -> Path:
    return Path(checkpoint) / STREAM_POSITION_FILE.format(rank=rank)


def resume_stream_in_place(trainer, settings: PretrainingDataSettings, resume_from: str | None) -> None:
    """Make `trainer` save its stream position with each checkpoint and, when `resume_from` holds this process's,
    start there instead of re-reading and skipping the consumed batches (`ignore_data_skip`)."""
    if not resumes_in_place(settings):
        if settings.streaming and settings.shuffle_buffer_size <= 1:
            logger.info("torchdata is not installed: a resumed stream is read again up to its position")
        return
    trainer.accelerator.dataloader_config.use_stateful_dataloader = True
    saved = resume_from is not None and stream_position_file(resume_from, trainer.args.process_index).is_file()
    trainer.args.ignore_data_skip = saved
    trainer.add_callback(StreamPositionCallback(resume_from if saved else None))
