"""Sample generations at the end of a run: the options, the prompts (checked against the context before training)
and the generation itself, for plain text (pretraining) and chats (instruction tuning)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from transformers import set_seed

from scratchlm.tokenization import decode_whole_characters

logger = logging.getLogger(__name__)


@dataclass
class SampleArguments:
    num_samples: int = field(default=3, metadata={"help": "Sample generations printed at the end of the run."})
    sample_prompts: list[str] | None = field(
        default=None, metadata={"help": "Prompts for the samples (default: openings of validation text)."}
    )
    sample_max_new_tokens: int = field(default=100, metadata={"help": "Tokens generated per sample."})

    def __post_init__(self):
        if self.num_samples < 0 or self.sample_max_new_tokens < 1:
            raise ValueError("--num_samples must be >= 0 and --sample_max_new_tokens >= 1")


@dataclass
class SamplePrompt:
    """One prompt to answer: `text` is what the model continues; `shown` is what the card shows as the prompt."""

    text: str
    shown: str
    reference: str | None = None
    chat: bool = False


def prompts_that_fit(prompts: list[SamplePrompt], tokenizer, context: int, what: str) -> list[SamplePrompt]:
    """The prompts that leave room for at least one new token in the model's `context`; the others are skipped
    with a count (checked before training, so that a long prompt cannot fail a finished run)."""
    kept = [prompt for prompt in prompts if len(tokenizer(prompt.text)["input_ids"]) < context]
    if len(kept) < len(prompts):
        logger.warning("skipping %d of %d %s: longer than the model's context of %d tokens",
                       len(prompts) - len(kept), len(prompts), what, context)
    return kept


def text_prompts(sample_args: SampleArguments, validation, tokenizer, context: int,
                 prompt_tokens: int = 16) -> list[SamplePrompt]:
    """`--sample_prompts`, else the openings of the first validation blocks."""
    if sample_args.num_samples == 0:
        return []
    if sample_args.sample_prompts:
        prompts = [SamplePrompt(text, text) for text in sample_args.sample_prompts]
        return prompts_that_fit(prompts, tokenizer, context, "--sample_prompts")[:sample_args.num_samples]
    rows = validation.select(range(min(sample_args.num_samples, len(validation))))
    openings = [tokenizer.decode(row["input_ids"][:prompt_tokens], skip_special_tokens=True) for row in rows]
    return [SamplePrompt(text, text) for text in openings]


def chat_prompts(sample_args: SampleArguments, chats: list[list[dict]], tokenizer, context: int) -> list[SamplePrompt]:
    """`--sample_prompts` as user turns, else held-out chats (their reference reply kept), via the chat template."""
    if sample_args.num_samples == 0:
        return []
    if sample_args.sample_prompts:
        chats, what = [[{"role": "user", "content": prompt}] for prompt in sample_args.sample_prompts], \
            "--sample_prompts"
    else:
        what = "held-out prompts"
    prompts = []
    for chat in chats:
        reference = chat[-1]["content"] if chat[-1]["role"] == "assistant" else None
        turns = chat[:-1] if reference is not None else chat
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        prompts.append(SamplePrompt(text, turns[-1]["content"], reference, chat=True))
    return prompts_that_fit(prompts, tokenizer, context, what)[:sample_args.num_samples]


@torch.no_grad()
def sample_generations(model, tokenizer, prompts: list[SamplePrompt], max_new_tokens: int, seed: int) -> list[dict]:
    """One sampled completion per prompt: {"prompt", "completion"} (and "reference" when the prompt has one)."""
    model.eval()
    samples = []
    for prompt in prompts:
        set_seed(seed)
        inputs = tokenizer(prompt.text, return_tensors="pt").to(model.device)
        limit = model.config.max_position_embeddings - inputs["input_ids"].shape[1]
        output = model.generate(
            **inputs, max_new_tokens=max(1, min(max_new_tokens, limit)), do_sample=True, temperature=0.8, top_k=50,
        )
        # stopped before a partial UTF-8 character: a sample never shows a U+FFFD the model did not write
        completion = decode_whole_characters(tokenizer, output[0, inputs["input_ids"].shape[1]:].tolist())
        sample = {"prompt": prompt.shown, "completion": completion.strip() if prompt.chat else completion}
        if prompt.reference is not None:
            sample["reference"] = prompt.reference
        samples.append(sample)
    return samples
