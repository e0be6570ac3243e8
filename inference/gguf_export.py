"""Write a decoder-only ScratchLM directory (or a LoRA adapter directory on one, merged) as a GGUF file that
llama.cpp (and Ollama) run.

ScratchLM's decoder has Llama's parameter names and converts losslessly to `LlamaForCausalLM`, so the file is
written in llama.cpp's Llama layout, with the `gguf` package's own tensor-name map, writer and quantizer, and the
same conventions as llama.cpp's `convert_hf_to_gguf.py` for Llama: query and key rows permuted for llama.cpp's
rotary layout, a tied LM head left out (llama.cpp reuses the embedding), the byte-level BPE vocabulary as a
"gpt2" tokenizer with its merges, special tokens as control tokens, and the chat template.

llama.cpp does not run a tokenizer's regex: it picks its own implementation of a pre-tokenizer by name
(`tokenizer.ggml.pre`). The name is read off the regex in tokenizer.json through `LLAMA_CPP_PRETOKENIZERS`;
any other pre-tokenizer stops the export, since llama.cpp would split text differently from ScratchLM.

The file is written under a temporary name and renamed when complete: a kill or a full disk mid-write leaves a
previous export as it was, never a fragment under the final name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from scratchlm.files import atomic_path
from scratchlm.modeling import ScratchLMConfig

from .model_dir import check_model_dir, load_causal_lm, model_config, model_name, tokenizer_dir

# Split regexes of byte-level BPE tokenizers -> the name of llama.cpp's implementation of that split
# (llama.cpp: src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_*).
LLAMA_CPP_PRETOKENIZERS = {
    # Qwen2, ScratchLM's default: every digit alone.
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": (
        "qwen2"
    ),
    # Llama 3: numbers in groups of up to three digits.
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": (
        "llama-bpe"
    ),
}
OUTTYPES = ("f16", "q8_0")


def llama_cpp_pretokenizer(tokenizer_file: Path) -> str:
    """llama.cpp's name for the pre-tokenizer in `tokenizer_file`; a ValueError saying why if it has none."""
    state = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    if state.get("normalizer") is not None:
        raise ValueError(f"{tokenizer_file}: the tokenizer has a normalizer, which llama.cpp's BPE does not apply")
    pre = state.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    splits = [step for step in steps if step.get("type") == "Split"]
    byte_level = [step for step in steps if step.get("type") == "ByteLevel"]
    if len(splits) != 1 or len(byte_level) != 1 or len(steps) != 2 or byte_level[0].get("use_regex"):
        raise ValueError(
            f"{tokenizer_file}: the pre-tokenizer is not one regex split followed by the byte-level mapping, "
            "so llama.cpp cannot reproduce it"
        )
    regex = splits[0].get("pattern", {}).get("Regex")
    if regex not in LLAMA_CPP_PRETOKENIZERS:
        raise ValueError(
            f"{tokenizer_file}: llama.cpp has no pre-tokenizer for this split regex {regex!r}, so it would tokenize "
            f"differently from ScratchLM; known: {', '.join(LLAMA_CPP_PRETOKENIZERS.values())} "
            "(retrain the tokenizer with the default qwen2 pre-tokenizer)"
        )
    return LLAMA_CPP_PRETOKENIZERS[regex]


def check_exportable(config, model_dir: Path) -> None:
    """A ValueError naming what llama.cpp's Llama architecture cannot hold: another kind of model, or a setting."""
    if config.is_encoder_decoder:
        raise ValueError(f"{model_dir} holds an encoder-decoder model ({config.model_type}), which llama.cpp's Llama "
                         "layout cannot hold: GGUF export takes a decoder-only ScratchLM model")
    if config.model_type != ScratchLMConfig.model_type:
        raise ValueError(f"{model_dir} holds a {config.model_type!r} model: GGUF export takes a decoder-only "
                         f"ScratchLM model ({ScratchLMConfig.model_type!r})")
    if config.use_qk_norm:
        raise ValueError("this model uses QK-norm (use_qk_norm=True), which llama.cpp's Llama architecture lacks")
    if config.attention_bias or config.mlp_bias:
        raise ValueError("this model has projection biases (attention_bias/mlp_bias), which the export does not write")
    rope_type = (config.rope_parameters or {}).get("rope_type", "default")
    if rope_type not in ("default", "linear"):
        raise ValueError(f"RoPE type {rope_type!r} is not exported (default and linear are)")


