"""The ScratchLM tokenizer: byte-level BPE with a pre-tokenizer for English and Chinese, and a chat template.

This file is copied next to a saved model and loaded as remote code (`trust_remote_code=True`), so it
imports only `tokenizers` and `transformers`.

Special tokens (the defaults; ids 0-3 in a tokenizer trained by `scratchlm.tokenization.train_tokenizer`):

- `<|bos|>` beginning of sequence, `<|eos|>` end of sequence (ends a document in pretraining and every
  turn in a chat, so generation stops on it), `<|pad|>` padding;
- `<|im_start|>` opens a chat turn: `<|im_start|>{role}\\n{content}<|eos|>\\n`.

Encoding adds no special tokens: the data pipeline places `<|eos|>` between documents.
"""

import json
from typing import ClassVar

from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE
from transformers.tokenization_utils_tokenizers import TokenizersBackend

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
CHAT_START_TOKEN = "<|im_start|>"
DEFAULT_SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, CHAT_START_TOKEN)

# Pre-tokenizers by name. The default, "qwen2", is the Qwen2 split, which llama.cpp implements under that name
# (`tokenizer.ggml.pre = "qwen2"`), so an exported model tokenizes the same there: contractions, a word with at
# most one leading non-letter ("(word", " word", "，又绿江南岸"), every digit alone ("2019" -> 2|0|1|9),
# punctuation runs with the line breaks that follow them, then whitespace. Chinese has no spaces: a piece is a
# run of Han characters, and merges span characters inside it.
# "scratchlm-v1" is the split of tokenizers saved before the default changed (numbers in groups of up to three
# digits, combining marks kept in words, CJK punctuation never joined to the next phrase); it is kept so those
# tokenizers are recognised, and as an option, but llama.cpp has no pre-tokenizer of that name.
# benchmarks/bench_tokenizer.py compares the two.
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)
_CJK_PUNCTUATION = r"\x{3000}-\x{303F}\x{FF00}-\x{FFEF}"
SCRATCHLM_V1_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    rf"|[^\r\n\p{{L}}\p{{N}}{_CJK_PUNCTUATION}]?[\p{{L}}\p{{M}}]+"
    r"|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)
PRETOKENIZERS = {"qwen2": QWEN2_REGEX, "scratchlm-v1": SCRATCHLM_V1_REGEX}
DEFAULT_PRETOKENIZER = "qwen2"

# ChatML-like turns closed by the eos token. `{% generation %}` marks the assistant replies (with their
# closing eos, so the model learns to stop): `apply_chat_template(..., return_assistant_tokens_mask=True,
# return_dict=True)` returns `assistant_masks`, 1 on every token that overlaps a reply.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('unsupported chat role ' ~ message['role'] ~ ': use system, user or assistant') -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + eos_token -}}{% endgeneration %}"
    "{%- else -%}"
    "{{- message['content'] + eos_token -}}"
    "{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)


def byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins of the byte-level model, one per byte value."""
    return sorted(pre_tokenizers.ByteLevel.alphabet())


def pretokenizer_regex(name: str) -> str:
    if name not in PRETOKENIZERS:
        raise ValueError(f"unknown pre-tokenizer {name!r}: choose one of {', '.join(PRETOKENIZERS)}")
    return PRETOKENIZERS[name]


def build_pre_tokenizer(name: str = DEFAULT_PRETOKENIZER) -> pre_tokenizers.PreTokenizer:
    """The named regex split, then the byte-level mapping (the layout of Qwen2's and GPT-4-style tokenizer.json)."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pretokenizer_regex(name)), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )


def pretokenizer_name(backend: Tokenizer) -> str | None:
    """The name (a key of `PRETOKENIZERS`) of `backend`'s pre-tokenizer, or None for any other pre-tokenizer.

    Read from the split regex itself, so tokenizers saved before the name was recorded are recognised too.
    """
    if backend.pre_tokenizer is None:
        return None
    state = json.loads(backend.pre_tokenizer.__getstate__())
    steps = state.get("pretokenizers", [state]) if state.get("type") == "Sequence" else [state]
    splits = [step for step in steps if step.get("type") == "Split"]
    if len(splits) != 1 or [step.get("type") for step in steps] != ["Split", "ByteLevel"]:
        return None
    regex = splits[0].get("pattern", {}).get("Regex")
    return next((name for name, pattern in PRETOKENIZERS.items() if pattern == regex), None)


def build_backend(
    vocab: dict[str, int] | None = None, merges: list | None = None, pretokenizer: str = DEFAULT_PRETOKENIZER
) -> Tokenizer:
    """An (untrained, unless `vocab`/`merges` are given) byte-level BPE `tokenizers.Tokenizer`.

    No normalizer: any normalization (NFC, lowercasing) would break `decode(encode(s)) == s`.
    """
    if vocab is None:
        vocab = {symbol: index for index, symbol in enumerate(byte_level_alphabet())}
    model = BPE(vocab=vocab, merges=merges or [], dropout=None, unk_token=None, fuse_unk=False, byte_fallback=False)
    backend = Tokenizer(model)
    backend.pre_tokenizer = build_pre_tokenizer(pretokenizer)
    backend.decoder = decoders.ByteLevel()
    return backend


class ScratchLMTokenizer(TokenizersBackend):
    """Byte-level BPE tokenizer of ScratchLM models: every string encodes without an unknown token and
    `decode(encode(s)) == s`.

    Build one with `scratchlm.tokenization.train_tokenizer`, or load a saved one with
    `AutoTokenizer.from_pretrained(path)`. Constructed without a vocabulary it only knows the 256 bytes
    and the special tokens.
    """

    vocab_files_names: ClassVar[dict[str, str]] = {"tokenizer_file": "tokenizer.json"}
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]
    model = BPE

    def __init__(
        self,
        vocab: dict[str, int] | None = None,
        merges: list | None = None,
        bos_token: str | AddedToken | None = BOS_TOKEN,
        eos_token: str | AddedToken | None = EOS_TOKEN,
        pad_token: str | AddedToken | None = PAD_TOKEN,
        unk_token: str | AddedToken | None = None,
        chat_template: str | dict | None = CHAT_TEMPLATE,
        pretokenizer: str | None = DEFAULT_PRETOKENIZER,
        **kwargs,
    ):
        if kwargs.get("tokenizer_object") is None and kwargs.get("tokenizer_file") is None:
            self._tokenizer = build_backend(vocab, merges, pretokenizer or DEFAULT_PRETOKENIZER)
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            unk_token=unk_token,
            chat_template=chat_template,
            **kwargs,
        )
        if CHAT_START_TOKEN not in self.get_vocab():
            self.add_tokens([AddedToken(CHAT_START_TOKEN, special=True, normalized=False)], special_tokens=True)
        # What the backend really does (a loaded tokenizer.json carries its own regex), saved in
        # tokenizer_config.json as `pretokenizer` for exporters: llama.cpp knows "qwen2" by that name.
        self.init_kwargs["pretokenizer"] = pretokenizer_name(self.backend_tokenizer)

    @property
    def pretokenizer(self) -> str | None:
        """Name of the pre-tokenizer (a key of `PRETOKENIZERS`, "qwen2" by default), None if it is none of them."""
        return self.init_kwargs.get("pretokenizer")

    @classmethod
    def convert_to_native_format(cls, trust_remote_code=False, **kwargs):
        # A saved tokenizer.json is the whole pipeline (pre-tokenizer, decoder, added tokens): load it as is,
        # whether this class is registered locally or loaded as remote code, rather than rebuilding the
        # pipeline around its vocabulary and merges.
        if kwargs.get("tokenizer_file") is not None:
            return dict(kwargs)
        return super().convert_to_native_format(trust_remote_code=trust_remote_code, **kwargs)


__all__ = ["ScratchLMTokenizer"]
