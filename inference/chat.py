"""Talk to a ScratchLM model in the terminal: `scratchlm-chat`.

    scratchlm-chat MODEL_DIR [--system_prompt "You are ..."] [--max_new_tokens 256]
                   [--do_sample true --temperature 0.7 --top_p 0.9 --top_k 50 --repetition_penalty 1.1] [--seed 0]

MODEL_DIR is a decoder-only model, or the adapter directory of a LoRA run (loaded onto its base and merged).
Replies stream to stdout as they are generated (transformers' `TextStreamer`); prompts and notes go to stderr.
The conversation goes through the tokenizer's chat template, oldest exchanges dropped (with a note) when it
outgrows the context less --max_new_tokens; a message too long to fit even alone is not sent, and the chat goes on.
A base (pretrained, not instruction-tuned) model has no conversation: each message is continued as plain text.
Commands: `/clear` starts a new conversation, `/exit` (or end of input) quits; Ctrl-C stops a reply, not the chat.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import torch
from transformers import GenerationConfig, TextStreamer, set_seed

from scratchlm.cli import command, move_bare_argument, parse_args

from .model_dir import (
    DEVICES,
    DTYPES,
    causal_lm_config,
    is_instruction_tuned,
    load_causal_lm,
    resolve_device,
    resolve_dtype,
)

logger = logging.getLogger(__name__)

CLEAR, EXIT = "/clear", "/exit"


@dataclass
class ChatArguments:
    DEPRECATED_FLAGS = {"model_dir": "model_name_or_path"}

    model_name_or_path: str = field(metadata={"help": "The ScratchLM model directory (or a LoRA adapter directory); "
                                                      "may be given first, bare."})
    system_prompt: str | None = field(default=None, metadata={"help": "System message opening every conversation."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest reply, in tokens."})
    do_sample: bool = field(default=False, metadata={"help": "Sample replies (default: greedy decoding)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with --do_sample)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (with --do_sample)."})
    top_k: int = field(default=50, metadata={"help": "Sample among the k likeliest tokens (with --do_sample)."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Penalty on tokens already in the text."})
    seed: int | None = field(default=None, metadata={"help": "Random seed, for reproducible sampled replies."})
    device: str = field(default="auto", metadata={"help": f"Device: {', '.join(DEVICES)} (auto: a GPU if any)."})
    dtype: str = field(default="auto", metadata={"help": f"Weights dtype: {', '.join(DTYPES)} (auto: as saved)."})


def check_arguments(args: ChatArguments) -> None:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens must be at least 1, got {args.max_new_tokens}")
    if args.do_sample and args.temperature <= 0:
        raise ValueError(f"--temperature must be positive when sampling, got {args.temperature}")
    resolve_device(args.device)
    resolve_dtype(args.dtype)


def check_budget(max_new_tokens: int, context: int) -> None:
    if max_new_tokens >= context:
        raise ValueError(f"--max_new_tokens {max_new_tokens} must leave room for the prompt within the model's "
                         f"context of {context} tokens: give fewer")


def generation_config(args: ChatArguments, model) -> GenerationConfig:
    config = GenerationConfig.from_dict(model.generation_config.to_dict())
    config.update(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, repetition_penalty=args.repetition_penalty)
    if args.do_sample:
        config.update(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k)
    return config


class Conversation:
    """The messages so far, and the prompt ids for the next reply (a chat template, or plain continuation) within
    the model's context less the reply's tokens."""

    def __init__(self, tokenizer, system_prompt: str | None, use_chat_template: bool, context: int,
                 max_new_tokens: int):
        self.tokenizer = tokenizer
        self.system = [{"role": "system", "content": system_prompt}] if system_prompt and use_chat_template else []
        self.use_chat_template = use_chat_template
        self.context, self.max_new_tokens = context, max_new_tokens
        self.max_prompt_tokens = context - max_new_tokens
        if self.system and (size := self._ids(self.system).shape[1]) > self.max_prompt_tokens:
            raise ValueError(f"--system_prompt takes {size} tokens with the chat template, {self._over_budget()}")
        self.clear()

    def clear(self) -> None:
        self.messages = list(self.system)

    def _ids(self, messages: list[dict]) -> torch.Tensor:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)["input_ids"]

    def _over_budget(self) -> str:
        return (f"over the {self.max_prompt_tokens} a prompt may take (the model's context of {self.context} tokens "
                f"less --max_new_tokens {self.max_new_tokens})")

    def prompt_ids(self, user_text: str) -> torch.Tensor | None:
        """The prompt for a reply to `user_text`, the oldest exchanges dropped to fit. None, with one line on stderr,
        when the message does not fit even alone: it is neither sent nor kept (the template is never cut)."""
        message = {"role": "user", "content": user_text}
        if self.use_chat_template:
            alone = self._ids([*self.system, message])
        else:
            alone = self.tokenizer(user_text, return_tensors="pt").input_ids
        if alone.shape[1] > self.max_prompt_tokens:
            template = " with the chat template" if self.use_chat_template else ""
            print(f"[not sent: the message takes {alone.shape[1]} tokens{template}, {self._over_budget()}]",
                  file=sys.stderr, flush=True)
            return None
        if not self.use_chat_template:
            return alone
        self.messages.append(message)
        dropped = 0
        while (ids := self._ids(self.messages)).shape[1] > self.max_prompt_tokens:
            # The oldest exchange (a message and its reply) goes; the new message alone fits, so this ends.
            first_turn = len(self.system)
            del self.messages[first_turn : min(first_turn + 2, len(self.messages) - 1)]
            dropped += 1
        if dropped:
            print(f"[the {dropped} oldest exchange(s) dropped to fit the model's context]", file=sys.stderr, flush=True)
        return ids

    def add_reply(self, text: str) -> None:
        if self.use_chat_template:
            self.messages.append({"role": "assistant", "content": text})

    def drop_last_user_message(self) -> None:
        if self.use_chat_template and self.messages and self.messages[-1]["role"] == "user":
            self.messages.pop()


def reply(model, tokenizer, conversation: Conversation, user_text: str, config: GenerationConfig) -> str | None:
    """Stream the reply to stdout and return it; None when the message was not sent or Ctrl-C stopped the reply."""
    input_ids = conversation.prompt_ids(user_text)
    if input_ids is None:
        return None
    input_ids = input_ids.to(model.device)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    try:
        with torch.inference_mode():
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config,
                                    streamer=streamer)
    except KeyboardInterrupt:
        print(flush=True)
        print("[reply stopped]", file=sys.stderr, flush=True)
        conversation.drop_last_user_message()
        return None
    text = tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)
    conversation.add_reply(text)
    return text


def read_message() -> str | None:
    """The next message; None at end of input. Ctrl-C while typing starts the line again. Lines are read as bytes and
    decoded here, so that one which is not text in the input's encoding is skipped with a line on stderr."""
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
    while True:
        if sys.stdin.isatty():
            print("you> ", end="", file=sys.stderr, flush=True)
        try:
            line = stream.readline()
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        if not line:
            return None
        if isinstance(line, bytes):
            try:
                line = line.decode(encoding)
            except UnicodeDecodeError as error:
                print(f"[not sent: the message is not {encoding} text (byte {line[error.start]:#04x} at position "
                      f"{error.start})]", file=sys.stderr, flush=True)
                continue
        return line.rstrip("\r\n")


