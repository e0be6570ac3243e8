"""The data of ScratchLM's training commands: what each task makes of the corpus (`scratchlm.corpus`, which reads,
cleans and deduplicates it) or of its tables. One module per job:

- `pretraining`: the corpus read once per run (`prepare_documents`), held out, tokenized, packed and cached.
- `denoising`: T5 span corruption and BART text infilling of packed blocks, for an encoder-decoder.
- `tables`: fine-tuning tables (files or data sets, through the corpus stage) and their splits.
- `classification`: tables as tokenized (text, label) examples.
- `instructions`: instruction and chat tables as tokenized conversations (SFT), optionally packed.
- `preferences`: (prompt, chosen, rejected) tables for DPO.
- `qa`: SQuAD-format questions and their answers.
- `seq2seq`: source/target pairs from tables or parallel text files (translation, summarisation).
- `cloze`: cloze questions made from unlabelled paragraphs (practice for extractive QA).
- `checks`: lengths and tokenizers against a model.
"""

from .checks import check_block_size, check_max_length, check_tokenizer_fits
from .classification import (
    ClassificationData,
    build_classification_data,
    label_names_from,
    prepare_classification_split,
)
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
    PretrainingDataSettings,
    build_pretraining_data,
    hold_out_tail,
    prepare_documents,
    pretraining_cache_key,
    remove_stale_temporary_caches,
    tail_split_index,
    tokenizer_fingerprint,
)
from .tables import FinetuneReport, TableSettings, check_columns, load_splits, load_table, load_tables

__all__ = [
    "IGNORE_INDEX",
    "ClassificationData",
    "FinetuneReport",
    "PackedBlockCollator",
    "PreparedDocuments",
    "PretrainingData",
    "PretrainingDataSettings",
    "SFTData",
    "TableSettings",
    "alpaca_to_messages",
    "build_classification_data",
    "build_pretraining_data",
    "build_sft_data",
    "check_block_size",
    "check_columns",
    "check_max_length",
    "check_tokenizer_fits",
    "conversations_from_table",
    "hold_out_tail",
    "instruction_format",
    "label_names_from",
    "load_splits",
    "load_table",
    "load_tables",
    "pack_examples",
    "prepare_classification_split",
    "prepare_documents",
    "pretraining_cache_key",
    "remove_stale_temporary_caches",
    "tail_split_index",
    "tokenize_conversations",
    "tokenizer_fingerprint",
]
