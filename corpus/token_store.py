"""The token store: a corpus tokenized once into one flat stream of token ids, kept in fixed-size shard files.

Layout of a store directory:

    index.json          dtype, vocabulary size, eos id, the caller's key, "complete", and for each shard its file,
                        tokens, the documents complete by its end and the tokens of the next document it holds
    shard_00000.bin     `shard_tokens` token ids, raw, in the index's dtype (native little-endian numpy)
    shard_00001.bin     ...; only the last shard may hold fewer

Every document's tokens are followed by the eos id (the writer appends it; documents come without it), the rule of
`training/data/pretraining.py`, so blocks cut from the stream are the blocks pretraining packs today.

Why raw numpy memmap files (as nanoGPT and nanochat do) rather than arrow: a token costs exactly its dtype's size on
disk (2 bytes for a vocabulary of at most 65,536 ids, uint16; else 4, uint32) with no per-row offsets, validity
bitmaps or file metadata, and a block that spans two shards is two slices of two memory maps, read without copying
a shard, in any order, by any number of processes. Arrow would store the same stream with more machinery and no gain
for a stream that has no rows.

Writing is resumable: each shard is written to a temporary name and renamed when complete (`scratchlm.files`), then
the index is rewritten listing it with how many documents of the input are complete by its end and how many tokens
of the next document it already holds. A run killed mid-way leaves the completed shards; the next run with the same
key skips the complete documents (`documents_done(path)` counts them; a caller that skips reading them passes
`documents_skipped`), re-encodes only the one document cut by the last shard and drops its tokens already stored.
Memory holds one shard buffer plus one group of documents, whatever the size of the corpus.

Reading: `TokenStore(path)` checks the index and the size of every shard, maps shards lazily, and `blocks(block_size)`
is a map-style torch `Dataset` of fixed-length training blocks (blocks span shard boundaries; the last partial block
is dropped), so under DDP the Trainer's `DistributedSampler` gives each rank its own block indices and a resumed run
skips consumed batches without reading them. `TokenBlocks.rank_blocks(rank, world_size)` gives each rank a contiguous
range of blocks for iterable use.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from scratchlm.files import atomic_open, atomic_write_text

INDEX_NAME = "index.json"
FORMAT = "scratchlm-token-store"
FORMAT_VERSION = 1
# 16 Mi tokens: 32 MiB a shard in uint16, the writer's peak memory and the work a killed run loses at most.
DEFAULT_SHARD_TOKENS = 2**24
# Documents are flattened in groups of about this many tokens (a shard's worth when shards are smaller): enough for
# numpy to do the work, small next to a shard buffer.
_GROUP_TOKENS = 2**16
# Texts per `encode_batch` call: the Rust side spreads one batch over all cores.
DEFAULT_ENCODE_BATCH = 1024


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding ids 0 .. vocab_size - 1: uint16 up to 65,536 ids, else uint32."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if vocab_size <= 2**16:
        return np.dtype(np.uint16)
    if vocab_size <= 2**32:
        return np.dtype(np.uint32)
    raise ValueError(f"vocab_size={vocab_size} does not fit in 32-bit token ids")


def shard_name(number: int) -> str:
    return f"shard_{number:05d}.bin"


def read_index(path: str | Path) -> dict | None:
    """The index of the store in `path`, or None when it has none."""
    index_path = Path(path) / INDEX_NAME
    try:
        text = index_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        index = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{index_path}: not a token store index (invalid JSON: {error.msg})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{index_path}: not a token store index (no \"format\": \"{FORMAT}\")")
    if index.get("version") != FORMAT_VERSION:
        raise ValueError(f"{index_path}: token store version {index.get('version')!r}, this code reads "
                         f"version {FORMAT_VERSION}; prepare the store again")
    return index


def documents_done(path: str | Path) -> int:
    """How many leading documents of its input the store in `path` holds completely: what a rerun may skip reading
    (0 when there is no store yet). Pass them to the writer as `documents_skipped`."""
    index = read_index(path)
    return 0 if index is None else _documents_done(index)


def _documents_done(index: dict) -> int:
    shards = index["shards"]
    return index["num_documents"] if index["complete"] else shards[-1]["documents"] if shards else 0


def _check_shard(path: Path, shard: dict, dtype: np.dtype) -> None:
    expected = shard["tokens"] * dtype.itemsize
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"token store shard {path} is missing; prepare the store again") from None
    if size != expected:
        raise ValueError(f"token store shard {path} holds {size} bytes, its index says {expected} "
                         f"({shard['tokens']} {dtype.name} tokens): the store is damaged; prepare it again")


class TokenStoreWriter:
    """Writes a store into `out_dir`, or finishes the one a killed run left there with the same settings.

        with TokenStoreWriter(out_dir, vocab_size=..., eos_token_id=..., key=...) as writer:
            store = writer.write(documents)  # documents: sequences of token ids, without eos

    `key` is the caller's fingerprint of everything that decides the content (sources, cleaning, tokenizer): a
    directory holding a store of another key or other settings is refused, never overwritten. Entering takes an
    exclusive lock on the directory (one writer at a time; the system drops it if the process dies) and removes the
    temporary files of a killed run.
    """

    def __init__(self, out_dir: str | Path, *, vocab_size: int, eos_token_id: int, key: str,
                 shard_tokens: int = DEFAULT_SHARD_TOKENS):
        self.path = Path(out_dir)
        self.dtype = token_dtype(vocab_size)
        if not isinstance(eos_token_id, int) or not 0 <= eos_token_id < vocab_size:
            raise ValueError(f"eos_token_id must be an id of the vocabulary (0 .. {vocab_size - 1}), "
                             f"got {eos_token_id!r}")
        if not isinstance(shard_tokens, int) or isinstance(shard_tokens, bool) or shard_tokens < 1:
            raise ValueError(f"shard_tokens must be a positive integer, got {shard_tokens!r}")
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        self.index = {
            "format": FORMAT, "version": FORMAT_VERSION, "key": key, "dtype": self.dtype.name,
            "vocab_size": vocab_size, "eos_token_id": eos_token_id, "shard_tokens": shard_tokens,
            "shards": [], "num_tokens": 0, "num_documents": 0, "complete": False,
        }
        self._lock: int | None = None

    def __enter__(self) -> TokenStoreWriter:
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._unlock()
            raise ValueError(f"another process is writing the token store in {self.path}") from None
        try:
            self._resume()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def _resume(self) -> None:
        for temporary in self.path.glob(".*.partial"):  # left by a killed writer; the lock says none is running
            temporary.unlink()
        existing = read_index(self.path)
        if existing is None:
            strangers = sorted(entry.name for entry in self.path.iterdir()
                               if not (entry.name.startswith("shard_") and entry.suffix == ".bin"))
            if strangers:
                raise ValueError(f"{self.path} holds no token store but other files ({', '.join(strangers[:3])}); "
                                 "give an empty or new directory")
            return
        settings = ("key", "dtype", "vocab_size", "eos_token_id", "shard_tokens")
        different = [name for name in settings if existing.get(name) != self.index[name]]
        if different:
            name = different[0]
            raise ValueError(f"{self.path} holds a token store of other settings ({name} {existing.get(name)!r}, "
                             f"not {self.index[name]!r}); remove it or choose another directory")
        for shard in existing["shards"]:
            _check_shard(self.path / shard["file"], shard, self.dtype)
        self.index = existing

    @property
    def documents_done(self) -> int:
        """How many leading documents of the input the store holds completely (all of them once complete)."""
        return _documents_done(self.index)

    def remaining(self, documents: Iterable, documents_skipped: int = 0) -> Iterator:
        """`documents` without those the store holds completely: `documents` is the whole input, or the input
        without its first `documents_skipped` documents when the caller skipped them (at most `documents_done`)."""
        done = self.documents_done
        if not isinstance(documents_skipped, int) or not 0 <= documents_skipped <= done:
            raise ValueError(f"documents_skipped must be between 0 and the {done} documents the store in "
                             f"{self.path} holds, got {documents_skipped!r}")
        documents = iter(documents)
        if sum(1 for _ in itertools.islice(documents, done - documents_skipped)) < done - documents_skipped:
            raise ValueError(f"the input has fewer documents than the {done} the token store in {self.path} "
                             "already holds: the corpus changed; remove the store or use another directory")
        return documents

    def write(self, documents: Iterable[Sequence[int]], documents_skipped: int = 0) -> TokenStore:
        """Write `documents` (each a sequence of token ids; eos is appended to each) and return the complete store.

        The documents the store already holds are skipped, without being converted (see `remaining`). A complete
        store is returned as it is, without reading `documents`.
        """
        if not self.index["complete"]:
            _ShardFiller(self).fill(self.remaining(documents, documents_skipped), self.documents_done)
        return TokenStore(self.path)

    def save_shard(self, tokens: np.ndarray, documents: int, partial_document_tokens: int) -> None:
        """Write the next shard atomically, then the index that lists it."""
        name = shard_name(len(self.index["shards"]))
        with atomic_open(self.path / name, "wb") as handle:
            handle.write(memoryview(tokens))
        self.index["shards"].append({"file": name, "tokens": len(tokens), "documents": documents,
                                     "partial_document_tokens": partial_document_tokens})
        self.index["num_tokens"] += len(tokens)
        self.save_index()

    def save_index(self) -> None:
        atomic_write_text(self.path / INDEX_NAME, json.dumps(self.index, indent=1) + "\n")


class _ShardFiller:
    """Moves documents into the shard buffer and hands each full buffer to the writer (one pass, one buffer)."""

    def __init__(self, writer: TokenStoreWriter):
        self.writer = writer
        index = writer.index
        self.vocab_size, self.eos = index["vocab_size"], index["eos_token_id"]
        self.buffer = np.empty(index["shard_tokens"], dtype=writer.dtype)
        self.filled = 0
        shards = index["shards"]
        # Tokens of the first document to come that the last shard already holds: re-encoded, not stored twice.
        self.skip_tokens = shards[-1]["partial_document_tokens"] if shards else 0

    def fill(self, documents: Iterator[Sequence[int]], first_document: int) -> None:
        start = self.writer.index["num_tokens"] - self.skip_tokens  # stream position of the next document
        for group in _groups(documents, min(_GROUP_TOKENS, len(self.buffer))):
            tokens, ends = self._flatten(group, first_document)
            if self.skip_tokens:
                if self.skip_tokens >= ends[0]:
                    raise ValueError(f"document {first_document} is shorter than the part of it the token store in "
                                     f"{self.writer.path} holds: the corpus changed; remove the store")
                tokens, self.skip_tokens = tokens[self.skip_tokens:], 0
            self._add(tokens, start + ends, first_document, start)
            first_document += len(group)
            start += int(ends[-1])
        if self.filled:
            self.writer.save_shard(self.buffer[:self.filled], first_document, 0)
        self.writer.index.update(num_documents=first_document, complete=True)
        self.writer.save_index()

    def _flatten(self, group: list[Sequence[int]], first_document: int) -> tuple[np.ndarray, np.ndarray]:
        """The group's ids, each document followed by eos, and where each document ends (exclusive)."""
        lengths = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        if isinstance(group[0], np.ndarray):
            ids = np.concatenate(group).astype(np.int64, copy=False)
        else:
            ids = np.fromiter(itertools.chain.from_iterable(group), dtype=np.int64, count=int(lengths.sum()))
        ends = np.cumsum(lengths + 1)
        tokens = np.empty(int(ends[-1]), dtype=np.int64)
        is_eos = np.zeros(len(tokens), dtype=bool)
        is_eos[ends - 1] = True
        tokens[is_eos] = self.eos
        tokens[~is_eos] = ids
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(np.flatnonzero((tokens < 0) | (tokens >= self.vocab_size))[0])
            number = first_document + int(np.searchsorted(ends, bad, side="right"))
            raise ValueError(f"document {number}: token id {tokens[bad]} is outside the vocabulary of "
                             f"{self.vocab_size} ids")
        return tokens.astype(self.writer.dtype), ends

    def _add(self, tokens: np.ndarray, ends: np.ndarray, first_document: int, start: int) -> None:
        """Buffer `tokens` (whose documents end at stream positions `ends` and start at `start`), saving full shards."""
        offset = 0
        while offset < len(tokens):
            count = min(len(self.buffer) - self.filled, len(tokens) - offset)
            self.buffer[self.filled:self.filled + count] = tokens[offset:offset + count]
            self.filled += count
            offset += count
            if self.filled == len(self.buffer):
                shard_end = self.writer.index["num_tokens"] + self.filled
                complete = int(np.searchsorted(ends, shard_end, side="right"))
                last_end = int(ends[complete - 1]) if complete else start
                self.writer.save_shard(self.buffer, first_document + complete, shard_end - last_end)
                self.filled = 0


