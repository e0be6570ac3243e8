"""`scratchlm-cloze`: cloze questions (SQuAD jsonl) from the paragraphs of SQuAD-format files and of plain text.

    scratchlm-cloze --train_files train-v1.1.json --text_files wiki/ --output_file cloze.jsonl

What the questions are, and how they are made: `scratchlm.training.data.cloze`.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from scratchlm.cli import command, parse_args
from scratchlm.corpus import is_saved_dataset, resolve_files
from scratchlm.files import atomic_open, same_file

from .data.cloze import TEXT_SUFFIXES, cloze_questions, squad_paragraphs, text_paragraphs
from .data.tables import TABLE_BUILDERS


@dataclass
class ClozeArguments:
    output_file: str = field(metadata={"help": "The jsonl file written (flat SQuAD rows)."})
    overwrite_output: bool = field(default=False, metadata={"help": "Replace an existing --output_file."})
    train_files: list[str] = field(default_factory=list, metadata={
        "help": "SQuAD-format data whose paragraphs become cloze questions: json as published, jsonl rows or a "
                "`datasets` id."})
    text_files: list[str] = field(default_factory=list, metadata={
        "help": "Plain text (.txt, .gz too; globs and directories) whose paragraphs, separated by blank "
                "lines, become cloze questions."})
    per_paragraph: int = field(default=16, metadata={"help": "Cloze questions per paragraph at most."})
    per_sentence: int = field(default=2, metadata={"help": "Cloze questions per sentence at most."})
    drop_rate: float = field(default=0.1, metadata={"help": "Chance that a word of the question is dropped."})
    seed: int = field(default=0)

    def __post_init__(self):
        if not self.train_files and not self.text_files:
            raise ValueError("nothing to make cloze questions from: give --train_files and/or --text_files")
        for name in ("per_paragraph", "per_sentence"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.drop_rate < 1:
            raise ValueError(f"--drop_rate must be in [0, 1), got {self.drop_rate}")


def input_files(args: ClozeArguments) -> list[Path]:
    """The local files the command reads, globs and directories resolved (a data set id or a `save_to_disk`
    directory names none)."""
    files = resolve_files(args.text_files, suffixes=TEXT_SUFFIXES, what="text") if args.text_files else []
    local = [source for source in args.train_files
             if not is_saved_dataset(source) and glob.glob(os.path.expanduser(source))]
    return files + (resolve_files(local, suffixes=tuple(TABLE_BUILDERS), what="table") if local else [])


def check_output_file(args: ClozeArguments) -> None:
    """Refuse, before anything is read, an output that is one of the inputs or (without --overwrite_output)
    that exists."""
    output = Path(args.output_file)
    if output.is_dir():
        raise IsADirectoryError(f"--output_file {output} is a directory; give a file path")
    for path in input_files(args):
        if same_file(path, output):
            raise ValueError(f"--output_file {output} is the input {path}; write the cloze questions to another file")
    if output.exists() and not args.overwrite_output:
        raise FileExistsError(f"--output_file {output} exists; pass --overwrite_output to replace it")


@command("scratchlm-cloze")
def main(argv=None) -> None:
    (args,) = parse_args([ClozeArguments], argv,
                         description="Cloze questions (SQuAD jsonl) from SQuAD paragraphs or plain text.")
    check_output_file(args)
    text = text_paragraphs(args.text_files) if args.text_files else []  # small files: checked and read first
    paragraphs = list(dict.fromkeys(squad_paragraphs(args.train_files) + text))
    rows = cloze_questions(paragraphs, per_paragraph=args.per_paragraph, per_sentence=args.per_sentence,
                           drop_rate=args.drop_rate, seed=args.seed)
    if not rows:
        raise ValueError(f"no cloze question could be made from the {len(paragraphs)} paragraph(s) of "
                         f"{', '.join(args.train_files + args.text_files)}: they hold no number or capitalised name "
                         "past a sentence's first word")
    with atomic_open(args.output_file) as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    print(f"{len(rows):,} cloze questions from {len(paragraphs):,} paragraphs written to {args.output_file}")


if __name__ == "__main__":
    main()
