"""The token store (scratchlm.corpus.token_store): dtype, round trip, blocks across shards, resume after a kill,
damaged stores, per-rank reading, bytes on disk."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from scratchlm.corpus.token_store import (
    TokenStore,
    TokenStoreWriter,
    documents_done,
    encode_texts,
    token_dtype,
    write_token_store,
)
from scratchlm.tokenization import train_tokenizer

EOS = 1


def random_documents(count: int, vocab_size: int = 1000, longest: int = 120, seed: int = 0) -> list[list[int]]:
    """Documents of 0 .. longest - 1 ids (some longer than the tiny shards below, some empty)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab_size, rng.integers(0, longest)).tolist() for _ in range(count)]


def stream(documents) -> np.ndarray:
    return np.array([token for document in documents for token in [*document, EOS]], dtype=np.int64)


def write(path, documents, documents_skipped=0, vocab_size=1000, shard_tokens=97, key="k") -> TokenStore:
    with TokenStoreWriter(path, vocab_size=vocab_size, eos_token_id=EOS, key=key, shard_tokens=shard_tokens) as writer:
        return writer.write(documents, documents_skipped=documents_skipped)


def killed_after(documents, count: int):
    yield from documents[:count]
    raise RuntimeError("killed")


def files(path: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in sorted(path.iterdir())}


def test_dtype_is_the_smallest_that_holds_the_vocabulary(tmp_path):
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    small = write(tmp_path / "small", [[65535, 0]], vocab_size=65536)
    large = write(tmp_path / "large", [[65536, 0]], vocab_size=65537)
    assert small.dtype == np.uint16 and small.shard_files[0].stat().st_size == 3 * 2
    assert large.dtype == np.uint32 and large.shard_files[0].stat().st_size == 3 * 4
    assert small.tokens(0, 3).tolist() == [65535, 0, EOS] and large.tokens(0, 3).tolist() == [65536, 0, EOS]


