"""`--task sft`: instruction following on the pretrained causal LM.

Every example is rendered with the tokenizer's chat template (Alpaca records become system/user/assistant chats)
and the loss counts the assistant replies only (closing eos included). Examples longer than `--max_length` are
cut (counted); those with nothing of the reply left are dropped (counted; an error when none is left).
`--packing` concatenates whole training examples into `--max_length` sequences. The held-out loss and perplexity
are measured before and after training, and a few held-out prompts (those that fit the context, checked before
training) are answered at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import DataCollatorForSeq2Seq

from ..callbacks import PerplexityCallback, add_language_model_metrics
from ..data import IGNORE_INDEX, build_sft_data
from ..generation import chat_prompts
from .base import FinetuneTask


@dataclass
class ChatArguments:
    """The options of the tasks that train on chats (--task sft, --task dpo)."""

    system_prompt: str | None = field(default=None, metadata={"help": "System message put before every chat."})


@dataclass
class SFTArguments(ChatArguments):
    """The options of --task sft."""

    packing: bool = field(default=False, metadata={"help": "Pack whole training examples into --max_length."})


class SFTTask(FinetuneTask):
    name = "sft"
    pipeline_tag = "text-generation"
    card_task_name = "Instruction following"
    peft_task_type = "CAUSAL_LM"
    result_metrics = (("loss", "loss", "Loss on the replies (nats per token)"),
                      ("perplexity", "perplexity", "Perplexity"))
    arguments = SFTArguments
    answers_samples = True

    def build_data(self, train, validation, test, tokenizer, *, data_args, max_length: int):
        return build_sft_data(train, validation, test, tokenizer, max_length=max_length,
                              system_prompt=self.options.system_prompt, packing=self.options.packing)

    def collator(self, tokenizer):
        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, padding=True)

    def callbacks(self):
        return [PerplexityCallback()]

    def add_metrics(self, metrics):
        for prefix in ("eval_", "test_"):
            if f"{prefix}loss" in metrics:
                add_language_model_metrics(metrics, None, None, prefix=prefix)

    def sample_prompts(self, data, tokenizer, sample_args, context):
        return chat_prompts(sample_args, data.sample_chats, tokenizer, context)
