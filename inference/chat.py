"""Talk to a ScratchLM model in the terminal: `scratchlm-chat`.

    scratchlm-chat MODEL_DIR [--system_prompt "You are ..."] [--max_new_tokens 256]
                   [--do_sample true --temperature 0.7 --top_p 0.9 --top_k 50 --repetition_penalty 1.1] [--seed 0]

Replies stream to stdout as they are generated (transformers' `TextStreamer`); prompts and notes go to stderr.
The conversation goes through the tokenizer's chat template, oldest turns dropped when it outgrows the context.
A base (pretrained, not instruction-tuned) model has no conversation: each message is continued as plain text.
Commands: `/clear` starts a new conversation, `/exit` (or end of input) quits; Ctrl-C stops a reply, not the chat.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, TextStreamer, set_seed

from scratchlm.cli import command, move_bare_argument, parse_args

from .model_dir import check_model_dir, is_instruction_tuned

logger = logging.getLogger(__name__)

CLEAR, EXIT = "/clear", "/exit"


@dataclass
class ChatArguments:
    model_dir: str = field(metadata={"help": "The ScratchLM model directory."})
    system_prompt: str | None = field(default=None, metadata={"help": "System message opening every conversation."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest reply, in tokens."})
    do_sample: bool = field(default=False, metadata={"help": "Sample replies (default: greedy decoding)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with --do_sample)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (with --do_sample)."})
    top_k: int = field(default=50, metadata={"help": "Sample among the k likeliest tokens (with --do_sample)."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Penalty on tokens already in the text."})
    seed: int | None = field(default=None, metadata={"help": "Random seed, for reproducible sampled replies."})
    device: str = field(default="auto", metadata={"help": "Device: auto (a GPU if there is one), cpu, cuda, mps."})


def generation_config(args: ChatArguments, model) -> GenerationConfig:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens must be at least 1, got {args.max_new_tokens}")
    if args.do_sample and args.temperature <= 0:
        raise ValueError(f"--temperature must be positive when sampling, got {args.temperature}")
    config = GenerationConfig.from_dict(model.generation_config.to_dict())
    config.update(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, repetition_penalty=args.repetition_penalty)
    if args.do_sample:
        config.update(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k)
    return config


class Conversation:
    """The messages so far, and the prompt ids for the next reply (a chat template, or plain continuation)."""

    def __init__(self, tokenizer, system_prompt: str | None, use_chat_template: bool, max_prompt_tokens: int):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.use_chat_template = use_chat_template
        self.max_prompt_tokens = max_prompt_tokens
        self.clear()

    def clear(self) -> None:
        self.messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def prompt_ids(self, user_text: str) -> torch.Tensor:
        if not self.use_chat_template:
            ids = self.tokenizer(user_text, return_tensors="pt").input_ids
            return ids[:, -self.max_prompt_tokens :]
        self.messages.append({"role": "user", "content": user_text})
        while True:
            ids = self.tokenizer.apply_chat_template(
                self.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            first_turn = 1 if self.messages[0]["role"] == "system" else 0
            if ids.shape[1] <= self.max_prompt_tokens or len(self.messages) - first_turn <= 1:
                return ids[:, -self.max_prompt_tokens :]
            # Drop the oldest exchange (a user message and its reply) to fit the context.
            del self.messages[first_turn : first_turn + 2]

    def add_reply(self, text: str) -> None:
        if self.use_chat_template:
            self.messages.append({"role": "assistant", "content": text})

    def drop_last_user_message(self) -> None:
        if self.use_chat_template and self.messages and self.messages[-1]["role"] == "user":
            self.messages.pop()


def reply(model, tokenizer, conversation: Conversation, user_text: str, config: GenerationConfig) -> str | None:
    """Stream the reply to stdout and return it; None when Ctrl-C stopped it."""
    input_ids = conversation.prompt_ids(user_text).to(model.device)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    try:
        with torch.inference_mode():
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config,
                                    streamer=streamer)  # fmt: skip
    except KeyboardInterrupt:
        print(flush=True)
        print("[reply stopped]", file=sys.stderr, flush=True)
        conversation.drop_last_user_message()
        return None
    text = tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)
    conversation.add_reply(text)
    return text


def read_message() -> str | None:
    """The next message; None at end of input. Ctrl-C while typing starts the line again."""
    while True:
        if sys.stdin.isatty():
            print("you> ", end="", file=sys.stderr, flush=True)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        return line.rstrip("\n") if line else None


def load(args: ChatArguments):
    model_dir = check_model_dir(args.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True).to(device).eval()
    return model_dir, model, tokenizer


@command("scratchlm-chat")
def main(argv=None) -> None:
    (args,) = parse_args([ChatArguments], move_bare_argument(argv), description=__doc__.split("\n\n")[0])
    model_dir, model, tokenizer = load(args)
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
    max_prompt_tokens = max(1, model.config.max_position_embeddings - config.max_new_tokens)
    conversation = Conversation(tokenizer, args.system_prompt, chat_tuned, max_prompt_tokens)
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