def test_round_trip_and_blocks_across_shard_boundaries(tmp_path):
    documents = random_documents(300)
    documents[::7] = [np.asarray(document, dtype=np.int32) for document in documents[::7]]  # arrays as well as lists
    store = write(tmp_path, documents, shard_tokens=97)
    expected = stream(documents)
    assert store.num_tokens == len(expected) and store.num_documents == 300
    assert len(store.shard_files) == -(-len(expected) // 97)
    np.testing.assert_array_equal(store.tokens(0, store.num_tokens), expected)

    blocks = store.blocks(50)
    assert len(blocks) == len(expected) // 50  # the last partial block is dropped
    spanning = [i for i in range(len(blocks)) if (i * 50) // 97 != (i * 50 + 49) // 97]
    assert spanning, "no block crosses a shard boundary"
    for i in [0, *spanning[:5], len(blocks) - 1]:
        item = blocks[i]["input_ids"]
        assert item.dtype == torch.long and item.tolist() == expected[i * 50 : (i + 1) * 50].tolist()
    with pytest.raises(IndexError):
        blocks[len(blocks)]
    with pytest.raises(ValueError, match="fewer than one block"):
        store.blocks(store.num_tokens + 1)


@pytest.mark.parametrize("caller_skips", [True, False])
def test_resume_after_a_kill_equals_an_uninterrupted_store(tmp_path, caller_skips):
    documents = random_documents(400)
    whole = write(tmp_path / "whole", documents)

    path = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        write(path, killed_after(documents, 250))
    (path / ".shard_00009.bin.x1y2.partial").write_bytes(b"left by kill -9")
    with pytest.raises(ValueError, match="incomplete"):
        TokenStore(path)

    done = documents_done(path)
    shards = len(list(path.glob("shard_*.bin")))
    assert shards >= 2
    ends = np.cumsum([len(document) + 1 for document in documents])
    assert done == int(np.sum(ends <= shards * 97)), "the count of complete documents is the shards' count"
    assert done < 250

    read = []

    def rest():
        for number in range(done if caller_skips else 0, len(documents)):
            read.append(number)
            yield documents[number]

    resumed = write(path, rest(), documents_skipped=done if caller_skips else 0)
    if caller_skips:
        assert read[0] == done and len(read) == len(documents) - done
    assert files(path) == files(whole.path)  # the same shards and the same index, no temporary left
    assert resumed.num_tokens == whole.num_tokens

    assert write(path, killed_after(documents, 0)).num_tokens == whole.num_tokens  # complete: input not read


def test_resume_refuses_a_changed_corpus_or_other_settings(tmp_path):
    documents = random_documents(200)
    with pytest.raises(RuntimeError):
        write(tmp_path, killed_after(documents, 150))
    done = documents_done(tmp_path)
    with pytest.raises(ValueError, match="fewer documents than"):
        write(tmp_path, documents[: done - 1])
    with pytest.raises(ValueError, match=r"documents_skipped must be between 0 and"):
        write(tmp_path, documents, documents_skipped=done + 1)
    with pytest.raises(ValueError, match="holds a token store of other settings .key 'k', not 'other'"):
        write(tmp_path, documents, key="other")
    with pytest.raises(ValueError, match="shard_tokens 97, not 50"):
        write(tmp_path, documents, shard_tokens=50)


def test_bad_input_fails_with_one_line(tmp_path):
    with pytest.raises(ValueError, match="document 3: token id 1000 is outside the vocabulary of 1000 ids"):
        write(tmp_path / "a", [[1], [2], [3], [4, 1000]])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no token store but other files .notes.txt"):
        write(tmp_path / "b", [[1]])
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"
    with TokenStoreWriter(tmp_path / "c", vocab_size=10, eos_token_id=EOS, key="k"):
        with pytest.raises(ValueError, match="another process is writing the token store"):
            write(tmp_path / "c", [[1]], vocab_size=10)
    with pytest.raises(ValueError, match="eos_token_id must be an id of the vocabulary"):
        TokenStoreWriter(tmp_path / "d", vocab_size=10, eos_token_id=10, key="k")


def test_a_damaged_store_fails_with_one_line_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no token store in {tmp_path}: .*index.json is missing"):
        TokenStore(tmp_path)
    write(tmp_path, random_documents(100))
    shard = tmp_path / "shard_00001.bin"
    content = shard.read_bytes()

    shard.write_bytes(content[:-2])
    with pytest.raises(ValueError, match=f"token store shard {shard} holds 192 bytes, its index says 194") as error:
        TokenStore(tmp_path)
    assert "\n" not in str(error.value)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"token store shard {shard} is missing"):
        TokenStore(tmp_path)
    shard.write_bytes(content)
    (tmp_path / "index.json").write_text("{")
    with pytest.raises(ValueError, match="index.json: not a token store index"):
        TokenStore(tmp_path)


def test_two_ranks_read_disjoint_blocks_covering_the_store(tmp_path):
    store = write(tmp_path, random_documents(300), shard_tokens=97)
    blocks = next(store.blocks(size) for size in (16, 17) if len(store.blocks(size)) % 2 == 0)

    # The Trainer's path under DDP: each rank's DistributedSampler draws its own indices of the map-style blocks.
    per_rank = [list(DistributedSampler(blocks, num_replicas=2, rank=rank, shuffle=True, seed=3)) for rank in (0, 1)]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == list(range(len(blocks)))

    # Iterable use: contiguous ranges that together read the stream's full blocks once.
    ranges = [blocks.rank_blocks(rank, 2) for rank in (0, 1)]
    read = [blocks[i]["input_ids"].numpy() for part in ranges for i in part]
    assert ranges[0].stop == ranges[1].start and ranges[0].start == 0 and ranges[1].stop == len(blocks)
    np.testing.assert_array_equal(np.concatenate(read), store.tokens(0, len(blocks) * blocks.block_size))
    sizes = [len(blocks.rank_blocks(rank, 3)) for rank in range(3)]
    assert sum(sizes) == len(blocks) and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank must be in 0 .. world_size - 1"):
        blocks.rank_blocks(2, 2)


def test_uint16_store_takes_two_bytes_a_token_and_nothing_else(tmp_path):
    store = write(tmp_path, random_documents(2000, vocab_size=50000, longest=200), vocab_size=50000,
                  shard_tokens=50_000)
    assert {entry.name for entry in tmp_path.iterdir()} == {"index.json", *(f.name for f in store.shard_files)}
    on_disk = sum(entry.stat().st_size for entry in tmp_path.iterdir())
    assert store.num_tokens > 150_000
    assert 2 <= on_disk / store.num_tokens <= 2.1


@pytest.fixture(scope="module")
def tokenizer(data_dir):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:200_000]
    return train_tokenizer(text.split("\n\n"), vocab_size=400, show_progress=False)


def test_texts_are_encoded_as_the_tokenizer_encodes_them_and_resume(tokenizer, data_dir, tmp_path):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    texts = text.split("\n\n")[:600]
    expected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert list(encode_texts(tokenizer, iter(texts), batch_size=64)) == expected

    whole = write_token_store(texts, tokenizer, tmp_path / "whole", key="k", shard_tokens=1000, batch_size=64)
    assert whole.eos_token_id == tokenizer.eos_token_id and whole.vocab_size == len(tokenizer)
    eos = tokenizer.eos_token_id
    np.testing.assert_array_equal(whole.tokens(0, whole.num_tokens),
                                  [token for ids in expected for token in [*ids, eos]])

    path = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        write_token_store(killed_after(texts, 500), tokenizer, path, key="k", shard_tokens=1000, batch_size=64)
    done = documents_done(path)
    assert 0 < done < 500
    read = []

    def rest():
        for number in range(done, len(texts)):
            read.append(number)
            yield texts[number]

    write_token_store(rest(), tokenizer, path, key="k", shard_tokens=1000, documents_skipped=done, batch_size=64)
    assert len(read) == len(texts) - done
    assert files(path) == files(whole.path)


def test_a_store_travels_to_a_dataloader_worker(tmp_path):
    store = write(tmp_path, random_documents(50))
    blocks = store.blocks(8)
    unread = len(pickle.dumps(blocks))
    read = [blocks[i]["input_ids"].tolist() for i in range(len(blocks))]  # maps every shard
    assert len(pickle.dumps(blocks)) == unread  # the maps stay behind: a worker maps the shards itself
    copy = pickle.loads(pickle.dumps(blocks))
    assert [copy[i]["input_ids"].tolist() for i in range(len(copy))] == read
