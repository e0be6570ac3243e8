"""Tokens as people read them: decoded pieces, text cut at a character boundary, and how well a vocabulary covers
the characters of a text.

A byte-level BPE vocabulary stores bytes as stand-in characters, so `convert_ids_to_tokens` on 酒店 shows
`éħĴåºĹ`, and a token can hold part of a character (a Chinese character is three UTF-8 bytes). These helpers
work on the bytes instead:

- `readable_tokens(tokenizer, ids)`: each token as text (`酒店`); the bytes of a partial character as `\\xe9`;
- `decode_whole_characters(tokenizer, ids)`: the decoded text, stopped before the first byte that does not
  complete a valid UTF-8 character, so a generated sample never ends in (or contains) a U+FFFD that the
  model did not write;
- `character_coverage(tokenizer, texts)`: which characters are single tokens, and tokens per character.

They take any tokenizer; those without a byte-level decoder are decoded with `tokenizer.decode`.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from transformers.convert_slow_tokenizer import bytes_to_unicode

REPLACEMENT_CHARACTER = "\ufffd"


@functools.cache
def _byte_of_symbol() -> dict[str, int]:
    return {symbol: byte for byte, symbol in bytes_to_unicode().items()}


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and type(backend.decoder).__name__ == "ByteLevel"


def token_bytes(tokenizer, ids: Iterable[int], skip_special_tokens: bool = False) -> list[bytes]:
    """The bytes each token of a byte-level tokenizer stands for (added tokens: their text in UTF-8)."""
    byte_of_symbol = _byte_of_symbol()
    added = tokenizer.added_tokens_decoder
    special = set(tokenizer.all_special_ids) if skip_special_tokens else set()
    pieces = []
    for token_id in ids:
        token_id = int(token_id)
        if token_id in special:
            continue
        if token_id in added:
            pieces.append(added[token_id].content.encode("utf-8"))
        else:
            symbols = tokenizer.convert_ids_to_tokens(token_id)
            pieces.append(bytes(byte_of_symbol[symbol] for symbol in symbols))
    return pieces


def readable_tokens(tokenizer, ids: Iterable[int]) -> list[str]:
    """Each token as the text it stands for; bytes that are not a whole character are shown as `\\xNN`."""
    ids = list(ids)
    if not _is_byte_level(tokenizer):
        return [tokenizer.convert_tokens_to_string([token]) for token in tokenizer.convert_ids_to_tokens(ids)]
    return [piece.decode("utf-8", errors="backslashreplace") for piece in token_bytes(tokenizer, ids)]


def decode_whole_characters(tokenizer, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
    """Decode `ids`, stopping before the first byte that does not belong to a complete UTF-8 character.

    Generated text may end in the middle of a character, or an undertrained model may emit bytes that form no
    character at all; `tokenizer.decode` shows those as U+FFFD. This keeps only the text before them.
    """
    if not _is_byte_level(tokenizer):
        text = tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return text.rstrip(REPLACEMENT_CHARACTER)
    data = b"".join(token_bytes(tokenizer, ids, skip_special_tokens=skip_special_tokens))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        return data[: error.start].decode("utf-8")


def is_han(character: str) -> bool:
    """Whether `character` is a Chinese (Han) ideograph: CJK unified ideographs, extensions and compatibility."""
    code = ord(character)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or code >= 0x20000


@dataclass
class CharacterCoverage:
    """How a vocabulary covers the characters of a text: a covered character is one token on its own."""

    characters: int
    distinct_characters: int
    covered_distinct: int
    covered_occurrences: int
    tokens: int
    han_distinct: int
    han_covered_distinct: int

    @property
    def distinct_share(self) -> float:
        return self.covered_distinct / max(self.distinct_characters, 1)

    @property
    def occurrence_share(self) -> float:
        return self.covered_occurrences / max(self.characters, 1)

    @property
    def tokens_per_character(self) -> float:
        return self.tokens / max(self.characters, 1)

    def describe(self) -> str:
        line = (
            f"{self.tokens_per_character:.2f} tokens/character; {self.covered_distinct:,} of "
            f"{self.distinct_characters:,} distinct characters ({self.distinct_share:.1%}, "
            f"{self.occurrence_share:.1%} of occurrences) are single tokens"
        )
        if self.han_distinct:
            line += (
                f"; of the distinct Chinese characters {self.han_covered_distinct:,} of {self.han_distinct:,} "
                f"({self.han_covered_distinct / self.han_distinct:.1%}); others fall back to byte tokens where no "
                "learnt word holds them"
            )
        return line


def character_coverage(tokenizer, texts: Sequence[str]) -> CharacterCoverage:
    """Which characters of `texts` are single tokens (each alone, not as part of a longer token), and the
    number of tokens per character when `texts` are encoded."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    distinct = list(counts)
    encoded = tokenizer(distinct, add_special_tokens=False)["input_ids"] if distinct else []
    covered = {character for character, ids in zip(distinct, encoded) if len(ids) == 1}
    tokens = sum(len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]) if texts else 0
    han = [character for character in distinct if is_han(character)]
    return CharacterCoverage(
        characters=sum(counts.values()),
        distinct_characters=len(distinct),
        covered_distinct=len(covered),
        covered_occurrences=sum(counts[character] for character in covered),
        tokens=tokens,
        han_distinct=len(han),
        han_covered_distinct=sum(character in covered for character in han),
    )