def _groups(documents: Iterator[Sequence[int]], tokens: int) -> Iterator[list[Sequence[int]]]:
    """Consecutive documents holding together at least `tokens` tokens (with their eos), the last group fewer."""
    group, size = [], 0
    for document in documents:
        group.append(document)
        size += len(document) + 1
        if size >= tokens:
            yield group
            group, size = [], 0
    if group:
        yield group


def write_token_store(texts: Iterable[str], tokenizer, out_dir: str | Path, *, key: str,
                      shard_tokens: int = DEFAULT_SHARD_TOKENS, documents_skipped: int = 0,
                      batch_size: int = DEFAULT_ENCODE_BATCH) -> TokenStore:
    """Tokenize `texts` (one document each) with `tokenizer` on all cores and write them as a store in `out_dir`.

    `tokenizer` is a transformers fast tokenizer; its eos ends every document.
    Resumes a store a killed run left with the same `key`; the documents it holds are skipped before tokenizing,
    and a caller that skipped reading them too passes `documents_skipped` (see `TokenStoreWriter.write`).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"the tokenizer ({type(tokenizer).__name__}) has no eos token, which separates "
                         "documents in the token store; set tokenizer.eos_token")
    with TokenStoreWriter(out_dir, vocab_size=len(tokenizer), eos_token_id=eos, key=key,
                          shard_tokens=shard_tokens) as writer:
        if writer.index["complete"]:
            return TokenStore(writer.path)
        texts = writer.remaining(texts, documents_skipped)
        return writer.write(encode_texts(tokenizer, texts, batch_size), documents_skipped=writer.documents_done)


def encode_texts(tokenizer, texts: Iterable[str], batch_size: int = DEFAULT_ENCODE_BATCH) -> Iterator[list[int]]:
    """The token ids of each text, without special tokens, encoded `batch_size` texts at a time by the Rust
    `encode_batch_fast` (all cores; no character offsets computed)."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    texts = iter(texts)
    while batch := list(itertools.islice(texts, batch_size)):
        for encoding in backend.encode_batch_fast(batch, add_special_tokens=False):
            yield encoding.ids