@command("scratchlm-chat")
def main(argv=None) -> None:
    (args,) = parse_args([ChatArguments], move_bare_argument(argv), description=__doc__.split("\n\n")[0])
    check_arguments(args)
    model_dir = args.model_name_or_path
    context = causal_lm_config(model_dir).max_position_embeddings
    check_budget(args.max_new_tokens, context)
    model, tokenizer = load_causal_lm(model_dir, args.device, args.dtype)
    config = generation_config(args, model)
    chat_tuned = is_instruction_tuned(model_dir, tokenizer)
    if not chat_tuned:
        print(
            f"note: {model_dir} is a base model, not instruction-tuned (or its tokenizer has no chat template): "
            "each message is continued as plain text, with no memory of earlier turns.",
            file=sys.stderr,
        )
        if args.system_prompt:
            print("note: --system_prompt is ignored for a base model.", file=sys.stderr)
    conversation = Conversation(tokenizer, args.system_prompt, chat_tuned, context, config.max_new_tokens)
    if args.seed is not None:
        set_seed(args.seed)
    print(f"chatting with {model_dir} ({CLEAR} new conversation, {EXIT} quit, Ctrl-C stop a reply)", file=sys.stderr)
    while (message := read_message()) is not None:
        command_word = message.strip()
        if command_word == EXIT:
            break
        if command_word == CLEAR:
            conversation.clear()
            print("[new conversation]", file=sys.stderr, flush=True)
            continue
        if not command_word:
            continue
        reply(model, tokenizer, conversation, message, config)
