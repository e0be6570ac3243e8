"""`scratchlm-prepare`: prepare a pretraining corpus once, as token stores that many runs and nodes then read.

    scratchlm-prepare --train_files data/*.txt --tokenizer_name_or_path tok/ --data_cache_dir /shared/cache
    scratchlm-pretrain --train_files data/*.txt --tokenizer_name_or_path tok/ --data_cache_dir /shared/cache ...

It takes the data and tokenizer flags of `scratchlm-pretrain` and does what a pretraining run does before training
(`prepare_pretraining_corpus`): read, clean, hold out, tokenize on all cores, write the `train/` and `validation/`
token stores under `--data_cache_dir`. A run with the same flags then finds them and starts training at once.
Killed mid-way, the same command resumes from the shards already written. The tokenizer must be given (a run that
trains its own tokenizer prepares its corpus itself, with that tokenizer).
"""

from __future__ import annotations

import os

from scratchlm.cli import command, parse_args

from .arguments import ModelArguments, PretrainingDataArguments
from .data.pretraining import PreparedCorpus, prepare_pretraining_corpus
from .pretraining_inputs import NUM_SENTINELS, denoising_objective, load_given_tokenizer


def prepare(model_args: ModelArguments, data_args: PretrainingDataArguments) -> PreparedCorpus:
    if data_args.streaming:
        raise ValueError("--streaming reads the corpus while training: there is nothing to prepare; leave it out")
    if data_args.preprocessing_num_workers is None:  # all cores for cleaning (tokenizing uses them anyway)
        data_args.preprocessing_num_workers = os.cpu_count()
    settings = data_args.to_settings()
    model_args.check_local_paths()
    seq2seq = denoising_objective(model_args, data_args) is not None
    tokenizer = load_given_tokenizer(model_args, NUM_SENTINELS if seq2seq else 0)
    if tokenizer is None:
        raise ValueError("scratchlm-prepare needs the tokenizer the runs will use: give --tokenizer_name_or_path "
                         "(or --model_name_or_path)")
    return prepare_pretraining_corpus(settings, tokenizer)


@command("scratchlm-prepare")
def main(argv=None) -> None:
    model_args, data_args = parse_args(
        [ModelArguments, PretrainingDataArguments], argv,
        description="Prepare a pretraining corpus once: cleaned, tokenized token stores that scratchlm-pretrain reads.",
    )
    corpus = prepare(model_args, data_args)
    tokens = corpus.train.num_tokens + corpus.validation.num_tokens
    on_disk = corpus.bytes_on_disk
    print(f"{'found' if corpus.from_cache else 'prepared'}: {corpus.path}\n"
          f"{corpus.train.num_tokens:,} training and {corpus.validation.num_tokens:,} validation tokens "
          f"({corpus.train.dtype.name}), {on_disk:,} bytes on disk, {on_disk / tokens:.3f} bytes per token")


if __name__ == "__main__":
    main()