class TokenStore:
    """A complete token store, opened read-only: `num_tokens`, `tokens(start, stop)`, `blocks(block_size)`.

    Opening checks the index and that every shard is there with the size the index gives, and fails with one line
    naming the file otherwise. Shards are memory-mapped on first use (a copy sent to a DataLoader worker maps its
    own).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index = read_index(self.path)
        if index is None:
            raise FileNotFoundError(f"no token store in {self.path}: {self.path / INDEX_NAME} is missing")
        if not index["complete"]:
            raise ValueError(f"the token store in {self.path} is incomplete ({len(index['shards'])} shard(s) "
                             "written): run its preparation again to finish it")
        self.index = index
        self.key: str = index["key"]
        self.dtype = np.dtype(index["dtype"])
        self.vocab_size: int = index["vocab_size"]
        self.eos_token_id: int = index["eos_token_id"]
        self.num_documents: int = index["num_documents"]
        self.num_tokens: int = index["num_tokens"]
        for shard in index["shards"]:
            _check_shard(self.path / shard["file"], shard, self.dtype)
        self.shard_files = [self.path / shard["file"] for shard in index["shards"]]
        self._shard_starts = np.cumsum([0] + [shard["tokens"] for shard in index["shards"]])
        self._maps: dict[int, np.memmap] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}

    def _shard(self, number: int) -> np.memmap:
        if number not in self._maps:
            self._maps[number] = np.memmap(self.shard_files[number], dtype=self.dtype, mode="r")
        return self._maps[number]

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Tokens `start` .. `stop` - 1 of the stream, across shard boundaries (a new array of the store's dtype)."""
        if not 0 <= start <= stop <= self.num_tokens:
            raise IndexError(f"tokens {start}..{stop} outside the store's {self.num_tokens} tokens")
        pieces = []
        number = int(np.searchsorted(self._shard_starts, start, side="right")) - 1
        while start < stop:
            shard_start, shard_stop = self._shard_starts[number], self._shard_starts[number + 1]
            end = min(stop, shard_stop)
            pieces.append(self._shard(number)[start - shard_start:end - shard_start])
            start, number = end, number + 1
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=self.dtype)

    def blocks(self, block_size: int, *, keep_tail: bool = False) -> TokenBlocks:
        return TokenBlocks(self, block_size, keep_tail=keep_tail)


