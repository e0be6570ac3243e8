"""`--task seq2seq`: translation or summarisation with an encoder-decoder (`AutoModelForSeq2SeqLM`).

Data: two aligned text files per split, source first (`--train_files train.en train.de`, `.gz` fine; any two
files that are not tables), or tables with a source and a target column (`--source_column`, `--target_column`; a
list source is joined, a list target is a set of references), through `scratchlm.training.data.seq2seq`. Sources
are cut to `--max_length` tokens, targets to `--max_target_length` (both counted); rows with an empty source or
target are dropped (counted).
Training uses every reference of a row (`--train_on each`) or the first; evaluation scores against all of them.

Metrics are computed on generated text (`Seq2SeqTrainer` with `predict_with_generate`, beam size
`generation_num_beams`): sacreBLEU BLEU and chrF (detokenized, cased; the BLEU the `sacrebleu` tool prints for the
same files) and ROUGE-1/2/L (the best over each example's references), from the `evaluate` modules shipped in
`scratchlm/training/metrics/`. The references of an evaluated example are found by its source tokens, so the
Trainer must pass the inputs to `compute_metrics` (`include_for_metrics=["inputs"]`); without them the single
reference in the labels is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

from scratchlm.files import atomic_write_text

from ..data.seq2seq import (
    SOURCE,
    TARGET,
    TRAIN_ON_CHOICES,
    Seq2SeqData,
    build_seq2seq_data,
    pairs_from_table,
    read_parallel_files,
)
from ..data.tables import TABLE_BUILDERS, TableSettings, hold_out_and_limit
from ..evaluation import score_generations
from .base import FinetuneTask, FinetuneTrainingArguments

logger = logging.getLogger(__name__)
IGNORE_INDEX = -100
METRICS = ("sacrebleu", "rouge")


@dataclass
class Seq2SeqArguments:
    """The options of --task seq2seq (its generation options are Trainer options: `Seq2SeqFinetuneTrainingArguments`)."""

    source_column: str = field(default="source", metadata={"help": "Column of the source text (a list of sentences "
                                                                   "is joined)."})
    target_column: str = field(default="target", metadata={"help": "Column of the target text (a list holds several "
                                                                   "references)."})
    max_target_length: int = field(default=128, metadata={"help": "Longer targets are cut to this many tokens "
                                                                  "(counted)."})
    train_on: str = field(default="each", metadata={"choices": list(TRAIN_ON_CHOICES),
                                                    "help": "Train on each reference of a row (each) or the first."})
    source_prefix: str = field(default="", metadata={"help": "Text put before every source (a T5-style task "
                                                             "prefix)."})


@dataclass
class Seq2SeqFinetuneTrainingArguments(FinetuneTrainingArguments, Seq2SeqTrainingArguments):
    """The fine-tuning Trainer options with the `Seq2SeqTrainer`'s generation options (`--generation_num_beams`,
    `--generation_max_length`, ...), which the metrics on generated text use."""


def decode_generations(token_ids, tokenizer) -> list[str]:
    """Generated ids (padded with -100 by the Trainer) -> one line of text each."""
    token_ids = np.where(np.asarray(token_ids) < 0, tokenizer.pad_token_id, token_ids)
    return [" ".join(text.split()) for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]


def parallel_files(files) -> tuple[str, str] | None:
    """(source, target) when `files` are two aligned text files (neither a table nor a directory), else None."""
    if not files or len(files) != 2:
        return None
    for file in files:
        path = Path(file)
        suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
        if path.is_dir() or suffix in TABLE_BUILDERS:
            return None
    return files[0], files[1]


def write_predictions(path: str | Path, predictions: list[str]) -> Path:
    """One prediction a line (the hypothesis file `sacrebleu REF -i HYP` scores); a failure while writing leaves the
    previous file as it was."""
    return atomic_write_text(path, "".join(" ".join(text.split()) + "\n" for text in predictions))


class Seq2SeqTask(FinetuneTask):
    name = "seq2seq"
    pipeline_tag = "text2text-generation"
    card_task_name = "Sequence to sequence"
    peft_task_type = "SEQ_2_SEQ_LM"
    auto_model_class = AutoModelForSeq2SeqLM
    trainer_class = Seq2SeqTrainer
    result_metrics = (("bleu", "bleu", "sacreBLEU"), ("chrf", "chrf", "chrF"), ("rouge1", "rouge", "ROUGE-1"),
                      ("rouge2", "rouge", "ROUGE-2"), ("rougeL", "rouge", "ROUGE-L"))
    arguments = Seq2SeqArguments
    training_arguments = Seq2SeqFinetuneTrainingArguments

    def __init__(self, options: Seq2SeqArguments | None = None):
        super().__init__(options)
        self.tokenizer = None
        self.references_by_source: dict[tuple[int, ...], list[str]] = {}
        self.parallel = False  # the splits came from parallel text files (columns `source` and `target`)
        self.model = None  # the model being trained, whose decoder inputs the collator builds from the labels

    def load_splits(self, sources: TableSettings, *, seed: int, test_files=None, test_split=None, max_eval_samples=None):
        """Parallel text files (two a split, source first) or tables (as every task reads them)."""
        pairs = [parallel_files(files) for files in (sources.train_files, sources.validation_files, test_files)]
        if pairs[0] is None:
            if any(pairs):
                raise ValueError("--validation_files/--test_files are parallel text files but --train_files is not: "
                                 "give every split in the same form (two text files, source first, or tables)")
            return super().load_splits(sources, seed=seed, test_files=test_files, test_split=test_split,
                                       max_eval_samples=max_eval_samples)
        for flag, files, pair in (("--validation_files", sources.validation_files, pairs[1]),
                                  ("--test_files", test_files, pairs[2])):
            if files and pair is None:
                raise ValueError(f"{flag} must be two parallel text files (source first) like --train_files, got "
                                 f"{' '.join(map(str, files))}")
        self.parallel = True
        train, validation, test = (read_parallel_files(*pair) if pair else None for pair in pairs)
        return hold_out_and_limit(train, validation, test, sources, seed=seed, max_eval_samples=max_eval_samples)

    def build_data(self, train, validation, test, tokenizer, *, data_args, max_length: int) -> Seq2SeqData:
        options = self.options
        columns = (SOURCE, TARGET) if self.parallel else (options.source_column, options.target_column)
        pairs = {split: pairs_from_table(table, *columns, split) if table is not None else None
                 for split, table in (("train", train), ("validation", validation), ("test", test))}
        data = build_seq2seq_data(
            pairs["train"], pairs["validation"], pairs["test"], tokenizer, max_source_length=max_length,
            max_target_length=options.max_target_length, train_on=options.train_on,
            source_prefix=options.source_prefix)
        self.tokenizer = tokenizer
        for split in ("validation", "test"):
            examples = getattr(data, split)
            if examples is not None:
                for ids, refs in zip(examples["input_ids"], data.references[split]):
                    known = self.references_by_source.setdefault(self.source_key(ids), [])
                    known.extend(ref for ref in refs if ref not in known)  # a repeated source: all its references
        return data

    def source_key(self, ids) -> tuple[int, ...]:
        return tuple(int(t) for t in ids if t != self.tokenizer.pad_token_id and t != IGNORE_INDEX)

    def collator(self, tokenizer):
        # With the model, batches carry `decoder_input_ids`: label smoothing takes the labels out of the batch.
        return DataCollatorForSeq2Seq(tokenizer, model=self.model, label_pad_token_id=IGNORE_INDEX, padding=True)

    def build_trainer(self, *, model, args, data, tokenizer, callbacks: list, lora=None):
        self.model = model
        args.predict_with_generate = True  # the metrics are on generated text
        if "inputs" not in args.include_for_metrics:
            args.include_for_metrics = [*args.include_for_metrics, "inputs"]  # to find each example's references
        return super().build_trainer(model=model, args=args, data=data, tokenizer=tokenizer, callbacks=callbacks,
                                     lora=lora)

    def test(self, trainer, data, output_dir) -> dict[str, float]:
        """Test metrics, and the generated test outputs in output_dir/test_predictions.txt (one line each)."""
        result = trainer.predict(data.test, metric_key_prefix="test")
        generated = result.predictions[0] if isinstance(result.predictions, tuple) else result.predictions
        path = write_predictions(Path(output_dir) / "test_predictions.txt", decode_generations(generated,
                                                                                              self.tokenizer))
        logger.info("test predictions in %s", path)
        return result.metrics

    def references_of(self, eval_prediction) -> list[list[str]]:
        """All references of each evaluated example, found by its source ids; the labels when inputs are absent."""
        inputs = getattr(eval_prediction, "inputs", None)
        if inputs is None:
            return [[text] for text in decode_generations(eval_prediction.label_ids, self.tokenizer)]
        references = []
        for row in np.asarray(inputs):
            key = self.source_key(row)
            if key not in self.references_by_source:
                raise ValueError("an evaluated example is not in the validation or test data")
            references.append(self.references_by_source[key])
        return references

    def compute_metrics(self, data):
        def compute(eval_prediction):
            generated = eval_prediction.predictions
            generated = generated[0] if isinstance(generated, tuple) else generated
            if generated.ndim == 3:
                raise ValueError("seq2seq metrics need generated text: set --predict_with_generate")
            predictions = decode_generations(generated, self.tokenizer)
            return score_generations(predictions, self.references_of(eval_prediction), METRICS)

        return compute

    def card_fields(self, data):
        return {}
