"""The languages of a run's training text, when `--language` does not say: Chinese, English or both, told apart by
script ranges (Han characters against Latin letters), which is all a zh/en/mixed tag needs.

A Latin letter carries far less than a Han character (an English word is ~5 letters, a Chinese word 1–2
characters), so the two are weighed differently: Chinese is present when Han characters are at least
`MIN_HAN_SHARE` of all letters, English when Latin letters are at least `MIN_LATIN_SHARE`. A Chinese corpus with a
few brand names is `zh`, an English one quoting a Chinese name is `en`, bilingual data is both. Text with neither
script (or too little of it) gets no tag rather than a guess.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from scratchlm.tokenization.readable import is_han

from .data.tables import ROW_ORIGIN

MIN_HAN_SHARE = 0.1
MIN_LATIN_SHARE = 0.3
MIN_LETTERS = 20  # fewer letters than this decide nothing
SAMPLE_CHARACTERS = 200_000  # read at most this much text


def _is_latin_letter(character: str) -> bool:
    return character.isalpha() and (character.isascii() or "\u00c0" <= character <= "\u024f")


def infer_languages(texts: Iterable[str], max_characters: int = SAMPLE_CHARACTERS) -> list[str] | None:
    """["zh"], ["en"], ["zh", "en"] or None (no Han or Latin text to go by), from the first `max_characters`."""
    han = latin = seen = 0
    for text in texts:
        for character in text[: max_characters - seen]:
            if is_han(character):
                han += 1
            elif _is_latin_letter(character):
                latin += 1
        seen += len(text)
        if seen >= max_characters:
            break
    letters = han + latin
    if letters < MIN_LETTERS:
        return None
    languages = [code for code, share, minimum in (("zh", han, MIN_HAN_SHARE), ("en", latin, MIN_LATIN_SHARE))
                 if share / letters >= minimum]
    return languages or None


def texts_of_rows(dataset, limit: int = 2000) -> Iterable[str]:
    """The string cells (and strings in list cells, and chat message contents) of a table's first `limit` rows;
    not where each row came from (file paths are no text of the data)."""
    for row in itertools.islice(iter(dataset), limit):
        for key, value in row.items():
            if key == ROW_ORIGIN:
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    yield item
                elif isinstance(item, dict) and isinstance(item.get("content"), str):
                    yield item["content"]


def texts_of_blocks(dataset, tokenizer, limit: int = 200) -> Iterable[str]:
    """The decoded text of the first `limit` packed token blocks (pretraining data, cached or not)."""
    for row in itertools.islice(iter(dataset), limit):
        yield tokenizer.decode(row["input_ids"], skip_special_tokens=True)


def run_languages(given: list[str] | None, texts: Iterable[str]) -> tuple[list[str] | None, bool]:
    """(languages, inferred): `--language` when given, else those detected in `texts`."""
    if given:
        return list(given), False
    detected = infer_languages(texts)
    return detected, detected is not None
