"""`scratchlm-generate`: one output line per input line, batched, from a trained model.

    scratchlm-generate --model_name_or_path translator/ --input_file test.en --output_file test.hyp.de --num_beams 5
    echo "A dog runs on the beach." | scratchlm-generate --model_name_or_path translator/
    scratchlm-generate --model_name_or_path lm/ --input_file prompts.txt --do_sample --top_p 0.9 --max_new_tokens 60

An encoder-decoder model (`config.is_encoder_decoder`: ScratchLM's seq2seq model, BART, T5, ...) translates or
summarises each line; a decoder-only model continues each line (the output is the continuation, without the prompt).
Reads a file or standard input (`--input_file -`, the default) and writes to a file or standard output; every input
line gets exactly one output line, in order (newlines inside an output become spaces, an empty input line gives an
empty output line). Standard output gets the outputs batch by batch; an output file appears under its name (or
replaces an earlier one, with --overwrite_output) only when every line is written, so a failure leaves no half of one.
Progress goes to standard error.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig

import scratchlm  # noqa: F401  (registers the ScratchLM models with the Auto classes)
from scratchlm.cli import command, move_bare_argument, parse_args
from scratchlm.files import atomic_open, same_file
from scratchlm.inference.decoding import StaticCacheDecoder
from scratchlm.inference.model_dir import DEVICES, DTYPES, check_model_dir, resolve_device, resolve_dtype
from scratchlm.model_cards.run_record import is_hub_id
from scratchlm.modeling.compilation import compiled_generation_kwargs, use_compiled_decoding
from scratchlm.modeling.weights import check_safetensors
from scratchlm.tokenization.encoding import encode_with_eos

logger = logging.getLogger(__name__)
STDIO = "-"


@dataclass
class GenerateArguments:
    DEPRECATED_FLAGS = {"model_dir": "model_name_or_path"}

    model_name_or_path: str = field(metadata={"help": "A trained model directory (or Hub id) with its tokenizer; may "
                                                      "be given first, bare."})
    input_file: str = field(default=STDIO, metadata={"help": "Input text, one input a line ('-': standard input)."})
    output_file: str = field(default=STDIO, metadata={"help": "Where to write one output a line ('-': standard "
                                                                "output)."})
    overwrite_output: bool = field(default=False, metadata={"help": "Replace an existing --output_file."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "Tokenizer (default: the model's)."})
    batch_size: int = field(default=16, metadata={"help": "Lines generated together."})
    num_beams: int = field(default=1, metadata={"help": "Beam size (1: greedy or sampling)."})
    max_new_tokens: int = field(default=128, metadata={"help": "Most tokens generated per line."})
    min_new_tokens: int | None = field(default=None, metadata={"help": "Fewest tokens generated per line."})
    length_penalty: float = field(default=1.0, metadata={"help": "Beam search: > 1 favours longer outputs, < 1 "
                                                                   "shorter ones."})
    no_repeat_ngram_size: int = field(default=0, metadata={"help": "Never repeat an n-gram of this size (0: off)."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy/beam search."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_k: int | None = field(default=None, metadata={"help": "Sample from the k most likely tokens."})
    top_p: float | None = field(default=None, metadata={"help": "Sample from the smallest set holding this mass."})
    seed: int = field(default=42, metadata={"help": "Random seed (sampling)."})
    source_prefix: str = field(default="", metadata={"help": "Text put before every input (a T5 task prefix)."})
    max_source_length: int | None = field(default=None, metadata={"help": "Cut longer inputs to this many tokens "
                                                                            "(counted in a warning)."})
    device: str = field(default="auto", metadata={"help": f"{', '.join(DEVICES)} (auto: a GPU when there is one)."})
    dtype: str = field(default="auto", metadata={"help": f"Weights dtype: {', '.join(DTYPES)}."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code from a Hub model repository."})
    compile: bool | None = field(default=None, metadata={
        "help": "Compile the decoding (torch.compile; falls back to eager where it is unavailable). A decoder-only "
                "model decoding greedily or by sampling runs inference/decoding.py's static-cache loop, anything "
                "else generate's compiled static cache. Default: where the work ahead pays compilation back (the loop: "
                "from 4000 forwards, new tokens x batches, on a CPU and 512 on an accelerator; generate's compiled "
                "cache: on accelerators only)."})
    compile_backend: str = field(default="inductor", metadata={"help": "The torch.compile backend for --compile."})


def check_arguments(args: GenerateArguments) -> None:
    resolve_device(args.device), resolve_dtype(args.dtype)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.num_beams < 1:
        raise ValueError(f"--num_beams must be at least 1, got {args.num_beams}")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens must be at least 1, got {args.max_new_tokens}")
    if args.do_sample and args.temperature <= 0:
        raise ValueError(f"--temperature must be positive when sampling, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top_p must be in (0, 1], got {args.top_p}")
    if args.max_source_length is not None and args.max_source_length < 2:
        raise ValueError(f"--max_source_length must be at least 2, got {args.max_source_length}")
    if args.input_file != STDIO and not Path(args.input_file).is_file():
        raise FileNotFoundError(f"--input_file not found: {args.input_file}")
    if args.output_file != STDIO:
        check_output_file(args)
    if Path(args.model_name_or_path).exists() or not is_hub_id(args.model_name_or_path):  # a directory here
        check_safetensors(check_model_dir(args.model_name_or_path))


def check_output_file(args: GenerateArguments) -> None:
    output = Path(args.output_file)
    if output.is_dir():
        raise IsADirectoryError(f"--output_file {output} is a directory; give a file path")
    if args.input_file != STDIO and same_file(args.input_file, output):
        raise ValueError(f"--output_file {output} is the --input_file; write the outputs to another file")
    if output.exists() and not args.overwrite_output:
        raise FileExistsError(f"--output_file {output} exists; pass --overwrite_output to replace it")


def load_model_and_tokenizer(args: GenerateArguments):
    """The model (seq2seq or causal, as its config says) in eval mode, and its tokenizer padded on the side that
    kind of model needs (left for a decoder-only model, so every row's continuation starts at the end)."""
    config = AutoConfig.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    auto_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto_class.from_pretrained(args.model_name_or_path, dtype=resolve_dtype(args.dtype),
                                       trust_remote_code=args.trust_remote_code)
    model.to(resolve_device(args.device)).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path or args.model_name_or_path,
                                              trust_remote_code=args.trust_remote_code)
    tokenizer.padding_side = "right" if config.is_encoder_decoder else "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token; batching needs one")
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def generation_config(args: GenerateArguments, model, tokenizer) -> GenerationConfig:
    """The model's own generation config with the command's options on top."""
    model.generation_config.max_length = None  # --max_new_tokens decides the length (no both-set warning)
    config = GenerationConfig.from_dict(model.generation_config.to_dict())
    config.update(
        max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens, num_beams=args.num_beams,
        length_penalty=args.length_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size or None,
        do_sample=args.do_sample, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=model.generation_config.eos_token_id or tokenizer.eos_token_id,
    )
    if args.do_sample:
        config.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    return config


