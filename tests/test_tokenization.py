"""ScratchLM tokenizer: training, lossless round trip, save/load (also as remote code), chat template, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from scratchlm.corpus import read_corpus
from scratchlm.tokenization import (
    ScratchLMTokenizer,
    character_coverage,
    decode_whole_characters,
    readable_tokens,
    train_tokenizer,
)
from scratchlm.tokenization.readable import token_bytes
from scratchlm.tokenization.tokenization_scratchlm import CHAT_START_TOKEN, QWEN2_REGEX

VOCAB_SIZE = 1200
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Who wrote Hamlet?"},
    {"role": "assistant", "content": "Shakespeare."},
    {"role": "user", "content": "用中文说。"},
    {"role": "assistant", "content": " 莎士比亚。\n"},
]


def _english_and_chinese(data_dir, english_bytes=150_000, poems=1500) -> tuple[list[str], dict[str, str]]:
    """Documents from the start of Shakespeare and the Song ci; held-out text from later in each."""
    shakespeare = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    song = json.loads((data_dir / "chinese-poetry" / "宋词" / "ci.song.0.json").read_text(encoding="utf-8"))
    lyrics = ["".join(poem["paragraphs"]) for poem in song]
    texts = shakespeare[:english_bytes].split("\n\n") + lyrics[:poems]
    held_out = {"english": shakespeare[-20_000:], "chinese": "\n".join(lyrics[-100:])}
    return texts, held_out


@pytest.fixture(scope="module")
def corpus(data_dir):
    return _english_and_chinese(data_dir)


@pytest.fixture(scope="module")
def tokenizer(corpus) -> ScratchLMTokenizer:
    texts, _ = corpus
    return train_tokenizer(texts, vocab_size=VOCAB_SIZE, show_progress=False)


def test_vocabulary_and_special_tokens(tokenizer):
    assert isinstance(tokenizer, ScratchLMTokenizer)
    assert len(tokenizer) == VOCAB_SIZE
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id] == [0, 1, 2]
    assert tokenizer.convert_tokens_to_ids(CHAT_START_TOKEN) == 3
    assert tokenizer.unk_token is None
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]
    # Encoding adds no special tokens: the data pipeline places eos between documents.
    assert tokenizer("hello")["input_ids"] == tokenizer.encode("hello", add_special_tokens=False)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
@example("")
@example("Hello, world! It's 2024... 12345678 x\t\ty\r\n\n\n   end  ")
@example("东风夜放花千树，更吹落、星如雨。\n宝马雕车香满路。")
@example("😀👍🏽👨‍👩‍👧 🇫🇷 ️")
@example("e\u0301 n\u0303 \u0915\u093f \u0300\u0301\u0302")  # combining marks, also at the start
@example("\x00\x01\x07\x1b[0m\x7f\u200b\u200d\ufeff\u2028\u2029\U0010ffff\ufffd")
@example("<|eos|>text<|im_start|>user<|pad|> <|bos|>")
@example("\u3000\u3000全角空格　\u00a0nbsp \t \x0b\x0c")
def test_round_trip_is_lossless(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert all(0 <= i < len(tokenizer) for i in ids)
    assert tokenizer.decode(ids) == text


def test_learns_english_and_chinese(tokenizer, corpus):
    _, held_out = corpus
    for language, text in held_out.items():
        bytes_per_token = len(text.encode("utf-8")) / len(tokenizer.encode(text))
        assert bytes_per_token > 2.0, (language, bytes_per_token)
    vocabulary = [tokenizer.convert_tokens_to_string([token]) for token in tokenizer.get_vocab()]
    assert any(len(word) >= 2 and all("\u4e00" <= c <= "\u9fff" for c in word) for word in vocabulary)
    assert " the" in vocabulary


def _pieces(tokenizer, text: str) -> list[str]:
    pre_tokenizer = tokenizer.backend_tokenizer.pre_tokenizer
    return [tokenizer.convert_tokens_to_string([piece]) for piece, _ in pre_tokenizer.pre_tokenize_str(text)]


def test_pre_tokenizer_splits(tokenizer):
    assert _pieces(tokenizer, "x 1234567") == ["x", " ", "1", "2", "3", "4", "5", "6", "7"]
    assert _pieces(tokenizer, "I'LL go.\n\n春风，又绿江南岸。") == ["I", "'LL", " go", ".\n\n", "春风", "，又绿江南岸", "。"]


def test_default_pre_tokenizer_is_llama_cpps_qwen2(tokenizer, tmp_path):
    # The regex of Qwen2's tokenizer.json, quoted in llama.cpp's src/llama-vocab.cpp for LLAMA_VOCAB_PRE_TYPE_QWEN2:
    # llama.cpp only splits text like this when the GGUF names the pre-tokenizer "qwen2".
    qwen2 = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
        r"|\s+(?!\S)|\s+"
    )
    assert QWEN2_REGEX == qwen2
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    assert [step["type"] for step in saved["pre_tokenizer"]["pretokenizers"]] == ["Split", "ByteLevel"]
    assert saved["pre_tokenizer"]["pretokenizers"][0]["pattern"] == {"Regex": qwen2}
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["pretokenizer"] == "qwen2"
    assert tokenizer.pretokenizer == "qwen2"


@pytest.mark.parametrize(
    "text, numbers",
    [
        ("In 2019 the shop sold 128 bowls, 1,024 in all.", ["2019", "128", "1", "024"]),
        ("2019年这家店卖了128碗面，共计1024元。", ["2019", "128", "1024"]),
    ],
)
def test_numbers_split_into_single_digits(tokenizer, text, numbers):
    pieces = token_bytes(tokenizer, tokenizer.encode(text))
    assert b"".join(pieces) == text.encode("utf-8")
    digit_tokens = [piece.decode("ascii") for piece in pieces if any(byte in b"0123456789" for byte in piece)]
    assert digit_tokens == [digit for number in numbers for digit in number]


def test_tokenizers_saved_before_the_qwen2_default_load_and_encode_as_before(corpus, tmp_path):
    texts, _ = corpus
    old = train_tokenizer(texts[:400], vocab_size=500, pretokenizer="scratchlm-v1", show_progress=False)
    assert _pieces(old, "x 1234567") == ["x", " ", "123", "456", "7"]
    text = "Anno 1599: 东风夜放花千树，更吹落、星如雨。12345"
    expected = old.encode(text)
    old.save_pretrained(tmp_path)
    # Earlier releases wrote no `pretokenizer` field: the regex in tokenizer.json is what counts.
    config_file = tmp_path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    del config["pretokenizer"]
    config_file.write_text(json.dumps(config))
    loaded = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=True)
    assert loaded.encode(text) == expected
    assert loaded.pretokenizer == "scratchlm-v1"
    with pytest.raises(ValueError, match="unknown pre-tokenizer 'gpt9'.*qwen2"):
        train_tokenizer(["text"], vocab_size=300, pretokenizer="gpt9")


def test_a_long_unbroken_run_trains_in_seconds(data_dir):
    # Uncapped, BPE training rewrites the whole run for every merge inside it: 300 kB of letters took 40 s,
    # 3 MB never finished. Here 2.4 MB: Shakespeare's letters without spaces or punctuation, three times.
    script = """
