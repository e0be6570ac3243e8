"""The data of ScratchLM's training commands, one module per job.

- `documents`: a pretraining corpus from any source (files, globs, directories, `save_to_disk`, Hub ids) as
  "text" documents, read by `scratchlm.tokenization.corpus`, the one reader of files.
- `cleaning`: normalisation and filters, counted in a `CleaningReport`; `dedup`: exact and MinHash near-dedup.
- `pretraining`: the corpus read once per run (`prepare_documents`), held out, tokenized, packed and cached.
- `tables`: fine-tuning tables and their splits; `classification` and `instructions`: their tokenized forms.
- `checks`: lengths and tokenizers against a model.
"""

from .checks import check_block_size, check_max_length, check_tokenizer_fits
from .classification import (
    ClassificationData,
    build_classification_data,
    label_names_from,
    prepare_classification_split,
)
from .cleaning import CleaningReport, clean_documents
from .dedup import minhash, near_duplicate_keep_indices
from .documents import load_documents
from .instructions import (
    IGNORE_INDEX,
    SFTData,
    alpaca_to_messages,
    build_sft_data,
    conversations_from_table,
    instruction_format,
    pack_examples,
    tokenize_conversations,
)
from .pretraining import (
    PackedBlockCollator,
    PreparedDocuments,
    PretrainingData,
    build_pretraining_data,
    hold_out_tail,
    iter_training_texts,
    prepare_documents,
    pretraining_cache_key,
    remove_stale_temporary_caches,
    tail_split_index,
    tokenizer_fingerprint,
)
from .tables import FinetuneReport, check_columns, data_sources, load_splits, load_table, load_tables

__all__ = [
    "IGNORE_INDEX",
    "ClassificationData",
    "CleaningReport",
    "FinetuneReport",
    "PackedBlockCollator",
    "PreparedDocuments",
    "PretrainingData",
    "SFTData",
    "alpaca_to_messages",
    "build_classification_data",
    "build_pretraining_data",
    "build_sft_data",
    "check_block_size",
    "check_columns",
    "check_max_length",
    "check_tokenizer_fits",
    "clean_documents",
    "conversations_from_table",
    "data_sources",
    "hold_out_tail",
    "instruction_format",
    "iter_training_texts",
    "label_names_from",
    "load_documents",
    "load_splits",
    "load_table",
    "load_tables",
    "minhash",
    "near_duplicate_keep_indices",
    "pack_examples",
    "prepare_classification_split",
    "prepare_documents",
    "pretraining_cache_key",
    "remove_stale_temporary_caches",
    "tail_split_index",
    "tokenize_conversations",
    "tokenizer_fingerprint",
]
