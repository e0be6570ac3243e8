"""Cloze questions: SQuAD-format practice questions made from unlabelled paragraphs.

A small model fine-tuned on a few thousand real questions has not learnt the first skill extractive QA needs: find
the sentence that shares the question's words and read the answer off it. Cloze questions teach that skill from
raw text (after Lewis et al. 2019, "Unsupervised Question Answering by Cloze Translation", with their
wh-word mapping): in a sentence of the paragraph, an answer-like span (a number, a year, a run of capitalised
words) is replaced by a wh-word, the words around it become the question, and the span is the answer, at its
place in the paragraph. Words of the question are dropped at random (`drop_rate`), so that it is not a verbatim
copy of the text. Fine-tuning on these first, then on the real questions, is the intermediate-task recipe.

The rows are the flat SQuAD layout that `load_squad` reads (`id`, `title`, `context`, `question`, `answers`).
The command `scratchlm-cloze` (`scratchlm.training.cloze`) writes them as jsonl from the paragraphs of SQuAD-format
files and of plain text; docs/qa.md shows the two fine-tuning runs that use them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from pathlib import Path

from scratchlm.corpus import check_utf8, read_file, resolve_files

from .qa import load_squad

# A sentence ends at . ! or ? before a capital, but not after an initial ("J. Smith", "U.S. Army") or a title.
SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\b[A-Z]\.)(?<!\b(?:Mr|Dr|St|Jr|Sr|vs)\.)(?<!\bMrs\.)\s+(?=[A-Z\"'(])")
WORD = re.compile(r"\S+")
NUMBER = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b")
YEAR = re.compile(r"^(1[0-9]|20)\d\d$")
# a run of capitalised words, "of"/"the"/"de" allowed inside ("University of Chicago")
NAME = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:(?:of|the|de|and)\s+)*[A-Z][\w'-]*)*")
CAPITALISED_FUNCTION_WORDS = frozenset("A An And As At But By For From He Her His I In It Its Of On She That The Their "
                                       "They This To We With".split())


def _answer_candidates(sentence: str) -> list[tuple[int, int, str]]:
    """(start, end, wh-word) of the answer-like spans in one sentence; a name opening the sentence is left out."""
    candidates = []
    for match in NUMBER.finditer(sentence):
        wh = "when" if YEAR.match(match.group()) else "how many"
        candidates.append((match.start(), match.end(), wh))
    for match in NAME.finditer(sentence):
        if match.start() > 0 and match.group() not in CAPITALISED_FUNCTION_WORDS:
            candidates.append((match.start(), match.end(), "what"))
    return candidates


def _question(sentence: str, start: int, end: int, wh: str, rng: random.Random, *, words_around: int,
              drop_rate: float) -> str:
    before = WORD.findall(sentence[:start])[-words_around:]
    after = WORD.findall(sentence[end:])[:words_around]
    before = [word for word in before if rng.random() >= drop_rate]
    after = [word for word in after if rng.random() >= drop_rate]
    text = " ".join([*before, wh, *after]).rstrip(".,;:!?")
    return text[0].upper() + text[1:] + "?"


def split_sentences(text: str) -> list[tuple[int, str]]:
    """(character offset, sentence) of every sentence of `text`."""
    offset, sentences = 0, []
    for sentence in SENTENCE_END.split(text):
        offset = text.index(sentence, offset)
        sentences.append((offset, sentence))
        offset += len(sentence)
    return sentences


def cloze_questions(paragraphs: Iterable[tuple[str, str]], *, per_paragraph: int = 8, per_sentence: int = 2,
                    words_around: int = 7, drop_rate: float = 0.1, seed: int = 0) -> list[dict]:
    """Up to `per_paragraph` cloze questions for each `(title, paragraph)`, at most `per_sentence` from one sentence
    (different spans), in the SQuAD layout."""
    rng = random.Random(seed)
    rows = []
    for title, context in paragraphs:
        sentences = split_sentences(context)
        rng.shuffle(sentences)
        made = 0
        for sentence_start, sentence in sentences:
            candidates = _answer_candidates(sentence)
            for start, end, wh in rng.sample(candidates, min(per_sentence, len(candidates))):
                question = _question(sentence, start, end, wh, rng, words_around=words_around, drop_rate=drop_rate)
                if made == per_paragraph or len(WORD.findall(question)) < 4:
                    continue
                rows.append({"id": f"cloze-{len(rows)}", "title": title, "context": context, "question": question,
                             "answers": {"text": [sentence[start:end]], "answer_start": [sentence_start + start]}})
                made += 1
    return rows


def text_paragraphs(sources: str | Path | list) -> list[tuple[str, str]]:
    """(file name, paragraph) for every paragraph of plain text files (the project's corpus reader: `.txt`, gzip
    too, globs and directories; invalid UTF-8 is named before anything is read), its line breaks made spaces."""
    files = resolve_files(sources, suffixes=TEXT_SUFFIXES, what="text")
    check_utf8(files, advice="save the file as UTF-8")
    return [(path.name, " ".join(paragraph.split())) for path in files
            for paragraph in read_file(path, sample_by="paragraph")]


def squad_paragraphs(sources: Iterable[str]) -> list[tuple[str, str]]:
    """(title, context) of every distinct paragraph of SQuAD-format sources (read by `load_squad`), in order."""
    paragraphs: dict[tuple[str, str], None] = {}
    for source in sources:
        data = load_squad(source)
        paragraphs.update(dict.fromkeys(zip(data["title"], data["context"])))
    return list(paragraphs)


TEXT_SUFFIXES = (".txt",)