@contextmanager
def open_text(path: str, mode: str) -> Iterator[TextIO]:
    if path == STDIO:
        yield sys.stdin if mode == "r" else sys.stdout
    else:
        with (open(path, encoding="utf-8") if mode == "r" else atomic_open(path, mode)) as handle:
            yield handle


def read_inputs(path: str) -> list[str]:
    try:
        with open_text(path, "r") as handle:
            return [line.rstrip("\r\n") for line in handle]
    except UnicodeDecodeError as error:
        where = "standard input" if path == STDIO else path
        raise ValueError(f"{where} is not UTF-8 text (byte {error.start}: {error.reason})") from None


def check_context(lines: list[str], model, tokenizer, args: GenerateArguments) -> None:
    """Every input, and its output, fits the model's context: else one line naming the first line that does not
    (before any generation; the model itself would only warn and go on past its trained positions)."""
    context = model.config.max_position_embeddings
    if args.max_new_tokens > context:
        raise ValueError(f"--max_new_tokens {args.max_new_tokens} is more than the model's context of {context} "
                         "tokens")
    is_encoder_decoder = model.config.is_encoder_decoder
    room = context if is_encoder_decoder else context - args.max_new_tokens
    ids = encode_inputs([args.source_prefix + line for line in lines], tokenizer, is_encoder_decoder,
                        args.max_source_length, warn=False)
    for number, row in enumerate(ids, start=1):
        if len(row) > room:
            needs = "" if is_encoder_decoder else f" and --max_new_tokens {args.max_new_tokens}"
            raise ValueError(f"input line {number} is {len(row)} tokens{needs}: more than the model's context of "
                             f"{context} tokens; pass --max_source_length {room} to cut long inputs")


def one_line(text: str) -> str:
    """An output as one line: line breaks (any Unicode one) become spaces."""
    return " ".join(text.splitlines()).strip()


def encode_inputs(texts: list[str], tokenizer, is_encoder_decoder: bool, max_length: int | None,
                  warn: bool = True) -> list[list[int]]:
    """Token ids as training saw them: an encoder-decoder's sources end with eos (`encode_with_eos`, as the
    seq2seq data pipeline encodes them) and keep their first tokens when cut; a decoder-only prompt keeps its last
    tokens, the ones the continuation follows."""
    if is_encoder_decoder:
        ids, cut = encode_with_eos(texts, tokenizer, max_length or sys.maxsize)
    else:
        ids = tokenizer(texts)["input_ids"]
        cut = sum(max_length is not None and len(row) > max_length for row in ids)
        ids = [row[-max_length:] if max_length else row for row in ids]
    if cut and warn:
        logger.warning("cut %d of %d inputs to --max_source_length %d tokens", cut, len(texts), max_length)
    return ids