import sys
from scratchlm.tokenization import train_tokenizer
letters = "".join(filter(str.isalpha, open(sys.argv[1], encoding="utf-8").read()))
run = letters * 3
tokenizer = train_tokenizer(["a few words here", run], vocab_size=400, show_progress=False)
sample = run[:5000] + " tail 12 字"
assert tokenizer.decode(tokenizer.encode(sample)) == sample
assert len(tokenizer) == 400 and len(run) > 2_000_000
print("ok", tokenizer.pretokenizer)
"""
    shakespeare = data_dir / "tinyshakespeare" / "input.txt"
    result = subprocess.run([sys.executable, "-c", script, shakespeare], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "qwen2"]


def test_readable_tokens_and_whole_character_decoding(tokenizer):
    words = [tokenizer.convert_tokens_to_string([token]) for token in tokenizer.get_vocab()]
    word = next(word for word in words if len(word) >= 2 and all("\u4e00" <= c <= "\u9fff" for c in word))
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode(word)) != [word]  # byte-level stand-ins: mojibake
    assert readable_tokens(tokenizer, tokenizer.encode(word)) == [word]
    ids = tokenizer.encode("酒店很好")
    assert "".join(readable_tokens(tokenizer, ids)).startswith("酒")
    lone_byte = tokenizer.convert_tokens_to_ids(tokenizer.convert_ids_to_tokens(tokenizer.encode("é"))[0][0])
    assert readable_tokens(tokenizer, [lone_byte]) == ["\\xc3"]

    # Generation that stops inside a character, or emits bytes that form none: no U+FFFD, cut before them.
    byte_ids = [tokenizer.convert_tokens_to_ids(symbol) for symbol in tokenizer.convert_ids_to_tokens(ids)[0]]
    cut = ids + byte_ids[:2]  # two of the three bytes of 酒
    assert "\ufffd" in tokenizer.decode(cut)
    assert decode_whole_characters(tokenizer, cut) == "酒店很好"
    broken = tokenizer.encode("ab") + [lone_byte] + tokenizer.encode("cd")
    assert decode_whole_characters(tokenizer, broken) == "ab"
    honest = tokenizer.encode("a\ufffdb") + [tokenizer.eos_token_id]
    assert decode_whole_characters(tokenizer, honest) == "a\ufffdb"
    assert decode_whole_characters(tokenizer, honest, skip_special_tokens=False) == "a\ufffdb<|eos|>"


def test_character_coverage(tokenizer):
    texts = ["酒店很好，酒店很好。", "The room was clean 🙂"]
    coverage = character_coverage(tokenizer, texts)
    characters = "".join(texts)
    vocabulary = set(tokenizer.get_vocab())
    byte_level = tokenizer.backend_tokenizer.pre_tokenizer

    def single_token(character):
        return "".join(piece for piece, _ in byte_level.pre_tokenize_str(character)) in vocabulary

    covered = {character for character in set(characters) if single_token(character)}
    assert "🙂" not in covered and "T" in covered
    assert coverage.characters == len(characters)
    assert (coverage.distinct_characters, coverage.covered_distinct) == (len(set(characters)), len(covered))
    assert coverage.covered_occurrences == sum(character in covered for character in characters)
    assert coverage.tokens == sum(len(tokenizer.encode(text)) for text in texts)
    han = {character for character in characters if "\u4e00" <= character <= "\u9fff"}
    assert (coverage.han_distinct, coverage.han_covered_distinct) == (len(han), len(han & covered))
    assert f"{len(covered)} of {len(set(characters))} distinct characters" in coverage.describe()


def test_save_and_load_with_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"][0] == "tokenization_scratchlm.ScratchLMTokenizer"
    assert (tmp_path / "tokenization_scratchlm.py").is_file()
    assert (tmp_path / "chat_template.jinja").is_file()

    loaded = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(loaded).__name__ == "ScratchLMTokenizer"
    text = "To be, or not to be: 生存还是毁灭 🤔\n"
    assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.apply_chat_template(CHAT, tokenize=False) == tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (0, 1, 2)


def test_loads_as_remote_code_in_a_fresh_process(tokenizer, tmp_path, run_without_package):
    tokenizer.save_pretrained(tmp_path / "tok")
    text = "Now is the winter of our discontent 寒蝉凄切 ✓"
    expected = {
        "ids": tokenizer.encode(text),
        "chat": tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=False),
    }
    result = run_without_package(
        f"""
        import json
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained("tok", trust_remote_code=True)
        assert type(tokenizer).__name__ == "ScratchLMTokenizer", type(tokenizer)
        assert tokenizer.pretokenizer == "qwen2"
        text, expected = {text!r}, {expected!r}
        assert tokenizer.encode(text) == expected["ids"]
        assert tokenizer.decode(expected["ids"]) == text
        assert tokenizer.apply_chat_template({CHAT!r}, tokenize=False) == expected["chat"]
        tokenizer.save_pretrained("again")
        again = AutoTokenizer.from_pretrained("again", trust_remote_code=True)
        assert again.encode(text) == expected["ids"]
        print("ok", tokenizer.eos_token_id)
        """,
        cwd=tmp_path,
    )
    assert result.stdout.split() == ["ok", "1"]


def test_chat_template_rendering(tokenizer):
    rendered = tokenizer.apply_chat_template(CHAT[:3], tokenize=False)
    assert rendered == (
        "<|im_start|>system\nYou are terse.<|eos|>\n"
        "<|im_start|>user\nWho wrote Hamlet?<|eos|>\n"
        "<|im_start|>assistant\nShakespeare.<|eos|>\n"
    )
    prompt = tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWho wrote Hamlet?<|eos|>\n<|im_start|>assistant\n")
    with pytest.raises(Exception, match="unsupported chat role"):
        tokenizer.apply_chat_template([{"role": "wizard", "content": "hi"}], tokenize=False)


def test_assistant_token_mask_covers_exactly_the_replies(tokenizer):
    out = tokenizer.apply_chat_template(CHAT, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask) and set(mask) == {0, 1}
    spans, current = [], []
    for token_id, flag in zip(ids, mask):
        if flag:
            current.append(token_id)
        elif current:
            spans.append(current)
            current = []
    replies = [tokenizer.decode(span) for span in spans + ([current] if current else [])]
    # Each reply ends with eos, so a model fine-tuned on these tokens learns to stop.
    assert replies == ["Shakespeare.<|eos|>", " 莎士比亚。\n<|eos|>"]
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(CHAT, tokenize=False)


def test_special_and_extra_tokens(tmp_path):
    texts = ["the cat sat on the mat with @user and <tool> calls"] * 50
    tokenizer = train_tokenizer(
        texts, vocab_size=300, special_tokens=["<tool>"], extra_tokens=["@user"], show_progress=False
    )
    assert tokenizer.convert_ids_to_tokens([4, 5]) == ["<tool>", "@user"]
    ids = tokenizer.encode("hi @user<tool>x")
    assert 4 in ids and 5 in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hi @userx"
    assert "<tool>" in tokenizer.all_special_tokens and "@user" not in tokenizer.all_special_tokens
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=True)
    assert loaded.decode(loaded.encode("hi @user<tool>x"), skip_special_tokens=True) == "hi @userx"


def test_trains_from_a_csv_column_and_a_saved_dataset(data_dir, tmp_path):
    import datasets

    csv_tokenizer = train_tokenizer(
        read_corpus(data_dir / "waimai_10k" / "waimai_10k.csv", text_column="review"), vocab_size=600,
        show_progress=False,
    )
    sample = "很快，好吃，味道足，量大"
    assert len(csv_tokenizer.encode(sample)) < len(sample.encode("utf-8")) / 2

    datasets.Dataset.from_dict({"content": ["alpha beta gamma"] * 100}).save_to_disk(tmp_path / "saved")
    dataset_tokenizer = train_tokenizer(read_corpus(tmp_path / "saved", text_column="content"), vocab_size=300,
                                        show_progress=False)
    assert dataset_tokenizer.convert_tokens_to_string(dataset_tokenizer.tokenize(" gamma")) == " gamma"
    assert len(dataset_tokenizer.tokenize(" gamma")) == 1


# --- bad input: each fails with a clear message before training starts ---------------------------------


def test_vocabulary_too_small_fails_before_reading(tmp_path):
    def unread():
        raise AssertionError("read before the vocabulary size was checked")
        yield

    with pytest.raises(ValueError, match=r"vocab_size=259 is too small.*at least 260"):
        train_tokenizer(unread(), vocab_size=259)
    with pytest.raises(ValueError, match="at least 262"):
        train_tokenizer(["text"], vocab_size=261, special_tokens=["<a>"], extra_tokens=["b"])


def test_a_path_is_refused_the_trainer_takes_documents(tmp_path):
    for path in (tmp_path / "corpus.txt", str(tmp_path / "corpus.txt")):
        with pytest.raises(TypeError, match="takes documents.*scratchlm.corpus.read_corpus"):
            train_tokenizer(path)


def test_corpus_empty_after_reading(tmp_path):
    (tmp_path / "blank.txt").write_text("\n \n\t\n")
    with pytest.raises(ValueError, match="corpus is empty"):
        train_tokenizer(read_corpus(tmp_path / "blank.txt"), show_progress=False)
    with pytest.raises(ValueError, match="corpus is empty"):
        train_tokenizer(["", ""], show_progress=False)


def test_invalid_utf8_names_file_and_offset(tmp_path):
    good = tmp_path / "a_good.txt"
    good.write_text("fine text\n" * 1000)
    bad = tmp_path / "b_bad.txt"
    bad.write_bytes(b"hello\nworld \xff\xfe and more\n")
    with pytest.raises(ValueError, match=r"b_bad\.txt: invalid UTF-8 at byte offset 12"):
        train_tokenizer(read_corpus([good, bad], precheck_utf8=True), vocab_size=300, show_progress=False)

    tokenizer = train_tokenizer(read_corpus([good, bad], errors="replace"), vocab_size=300, show_progress=False)
    assert tokenizer.decode(tokenizer.encode("world \ufffd\ufffd")) == "world \ufffd\ufffd"

