"""What every fine-tuning task provides to `scratchlm-finetune`: its options (an argument group of its own, and the
Trainer options it reads), data, model, collator, metrics, Trainer class, sample prompts and card fields. The
command does the rest (output directory, LoRA, training, saving)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import AutoModelForCausalLM, Trainer

from ..arguments import ScratchLMTrainingArguments
from ..data import TableSettings, load_splits
from ..optimizers import trainer_optimization


@dataclass
class FinetuneTrainingArguments(ScratchLMTrainingArguments):
    """The project's Trainer defaults, with a learning rate, schedule and checkpointing suited to fine-tuning."""

    learning_rate: float | None = field(default=None, metadata={
        "help": "Peak learning rate. Default: the task's, by --method: classification 1e-3 (measured best on SST-2 "
                "dev: 75.9 against 60.0 percent accuracy at 1e-4), the other tasks 1e-4."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training data."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps, epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps, epoch."})


class FinetuneTask:
    name: ClassVar[str]  # the --task value
    pipeline_tag: ClassVar[str]  # the Hub pipeline tag of the result (the card's task)
    card_task_name: ClassVar[str]  # how the card names the task in its results
    peft_task_type: ClassVar[str]  # peft's TaskType for LoRA
    auto_model_class: ClassVar[type] = AutoModelForCausalLM
    trainer_class: ClassVar[type[Trainer]] = Trainer
    # (metric key without its eval_/test_ prefix, metric type on the Hub, label on the card)
    result_metrics: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    lora_modules_to_save: ClassVar[list[str] | None] = None  # layers trained in full next to a LoRA adapter
    # --lora_target_modules when not given: every attention and MLP projection
    lora_target_modules: ClassVar[tuple[str, ...]] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                      "down_proj")
    # --learning_rate when not given, by --method
    default_learning_rate: ClassVar[dict[str, float]] = {"full": 1e-4, "lora": 1e-4}
    arguments: ClassVar[type]  # the task's own options (a dataclass: one argument group of the command)
    training_arguments: ClassVar[type] = FinetuneTrainingArguments  # the Trainer options the task reads
    answers_samples: ClassVar[bool] = False  # answers sample prompts at the end (reads `SampleArguments`)

    def __init__(self, options=None):
        self.options = options if options is not None else self.arguments()

    def load_splits(self, sources: TableSettings, *, seed: int, test_files=None, test_split=None, max_eval_samples=None):
        """The (train, validation, test) tables the task's `build_data` reads."""
        return load_splits(sources, seed=seed, test_files=test_files, test_split=test_split,
                           max_eval_samples=max_eval_samples)

    def build_data(self, train, validation, test, tokenizer, *, data_args, max_length: int):
        """The tokenized splits (checked: bad data fails here, before the model is loaded)."""
        raise NotImplementedError

    def model_kwargs(self, data, tokenizer) -> dict[str, Any]:
        """Extra `from_pretrained` arguments for the task's model (a head's labels, say)."""
        return {}

    def configure_model(self, model, data) -> None:
        """Settings the saved model carries to its users in `config.json` (how to decode its outputs, say)."""

    def collator(self, tokenizer):
        raise NotImplementedError

    def compute_metrics(self, data):
        """The Trainer's `compute_metrics`, or None for the loss alone."""
        return None

    def callbacks(self) -> list:
        return []

    def build_trainer(self, *, model, args, data, tokenizer, callbacks: list, lora=None):
        """The run's Trainer; a task on another library's trainer (TRL's, say) builds it here with its own config.
        `lora`: the `LoraArguments` of a --method lora run, else None."""
        optimization = trainer_optimization(model, args)
        return self.trainer_class(
            model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
            data_collator=self.collator(tokenizer), processing_class=tokenizer,
            compute_metrics=self.compute_metrics(data), callbacks=[*callbacks, *optimization.callbacks],
            optimizers=optimization.optimizers,
        )

    def test(self, trainer, data, output_dir) -> dict[str, float]:
        """The test metrics (`test_*`) at the end of the run; a task may also write its predictions to output_dir."""
        return trainer.evaluate(data.test, metric_key_prefix="test")

    def add_metrics(self, metrics: dict[str, float]) -> None:
        """Metrics derived from the measured ones (perplexity from the loss, say), added in place."""

    def sample_prompts(self, data, tokenizer, sample_args, context: int) -> list:
        """`generation.SamplePrompt`s answered after the run is saved; checked against the context before."""
        return []

    def card_fields(self, data) -> dict[str, Any]:
        """Task fields of the run record (the label names of a classifier, say)."""
        return {}