class TokenBlocks(torch.utils.data.Dataset):
    """The store cut into blocks of `block_size` tokens, block i = tokens [i * block_size, (i + 1) * block_size);
    the last partial block is dropped, or kept (shorter) with `keep_tail` (validation: every token evaluated).
    Items are {"input_ids": LongTensor}; `PackedBlockCollator` adds labels."""

    def __init__(self, store: TokenStore, block_size: int, *, keep_tail: bool = False):
        if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        if store.num_tokens < (1 if keep_tail else block_size):
            raise ValueError(f"the token store in {store.path} holds {store.num_tokens} tokens, fewer than one "
                             f"block of block_size={block_size}; use a smaller --block_size or more text")
        self.store = store
        self.block_size = block_size
        self.keep_tail = keep_tail

    def __len__(self) -> int:
        if self.keep_tail:
            return -(-self.store.num_tokens // self.block_size)
        return self.store.num_tokens // self.block_size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"block {index} outside the {len(self)} blocks of the store")
        start = (index % len(self)) * self.block_size
        ids = self.store.tokens(start, min(start + self.block_size, self.store.num_tokens))
        return {"input_ids": torch.from_numpy(ids.astype(np.int64))}

    def rank_blocks(self, rank: int, world_size: int) -> range:
        """The contiguous block indices of process `rank` of `world_size`: disjoint, together all blocks, their
        lengths differing by at most one."""
        if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0 .. world_size - 1 with world_size >= 1, got rank={rank!r}, "
                             f"world_size={world_size!r}")
        return range(rank * len(self) // world_size, (rank + 1) * len(self) // world_size)