def permute_for_llama_cpp(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rows of a query/key projection reordered from transformers' half-split rotary pairs to llama.cpp's
    interleaved ones (`LlamaModel.permute` in llama.cpp's convert_hf_to_gguf)."""
    return weight.reshape(num_heads, 2, weight.shape[0] // num_heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape
    )


def _tokenizer_metadata(writer, tokenizer, tokenizer_file: Path, vocab_size: int) -> None:
    import gguf

    pre = llama_cpp_pretokenizer(tokenizer_file)
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ValueError(f"the tokenizer has ids up to {max(vocab.values())}, past the model's vocab_size {vocab_size}")
    by_id = {index: token for token, index in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            # Added tokens are stored as the text they stand for, control tokens for the special ones.
            tokens.append(added[index].content)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    merges = json.loads(tokenizer_file.read_text(encoding="utf-8"))["model"]["merges"]
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in merges]

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for name, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                      ("pad", writer.add_pad_token_id)):
        if (token_id := getattr(tokenizer, f"{name}_token_id")) is not None:
            add(token_id)
    # ScratchLM's tokenizer adds no special tokens when encoding.
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _tensor_data(name: str, tensor: torch.Tensor, outtype: str):
    """(array, raw quantization type or None) for one tensor: 1-D tensors stay f32, as in llama.cpp's converter."""
    import gguf

    data = tensor.detach().to(torch.float32).numpy()
    if data.ndim == 1:
        return data, None
    if outtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return data.astype(np.float16), None


def export_gguf(model_dir: str | Path, output: str | Path, outtype: str = "f16") -> Path:
    """Write the ScratchLM causal LM in `model_dir` (weights + tokenizer; or a LoRA adapter directory, merged into
    its base) as the GGUF file `output`."""
    import gguf

    output = Path(output)
    if outtype not in OUTTYPES:
        raise ValueError(f"--outtype must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    model_dir = check_model_dir(model_dir)
    config = model_config(model_dir)
    check_exportable(config, model_dir)
    tokenizer_file = Path(tokenizer_dir(model_dir)) / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{tokenizer_file.parent} holds no tokenizer.json: a GGUF file needs the tokenizer")
    llama_cpp_pretokenizer(tokenizer_file)  # fail on the tokenizer before loading weights

    model, tokenizer = load_causal_lm(model_dir, device="cpu", dtype="float32")
    arch = gguf.MODEL_ARCH.LLAMA
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(model_name(model_dir))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = config.rope_parameters or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", 10_000.0)))
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    _tokenizer_metadata(writer, tokenizer, tokenizer_file, config.vocab_size)

    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp uses the token embedding when output.weight is absent
        if name.endswith("self_attn.q_proj.weight"):
            tensor = permute_for_llama_cpp(tensor, config.num_attention_heads)
        elif name.endswith("self_attn.k_proj.weight"):
            tensor = permute_for_llama_cpp(tensor, config.num_key_value_heads)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for tensor {name}")
        data, raw_dtype = _tensor_data(name, tensor, outtype)
        writer.add_tensor(gguf_name, data, raw_dtype=raw_dtype)

    with atomic_path(output) as temporary:
        try:
            writer.write_header_to_file(temporary)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        except OSError as error:  # a full disk, a file-size limit: the export is incomplete
            raise OSError(f"writing {output} failed ({error.strerror or error}): nothing was written under that name, "
                          "a previous file is as it was") from None
        finally:
            writer.close()
    return output
