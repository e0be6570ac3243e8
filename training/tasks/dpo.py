"""`--task dpo`: preference tuning (Direct Preference Optimization) of a causal LM, usually an SFT model, on TRL's
`DPOTrainer`.

Data: prompt/chosen/rejected pairs (`scratchlm.training.data.preferences`), rendered by TRL with the tokenizer's
chat template. The reference model is TRL's: for `--method full` a frozen copy of the starting model, loaded from
`--model_name_or_path`; for `--method lora` the same model with the adapter disabled (a continued adapter,
`--adapter_name_or_path`, is its own reference: TRL keeps a frozen copy of it). `--beta` sets how far the policy may
move from the reference.

Metrics, as TRL measures them on held-out pairs: the DPO loss, the reward accuracy (`rewards/accuracies`: the
share of pairs whose chosen reply gets the higher implicit reward beta * log(pi / pi_ref)) and the reward margin
(`rewards/margins`: chosen minus rejected reward), with the rewards and log-probabilities of each side.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

from transformers import TrainingArguments
from trl import DPOConfig, DPOTrainer

from ..data.preferences import build_preference_data
from ..generation import chat_prompts
from ..optimizers import trainer_optimization
from .base import FinetuneTask
from .sft import ChatArguments


@dataclass
class DPOArguments(ChatArguments):
    """The options of --task dpo."""

    beta: float = field(default=0.1, metadata={"help": "How far the policy may move from the reference model "
                                                       "(higher: closer)."})

    def __post_init__(self):
        if not 0 < self.beta < math.inf:  # TRL takes any: a negative beta trains for the rejected replies
            raise ValueError(f"--beta must be a positive number (how far the policy may move from the reference), "
                             f"got {self.beta}")


def dpo_config(training_args: TrainingArguments, **dpo_options) -> DPOConfig:
    """`training_args` (every Trainer option the command was given) as TRL's `DPOConfig`, with its DPO options."""
    values = {f.name: getattr(training_args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
    return DPOConfig(**values, **dpo_options)


class ScratchLMDPOTrainer(DPOTrainer):
    """TRL's trainer with each evaluation's DPO metrics under its own prefix (`test_rewards/...` for the test data;
    TRL names them all `eval_`) and the model card left to ScratchLM (written once, when the run is saved)."""

    _metric_key_prefix = "eval"

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        self._metric_key_prefix = metric_key_prefix
        try:
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        finally:
            self._metric_key_prefix = "eval"

    def log(self, logs, start_time=None):
        measured = self._metrics["eval"]
        if not self.model.training and self._metric_key_prefix != "eval" and measured:
            logs.update({f"{self._metric_key_prefix}_{key}": sum(values) / len(values)
                         for key, values in measured.items()})
            measured.clear()
        super().log(logs, start_time)

    def create_model_card(self, *args, **kwargs):
        return None

    def _save(self, output_dir=None, state_dict=None):
        # TRL's frozen copy of a continued adapter (the reference) is rebuilt at start, not part of the result.
        configs = getattr(self.model, "peft_config", {})
        reference = configs.pop("ref", None)
        try:
            super()._save(output_dir, state_dict)
        finally:
            if reference is not None:
                configs["ref"] = reference


class DPOTask(FinetuneTask):
    name = "dpo"
    pipeline_tag = "text-generation"
    card_task_name = "Preference tuning (DPO)"
    peft_task_type = "CAUSAL_LM"
    trainer_class = ScratchLMDPOTrainer
    result_metrics = (("rewards/accuracies", "accuracy", "Reward accuracy (chosen preferred), held-out pairs"),
                      ("rewards/margins", "reward_margin", "Reward margin (chosen - rejected)"),
                      ("loss", "loss", "DPO loss"))
    arguments = DPOArguments
    answers_samples = True

    def build_data(self, train, validation, test, tokenizer, *, data_args, max_length: int):
        return build_preference_data(train, validation, test, tokenizer, max_length=max_length,
                                     system_prompt=self.options.system_prompt)

    def build_trainer(self, *, model, args, data, tokenizer, callbacks, lora=None):
        # TRL's loss reads the model's deprecated `is_gradient_checkpointing` at every step (trl.models.utils.
        # disable_gradient_checkpointing), and transformers warns at each read: TRL's to change, not ours to repeat.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        optimization = trainer_optimization(model, args)
        trainer = self.trainer_class(
            model=model, args=dpo_config(args, beta=self.options.beta, max_length=data.max_length),
            train_dataset=data.train, eval_dataset=data.validation, processing_class=tokenizer,
            callbacks=[*callbacks, *optimization.callbacks], optimizers=optimization.optimizers,
        )
        if "ref" in getattr(trainer.model, "peft_config", {}) and not (lora and lora.adapter_name_or_path):
            # TRL copies the adapter as the reference; a new adapter's copy is the base (LoRA B starts at zero), so
            # the adapter-disabled base serves instead, without a second adapter in memory or in the saved output.
            trainer.model.delete_adapter("ref")
        return trainer

    def sample_prompts(self, data, tokenizer, sample_args, context):
        return chat_prompts(sample_args, data.sample_chats, tokenizer, context)
