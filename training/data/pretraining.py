"""Pretraining data: cleaned documents -> train/validation -> a token store -> blocks.

`prepare_documents` reads and cleans the corpus once per run; its documents feed both the tokenizer trainer (when
`scratchlm-pretrain` trains its own tokenizer) and `prepare_pretraining_corpus`, which tokenizes them into token
stores (`scratchlm.corpus.token_store`). `build_pretraining_data` cuts the stores into blocks of the run's length.

Validation text is `validation_files`/`validation_split` or, without them, the *last* documents of the
training corpus holding `validation_fraction` of its UTF-8 bytes, as closely as document boundaries allow
(nanoGPT's split of tinyshakespeare: the first 90% of the bytes train, the last 10% validate).

Packing: every document's tokens are followed by `eos` in one flat stream, cut into blocks of `block_size`
tokens. Training drops the last partial block; validation keeps it (shorter), so every validation token
is evaluated and `validation_bytes` is exactly the UTF-8 size of the validation documents, for bits per
byte = summed validation nats / (validation_bytes * ln 2).

The prepared corpus lives under `cache_dir` (default `~/.cache/scratchlm/data`) in a folder named by a hash of
everything that decides its tokens (`pretraining_cache_key`: sources, cleaning, validation, tokenizer; not the
block size, so runs with other block sizes share it): `train/` and `validation/` token stores and `meta.json`
(validation bytes, cleaning reports), written last, which marks it complete. A later run (or `scratchlm-prepare`)
with the same settings uses it without reading the corpus. The documents and cleaned documents are kept by
`datasets` under `intermediate/<documents key>` while the stores are written and removed once they are complete; a
run killed mid-way keeps them and its complete shards, and the next run skips the documents already stored. Old
`.tmp-*` cache folders of killed runs are removed once their writer is gone.

Streaming mode reads the corpus on the fly and caches no blocks: the training
documents are read once to measure the held-out tail (and, when the run trains its tokenizer, that same pass
feeds the tokenizer, which then also sees the held-out tail), once to store the validation documents, and then
by training itself. With validation data given there is no measuring pass, and a tokenizer trained by the run
reads the training stream once before training does.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from datasets import Dataset, Features, IterableDataset, Value

from scratchlm.corpus import (
    DOCUMENT_FEATURES,
    PIPELINE_VERSION,
    TEXT,
    CleaningReport,
    CleaningSettings,
    SourceSettings,
    check_not_empty,
    clean_documents,
    content_hash,
    load_documents,
    source_signature,
    unwrap_generation_error,
)
from scratchlm.corpus.cleaning_pass import cleaned_texts, cleaning_workers, survey
from scratchlm.corpus.token_store import (
    DEFAULT_SHARD_TOKENS,
    TokenBlocks,
    TokenStore,
    documents_done,
    write_token_store,
)
from scratchlm.files import atomic_write_text, pid_alive

from .checks import eos_token_id

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = "~/.cache/scratchlm/data"
BLOCK_FEATURES = Features({"input_ids": datasets.List(Value("int32"))})
META_FILE = "meta.json"
# The temporary folders of the cache writes of earlier versions: .tmp-<cache key>-<pid>-<random>
_TEMPORARY_CACHE = re.compile(r"^\.tmp-[0-9a-f]+-(\d+)-[0-9a-f]{8}$")


@dataclass(frozen=True)
class PretrainingDataSettings:
    """What a pretraining run reads and how it prepares it: the `train` documents, the `validation` documents or, when
    there are none, the `validation_fraction` of the training bytes held out from its tail, the cleaning, the shuffle
    buffer of a stream, the `workers` of `datasets.map`, the `cache_dir` of processed data and the tokens of a
    token store shard (`store_shard_tokens`: what a killed preparation loses at most)."""

    train: SourceSettings
    validation: SourceSettings | None = None
    validation_fraction: float = 0.1
    cleaning: CleaningSettings = field(default_factory=CleaningSettings)
    shuffle_buffer_size: int = 10_000
    workers: int | None = None
    cache_dir: str = DEFAULT_CACHE_DIR
    store_shard_tokens: int = DEFAULT_SHARD_TOKENS

    def __post_init__(self):
        if self.validation is None and not 0 < self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be between 0 and 1 (exclusive) when no validation data is given, "
                f"got {self.validation_fraction}"
            )
        if self.validation is not None and self.validation.streaming:
            raise ValueError("validation documents are stored, not streamed: give them with streaming=False")
        if self.train.streaming and self.cleaning.dedup.near:
            raise ValueError(
                "near-deduplication compares every document with all the others and needs the whole corpus: "
                "it does not work with --streaming; turn off one of --near_deduplicate and --streaming"
            )

    @property
    def streaming(self) -> bool:
        return self.train.streaming

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir).expanduser()

    @property
    def documents_key(self) -> str:
        """A hash of what decides the cleaned train and validation documents (not the tokenizer)."""
        has_validation = self.validation is not None
        return content_hash({
            "version": PIPELINE_VERSION,
            "train": source_signature(self.train),
            "validation": source_signature(self.validation) if has_validation else None,
            "validation_fraction": None if has_validation else self.validation_fraction,
            "cleaning": asdict(self.cleaning),
        })

    @property
    def intermediate_dir(self) -> str:
        """Where `datasets` keeps the arrow files of the documents on their way into the token stores."""
        return str(self.cache_root / "intermediate" / self.documents_key)


def _count_bytes_batch(batch: dict[str, list]) -> dict[str, list]:
    return {"num_bytes": [len(text.encode("utf-8")) for text in batch[TEXT]]}


def tail_split_index(document_bytes: np.ndarray, fraction: float, sample_by: str | None = None) -> int:
    """The first held-out document: the tail from it holds `fraction` of the bytes as closely as possible,
    with at least one document on each side."""
    if len(document_bytes) < 2:
        finer = {"document": "paragraph", "paragraph": "line"}.get(sample_by or "")
        raise ValueError(
            f"cannot hold out validation documents from {len(document_bytes)} training document(s); give "
            "--validation_files"
            + (f", or read .txt files as more, smaller documents with --sample_by {finer}" if finer else "")
        )
    tail_bytes = np.cumsum(document_bytes[::-1])[::-1]  # tail_bytes[k] = bytes of documents k, k+1, ...
    target = fraction * tail_bytes[0]
    return int(np.argmin(np.abs(tail_bytes[1:] - target))) + 1


def hold_out_tail(documents: Dataset | IterableDataset, fraction: float, settings: PretrainingDataSettings,
                  document_bytes: np.ndarray | None = None):
    """Split cleaned documents into (train, validation): the last documents holding `fraction` of the
    bytes validate. A stream is read once to count its bytes (unless `document_bytes` has them already);
    validation is then a `Dataset`."""
    if isinstance(documents, Dataset):
        sizes = documents.map(_count_bytes_batch, batched=True, remove_columns=[TEXT], desc="Counting bytes")
        split = tail_split_index(np.asarray(sizes.with_format("numpy")["num_bytes"]), fraction,
                                 settings.train.sample_by)
        return documents.select(range(split)), documents.select(range(split, len(documents)))
    if document_bytes is None:
        logger.info("Streaming: reading the training corpus once to find the last %.0f%% of its bytes",
                    100 * fraction)
        document_bytes = np.fromiter((len(example[TEXT].encode("utf-8")) for example in documents), dtype=np.int64)
    split = tail_split_index(document_bytes, fraction, settings.train.sample_by)
    fingerprint = content_hash(["stream-validation", PIPELINE_VERSION, source_signature(settings.train),
                                asdict(settings.cleaning), fraction])
    validation = unwrap_generation_error(
        Dataset.from_generator, _generate_rows, features=DOCUMENT_FEATURES,
        gen_kwargs={"rows": documents.skip(split)}, cache_dir=settings.intermediate_dir,
        fingerprint=f"stream-validation-{fingerprint}",
    )
    return documents.take(split), validation


def _generate_rows(rows) -> Iterator[dict]:
    yield from rows


class PreparedDocuments:
    """The cleaned training and validation documents of one run, read from their sources once.

    `training_texts()` feeds a tokenizer trainer; `train`/`validation` feed the packer. For a stream held out
    by bytes, the split is found by the first full pass, which is `training_texts()` when a tokenizer is trained
    (that pass then sees the held-out tail too) and otherwise a pass of its own.
    """

    def __init__(self, settings: PretrainingDataSettings):
        self.settings = settings
        self.intermediate_dir = settings.intermediate_dir  # of the files as they are now
        train, self.report = clean_documents(self._documents(settings.train), settings.cleaning, name="train",
                                             workers=settings.workers)
        check_not_empty(train, self.report)
        logger.info("%s", self.report)
        self.validation_report: CleaningReport | None = None
        self._stream: IterableDataset | None = None
        self._train: Dataset | IterableDataset | None = None
        self._validation: Dataset | None = None
        if settings.validation is not None:
            self._validation, self.validation_report = clean_documents(
                self._documents(settings.validation), settings.cleaning, name="validation", workers=settings.workers
            )
            check_not_empty(self._validation, self.validation_report)
            logger.info("%s", self.validation_report)
            self._train = train
        elif isinstance(train, Dataset):
            self._train, self._validation = hold_out_tail(train, settings.validation_fraction, settings)
        else:
            self._stream = train

    def _documents(self, source: SourceSettings) -> Dataset | IterableDataset:
        return load_documents(source, cache_dir=self.intermediate_dir)

    def _split_stream(self, document_bytes: np.ndarray | None = None) -> None:
        self._train, self._validation = hold_out_tail(
            self._stream, self.settings.validation_fraction, self.settings, document_bytes
        )

    @property
    def train(self) -> Dataset | IterableDataset:
        if self._train is None:
            self._split_stream()
        return self._train

    @property
    def validation(self) -> Dataset:
        if self._validation is None:
            self._split_stream()
        return self._validation

    def training_texts(self) -> Iterator[str]:
        """The training documents, one string at a time, for training a tokenizer on the text the model sees."""
        if self._train is not None:
            for batch in self._train.iter(batch_size=1000):
                yield from batch[TEXT]
            return
        sizes = []
        for batch in self._stream.iter(batch_size=1000):
            sizes.extend(len(text.encode("utf-8")) for text in batch[TEXT])
            yield from batch[TEXT]
        self._split_stream(np.asarray(sizes, dtype=np.int64))


def prepare_documents(settings: PretrainingDataSettings) -> PreparedDocuments:
    """Read and clean the corpus of a run once (see `PreparedDocuments`)."""
    return PreparedDocuments(settings)






def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides how the tokenizer encodes: its full `tokenizer.json` when it has
    one (vocabulary, merges, pre-tokenizer, added tokens), else its vocabulary; and the eos id."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return content_hash([type(tokenizer).__name__, content, tokenizer.eos_token_id])






def _too_short_for_a_block(total_tokens: int | None, block_size: int) -> ValueError:
    tokens = "" if total_tokens is None else f" ({total_tokens} tokens)"
    return ValueError(
        f"the training text{tokens} is shorter than one block of block_size={block_size} tokens; use a "
        "smaller --block_size or more text"
    )




def _document_bytes(documents: Dataset) -> int:
    return sum(len(text.encode("utf-8")) for batch in documents.iter(batch_size=1000) for text in batch[TEXT])


def _texts_from(documents: Dataset, start: int, batch_size: int = 1000) -> Iterator[str]:
    """The texts of `documents` from row `start` on (rows before it are not read)."""
    for offset in range(start, len(documents), batch_size):
        yield from documents[offset:offset + batch_size][TEXT]


@dataclass
class PackedBlockCollator:
    """Batches packed blocks for causal LM training: `labels` = `input_ids` (the model shifts them).

    Blocks are all `block_size` long except possibly the last validation block; a shorter one is padded
    with `pad_token_id`, label -100 and attention 0. Unlike `DataCollatorForLanguageModeling`, padding is
    found by position, not by token id, so an eos token is never masked out of the labels (it would be
    with a tokenizer whose pad token is its eos token).
    """

    pad_token_id: int = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(feature["input_ids"]) for feature in features]
        longest = max(lengths)
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), -100, dtype=torch.long)
        for row, feature in enumerate(features):
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            input_ids[row, : len(ids)] = ids
            labels[row, : len(ids)] = ids
        batch = {"input_ids": input_ids, "labels": labels}
        if min(lengths) < longest:
            positions = torch.arange(longest)[None, :]
            batch["attention_mask"] = (positions < torch.tensor(lengths)[:, None]).long()
        return batch


@dataclass
class PretrainingData:
    """What `build_pretraining_data` returns. `train_tokens` is None for a stream (unknown length)."""

    train: TokenBlocks | IterableDataset
    validation: TokenBlocks | Dataset
    validation_bytes: int
    validation_tokens: int
    train_tokens: int | None
    report: CleaningReport
    from_cache: bool
    collator: PackedBlockCollator
    validation_report: CleaningReport | None = None
    cache_dir: Path | None = None


def pretraining_cache_key(settings: PretrainingDataSettings, tokenizer) -> str:
    """The name of the prepared corpus's folder: a hash of the documents' settings (sources with their sizes and
    mtimes or data set ids, text column, document limit, cleaning, validation) and of the tokenizer. Not of the block
    size: the stores hold one flat stream that serves any block size."""
    return content_hash({"documents": settings.documents_key, "tokenizer": tokenizer_fingerprint(tokenizer),
                         "store": "token-store-1"})


@dataclass
class PreparedCorpus:
    """A prepared pretraining corpus: its `train` and `validation` token stores, in `path`."""

    path: Path
    train: TokenStore
    validation: TokenStore
    validation_bytes: int
    report: CleaningReport
    validation_report: CleaningReport | None
    from_cache: bool

    @property
    def bytes_on_disk(self) -> int:
        return sum(file.stat().st_size for file in self.path.rglob("*") if file.is_file())


def prepare_pretraining_corpus(settings: PretrainingDataSettings, tokenizer, *,
                               documents: PreparedDocuments | None = None) -> PreparedCorpus:
    """The token stores of the corpus `settings` describe, tokenized by `tokenizer`: loaded when a run with the same
    settings prepared them, else read (or taken from `documents`), cleaned, split and written (Rust encoding on all
    cores), resuming the shards a killed preparation left. The intermediates are removed once the stores are done."""
    eos_token_id(tokenizer)  # no eos token: an error before anything is read
    remove_stale_temporary_caches(settings.cache_root)
    key = pretraining_cache_key(settings, tokenizer)
    path = settings.cache_root / key
    if (path / META_FILE).is_file():
        logger.info("Pretraining data loaded from cache %s", path)
        return _load_prepared(path, from_cache=True)

    if documents is None and not settings.cleaning.dedup.near:
        stores, validation_bytes, report, validation_report = _write_stores_from_sources(settings, tokenizer, path, key)
    else:
        documents = documents or prepare_documents(settings)
        stores = {name: _write_store(path, name, key, tokenizer, settings, partial(_texts_from, split))
                  for name, split in (("train", documents.train), ("validation", documents.validation))}
        validation_bytes = _document_bytes(documents.validation)
        report, validation_report = documents.report, documents.validation_report
    meta = {
        "validation_bytes": validation_bytes,
        "train_documents": stores["train"].num_documents,
        "validation_documents": stores["validation"].num_documents,
        "report": report.to_dict(),
        "validation_report": validation_report.to_dict() if validation_report else None,
    }
    atomic_write_text(path / META_FILE, json.dumps(meta, indent=2) + "\n")
    _remove_intermediates(Path(documents.intermediate_dir if documents else settings.intermediate_dir))
    logger.info("Pretraining data prepared in %s: %d training tokens, %d validation tokens covering %d bytes", path,
                stores["train"].num_tokens, stores["validation"].num_tokens, meta["validation_bytes"])
    return _load_prepared(path, from_cache=False)


def _write_store(path: Path, name: str, key: str, tokenizer, settings: PretrainingDataSettings,
                 texts_from: Callable[[int], Iterable[str]]) -> TokenStore:
    """The `name` token store in `path`, written from `texts_from(done)`: the documents from the `done` ones a killed
    run stored on."""
    done = documents_done(path / name)
    if done:
        logger.info("Token store %s: %d %s documents stored by an earlier run, skipped", path / name, done, name)
    return write_token_store(texts_from(done), tokenizer, path / name, key=f"{key}-{name}",
                             shard_tokens=settings.store_shard_tokens, documents_skipped=done)


def _write_stores_from_sources(settings: PretrainingDataSettings, tokenizer, path: Path, key: str):
    """The train and validation stores written straight from the sources, without `datasets` or intermediate files
    (`scratchlm.corpus.cleaning_pass`): a first pass cleans and counts (the report, the kept documents, their bytes
    for the hold-out), a second cleans again on worker processes (only the documents the first saw change) while the
    Rust encoder tokenizes. Returns the
    stores, the validation bytes and the two cleaning reports."""
    cleaning = settings.cleaning
    with cleaning_workers(settings.workers) as pool:
        train = survey(settings.train, cleaning, name="train", pool=pool)
        logger.info("%s", train.report)
        validation = None
        if settings.validation is not None:
            validation = survey(settings.validation, cleaning, name="validation", pool=pool)
            logger.info("%s", validation.report)
            validation_bytes = int(validation.kept_bytes.sum())
        else:
            split = tail_split_index(train.kept_bytes, settings.validation_fraction, settings.train.sample_by)
            validation_bytes = int(train.kept_bytes[split:].sum())
            # One reading for both stores: the train store takes the first `split` documents, validation the rest.
            done = documents_done(path / "train")
            texts = cleaned_texts(settings.train, cleaning, train, pool=pool,
                                  start=done if done < split else split + documents_done(path / "validation"))
            stores = {
                "train": _write_store(path, "train", key, tokenizer, settings,
                                      lambda start: itertools.islice(texts, split - start)),
                "validation": _write_store(path, "validation", key, tokenizer, settings, lambda start: texts),
            }
            return stores, validation_bytes, train.report, None
        stores = {
            "train": _write_store(path, "train", key, tokenizer, settings, lambda start: cleaned_texts(
                settings.train, cleaning, train, start=start, pool=pool)),
            "validation": _write_store(path, "validation", key, tokenizer, settings, lambda start: cleaned_texts(
                settings.validation, cleaning, validation, start=start, pool=pool)),
        }
    return stores, validation_bytes, train.report, validation.report if validation else None


def _remove_intermediates(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()  # "intermediate", unless another corpus is being prepared
    except OSError:
        pass


def _load_prepared(path: Path, from_cache: bool) -> PreparedCorpus:
    meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    validation_report = meta["validation_report"]
    return PreparedCorpus(
        path=path,
        train=TokenStore(path / "train"),
        validation=TokenStore(path / "validation"),
        validation_bytes=meta["validation_bytes"],
        report=CleaningReport.from_dict(meta["report"]),
        validation_report=CleaningReport.from_dict(validation_report) if validation_report else None,
        from_cache=from_cache,
    )


def build_pretraining_data(
    settings: PretrainingDataSettings, tokenizer, block_size: int, *, documents: PreparedDocuments | None = None,
) -> PretrainingData:
    """The pretraining corpus as blocks of `block_size` tokens (resolved and checked against the model by the
    command), read from its token stores (`prepare_pretraining_corpus`; a stream is `streaming.py`'s).

    `documents` are the run's cleaned documents when `prepare_documents` has read them already (to train the
    tokenizer); else they are read here, unless the stores are prepared. Everything that can be wrong with
    the input (missing files, bad UTF-8, offline Hub id, no eos token, a corpus empty after cleaning or too small
    for one block, a damaged store) raises before training starts.
    """
    eos = eos_token_id(tokenizer)
    collator = PackedBlockCollator(pad_token_id=eos if tokenizer.pad_token_id is None else tokenizer.pad_token_id)
    if settings.streaming:
        raise ValueError("a streamed corpus is not prepared into token stores: build it with "
                         "training.data.streaming.build_streaming_data")
    corpus = prepare_pretraining_corpus(settings, tokenizer, documents=documents)
    if corpus.train.num_tokens < block_size:
        raise _too_short_for_a_block(corpus.train.num_tokens, block_size)
    train = corpus.train.blocks(block_size)
    return PretrainingData(
        train=train,
        validation=corpus.validation.blocks(block_size, keep_tail=True),
        validation_bytes=corpus.validation_bytes,
        validation_tokens=corpus.validation.num_tokens,
        train_tokens=len(train) * block_size,
        report=corpus.report,
        from_cache=corpus.from_cache,
        collator=collator,
        validation_report=corpus.validation_report,
        cache_dir=corpus.path,
    )


def remove_stale_temporary_caches(root: Path) -> list[Path]:
    """Remove the temporary folders of cache writes whose process is gone (killed mid-write); returns them."""
    removed = []
    for path in root.glob(".tmp-*") if root.is_dir() else ():
        match = _TEMPORARY_CACHE.match(path.name)
        if match and path.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logger.info("Removed %d temporary cache folder(s) left by killed runs in %s", len(removed), root)
    return removed