def compiled_decoder(args: GenerateArguments, model, config: GenerationConfig, num_lines: int,
                     ) -> StaticCacheDecoder | None:
    """The compiled static-cache loop where it applies and pays (or is asked for); None: `generate` decodes. The loop
    does greedy decoding and sampling (temperature, top-k, top-p); any other option of `config` needs `generate`."""
    plain = (config.num_beams == 1 and not config.no_repeat_ngram_size and not config.min_new_tokens
             and config.repetition_penalty in (None, 1.0) and not config.bad_words_ids
             and config.min_p is None and config.typical_p in (None, 1.0))
    if model.config.is_encoder_decoder or not plain:
        return None
    decode_steps = -(-num_lines // args.batch_size) * config.max_new_tokens
    if not use_compiled_decoding(decode_steps, model.device, requested=args.compile, backend=args.compile_backend):
        return None
    logger.info("decoding with a compiled static-cache step (the first batch compiles it)")
    return StaticCacheDecoder(model, backend=args.compile_backend)


def compiled_generate_kwargs(args: GenerateArguments, model, decoder: StaticCacheDecoder | None) -> dict:
    """For what the loop does not cover (beam search, encoder-decoders, ...): generate's compiled static cache."""
    if decoder is not None:
        return {}
    return compiled_generation_kwargs(args.max_new_tokens, args.batch_size * args.num_beams, model.device,
                                      requested=args.compile, backend=args.compile_backend)


@torch.no_grad()
def generate_batch(lines: list[str], model, tokenizer, config: GenerationConfig, args: GenerateArguments,
                   decoder: StaticCacheDecoder | None = None, generate_kwargs: dict | None = None) -> list[str]:
    """Outputs of non-empty lines; for a decoder-only model only the new tokens are decoded."""
    is_encoder_decoder = model.config.is_encoder_decoder
    ids = encode_inputs([args.source_prefix + line for line in lines], tokenizer, is_encoder_decoder,
                        args.max_source_length)
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(model.device)
    if decoder is not None:
        output = decoder.generate(
            batch["input_ids"], batch["attention_mask"], max_new_tokens=config.max_new_tokens,
            do_sample=config.do_sample, temperature=config.temperature or 1.0, top_k=config.top_k,
            top_p=config.top_p, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        )
    else:
        output = model.generate(**batch, generation_config=config, **(generate_kwargs or {}))
    if not is_encoder_decoder:
        output = output[:, batch["input_ids"].shape[1]:]
    return [one_line(text) for text in tokenizer.batch_decode(output, skip_special_tokens=True)]


def generate_lines(lines: list[str], model, tokenizer, config: GenerationConfig, args: GenerateArguments,
                   ) -> Iterator[list[str]]:
    """The outputs of `lines`, one list per batch, in input order; empty lines give empty outputs."""
    decoder = compiled_decoder(args, model, config, sum(bool(line.strip()) for line in lines))
    generate_kwargs = compiled_generate_kwargs(args, model, decoder)
    for start in range(0, len(lines), args.batch_size):
        chunk = lines[start:start + args.batch_size]
        filled = [index for index, line in enumerate(chunk) if line.strip()]
        outputs = [""] * len(chunk)
        if filled:
            generated = generate_batch([chunk[i] for i in filled], model, tokenizer, config, args, decoder,
                                       generate_kwargs)
            for index, text in zip(filled, generated):
                outputs[index] = text
        yield outputs


@command("scratchlm-generate")
def main(argv=None) -> None:
    (args,) = parse_args([GenerateArguments], move_bare_argument(argv), description="Translate, summarise or continue each input line.")
    check_arguments(args)
    lines = read_inputs(args.input_file)
    if not lines:
        raise ValueError(f"no input lines in {'standard input' if args.input_file == STDIO else args.input_file}")
    empty = sum(not line.strip() for line in lines)
    if empty:
        logger.warning("%d of %d input lines are empty; they get empty output lines", empty, len(lines))
    model, tokenizer = load_model_and_tokenizer(args)
    check_context(lines, model, tokenizer, args)
    config = generation_config(args, model, tokenizer)
    torch.manual_seed(args.seed)
    kind = "encoder-decoder" if model.config.is_encoder_decoder else "decoder-only"
    logger.info("%s model %s: %d lines in batches of %d", kind, args.model_name_or_path, len(lines), args.batch_size)
    started, done = time.perf_counter(), 0
    with open_text(args.output_file, "w") as out:
        for outputs in generate_lines(lines, model, tokenizer, config, args):
            out.writelines(text + "\n" for text in outputs)
            out.flush()
            done += len(outputs)
            logger.info("%d/%d lines (%.1f lines/s)", done, len(lines), done / (time.perf_counter() - started))


if __name__ == "__main__":
    main()
