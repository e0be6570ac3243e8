"""The corpus stage: raw text in, clean documents and a token store out (`scratchlm.corpus`).

It sits below tokenization and training: it reads any source, makes documents, cleans and deduplicates them, and
keeps packed token ids in a compact store; it takes typed settings of its own, never a command's argument group.

- `sources`: which files a source names (files, globs, directories), `datasets` sources, text columns, `SourceSettings`.
- `formats`: one file's documents per format (.txt .jsonl .json .csv .parquet, .gz), its lines and records, UTF-8.
- `reader`: `read_corpus`, the documents of many sources as one stream (the one reader of files).
- `documents`: documents as a `datasets` data set with one column, "text".
- `cleaning`: normalisation and filters, counted in a `CleaningReport` (`CleaningSettings`).
- `dedup`: exact and MinHash near-duplicate detection (`DedupSettings`).
- `cleaning_pass`: the same cleaning over files in two passes on worker processes, without a data set (preparation).
- `token_store`: token ids in uint16/uint32 shards with an index, written once and resumably, read as blocks.
"""

from .cleaning import CleaningReport, CleaningSettings, check_not_empty, clean_documents
from .dedup import DedupSettings, exact_digest, minhash, near_duplicate_keep_indices, shingles
from .documents import (
    DOCUMENT_FEATURES,
    PIPELINE_VERSION,
    TEXT,
    content_hash,
    load_documents,
    num_proc,
    source_signature,
    unwrap_generation_error,
)
from .formats import REPLACE_ADVICE, check_utf8, json_records, load_json, read_file, text_lines
from .reader import read_corpus, read_source
from .sources import (
    ERRORS_CHOICES,
    SAMPLE_BY_CHOICES,
    SUPPORTED_SUFFIXES,
    SourceSettings,
    TextColumns,
    format_suffix,
    is_dataset_source,
    is_saved_dataset,
    load_dataset_source,
    resolve_files,
    split_text_columns,
)

__all__ = [
    "DOCUMENT_FEATURES",
    "ERRORS_CHOICES",
    "PIPELINE_VERSION",
    "REPLACE_ADVICE",
    "SAMPLE_BY_CHOICES",
    "SUPPORTED_SUFFIXES",
    "TEXT",
    "CleaningReport",
    "CleaningSettings",
    "DedupSettings",
    "SourceSettings",
    "TextColumns",
    "check_not_empty",
    "check_utf8",
    "clean_documents",
    "content_hash",
    "exact_digest",
    "format_suffix",
    "is_dataset_source",
    "is_saved_dataset",
    "json_records",
    "load_dataset_source",
    "load_documents",
    "load_json",
    "minhash",
    "near_duplicate_keep_indices",
    "num_proc",
    "read_corpus",
    "read_file",
    "read_source",
    "resolve_files",
    "shingles",
    "source_signature",
    "split_text_columns",
    "text_lines",
    "unwrap_generation_error",
]
