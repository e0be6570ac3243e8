"""`scratchlm-pretrain`: from raw text to a model that loads with AutoModelForCausalLM.

    scratchlm-pretrain --train_files data/*.txt --preset small --output_dir out/ --max_steps 2000
    scratchlm-pretrain run.yaml                       # every option from a file
    scratchlm-pretrain --config run.yaml --max_steps 10   # a file plus overrides
    torchrun --nproc_per_node=2 -m scratchlm.training.pretrain ...   # the same on several processes

Steps: train a tokenizer on the corpus (unless one is given), build the model (a preset, or an existing
directory to continue from), load -> clean -> split -> tokenize -> pack the text (cached), train with the Trainer
(warmup + cosine, checkpoints, TensorBoard, loss curve), evaluate loss / perplexity / bits per byte, save
everything with a model card and print a few sample generations.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, set_seed

from scratchlm.cli import parse_args
from scratchlm.modeling.cli import init_model, parse_overrides
from scratchlm.tokenization import train_tokenizer

from .arguments import DataArguments, ModelArguments, ScratchLMTrainingArguments
from .callbacks import LossCurveCallback, PerplexityCallback, add_language_model_metrics
from .data import build_pretraining_data, check_block_size, check_tokenizer_fits, iter_training_texts
from .publish import push_run_to_hub
from .run import finish_run, last_complete_checkpoint, prepare_output_dir

logger = logging.getLogger(__name__)


@dataclass
class SampleArguments:
    num_samples: int = field(default=3, metadata={"help": "Sample generations printed at the end of the run."})
    sample_prompts: list[str] | None = field(
        default=None, metadata={"help": "Prompts for the samples (default: openings of validation text)."}
    )
    sample_max_new_tokens: int = field(default=100, metadata={"help": "Tokens generated per sample."})


def load_or_train_tokenizer(model_args: ModelArguments, data_args: DataArguments, output_dir: Path, reuse: bool):
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if source:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    saved = output_dir / "tokenizer"
    if reuse and (saved / "tokenizer.json").is_file():  # trained by an earlier (interrupted) attempt of this run
        return AutoTokenizer.from_pretrained(saved)
    logger.warning("training a %d-token tokenizer on the training corpus", model_args.tokenizer_vocab_size)
    tokenizer = train_tokenizer(iter_training_texts(data_args), vocab_size=model_args.tokenizer_vocab_size)
    tokenizer.save_pretrained(saved)
    return tokenizer


def load_or_init_model(model_args: ModelArguments, tokenizer, seed: int):
    if model_args.model_name_or_path:
        model = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path,
            attn_implementation=model_args.attn_implementation,
            trust_remote_code=model_args.trust_remote_code,
        )
    else:
        overrides = {"attn_implementation": model_args.attn_implementation,
                     **parse_overrides(model_args.config_overrides)}
        model = init_model(model_args.preset, overrides, tokenizer, seed)
    check_tokenizer_fits(tokenizer, model.config)
    return model


def validation_prompts(data, tokenizer, count: int, prompt_tokens: int = 16) -> list[str]:
    rows = data.validation.select(range(min(count, len(data.validation))))
    return [tokenizer.decode(row["input_ids"][:prompt_tokens], skip_special_tokens=True) for row in rows]


@torch.no_grad()
def sample_generations(model, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> list[dict]:
    model.eval()
    samples = []
    for prompt in prompts:
        set_seed(seed)
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
        limit = model.config.max_position_embeddings - inputs["input_ids"].shape[1]
        output = model.generate(
            **inputs, max_new_tokens=max(1, min(max_new_tokens, limit)), do_sample=True, temperature=0.8, top_k=50,
        )
        completion = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        samples.append({"prompt": prompt, "completion": completion})
    return samples


def pretrain(model_args: ModelArguments, data_args: DataArguments, training_args: ScratchLMTrainingArguments,
             sample_args: SampleArguments | None = None, callbacks: list | None = None) -> dict:
    """Run a whole pretraining; `callbacks` are added to the Trainer's (after the loss-curve and metrics ones)."""
    sample_args = sample_args or SampleArguments()
    if not (data_args.train_files or data_args.dataset_name):
        raise ValueError("no training data: give --train_files or --dataset_name")
    output_dir = Path(training_args.output_dir)
    settings = {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
                "training": training_args.run_identity()}
    with training_args.main_process_first(desc="output directory, tokenizer, model and data"):
        # The main process goes first: it checks the output directory, trains the tokenizer and fills the data
        # cache; the other processes then read what it wrote.
        if training_args.process_index == 0:
            prepare_output_dir(output_dir, settings, training_args.overwrite_output)
        set_seed(training_args.seed)
        tokenizer = load_or_train_tokenizer(model_args, data_args, output_dir, reuse=not training_args.overwrite_output)
        model = load_or_init_model(model_args, tokenizer, training_args.seed)
        block_size = data_args.block_size or model.config.max_position_embeddings
        check_block_size(block_size, model.config)
        data = build_pretraining_data(data_args, tokenizer, block_size, seed=training_args.seed)
    resume_from = (
        last_complete_checkpoint(output_dir) if training_args.resume and not training_args.overwrite_output else None
    )
    logger.warning("%s parameters; %s training tokens, %s validation tokens%s", f"{model.num_parameters():,}",
                   f"{data.train_tokens:,}" if data.train_tokens else "?", f"{data.validation_tokens:,}",
                   f"; resuming from {resume_from}" if resume_from else "")

    # The Trainer's own push would upload the whole output directory (pickles included) at every save and replace
    # the card: the run is pushed once at the end instead, with exactly what `scratchlm-publish` uploads.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    predicted_tokens = data.validation_tokens - len(data.validation)  # each block predicts all but its first token
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=data.collator,
        processing_class=tokenizer,
        callbacks=[LossCurveCallback(), PerplexityCallback(predicted_tokens, data.validation_bytes), *(callbacks or [])],
    )
    started = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    training_time = time.perf_counter() - started
    metrics = {**train_result.metrics, **trainer.evaluate()}
    add_language_model_metrics(metrics, predicted_tokens, data.validation_bytes)
    trainer.log_metrics("all", metrics)

    samples = []
    if trainer.is_world_process_zero() and sample_args.num_samples > 0:
        prompts = sample_args.sample_prompts or validation_prompts(data, tokenizer, sample_args.num_samples)
        samples = sample_generations(model, tokenizer, prompts, sample_args.sample_max_new_tokens,
                                     training_args.seed)
    record = {
        "task": "text-generation",
        "kind": "pretraining",
        "method": "full",
        "base_model": model_args.model_name_or_path,
        "model_name": output_dir.name,
        "datasets": data_args.train_files or [data_args.dataset_name],
        "language": data_args.language,
        "metrics": metrics,
        "eval_results": [
            {"task_type": "text-generation", "task_name": "Language modelling",
             "dataset_name": ", ".join(data_args.validation_files or data_args.train_files or [data_args.dataset_name]),
             "dataset_type": data_args.dataset_name or "text", "dataset_split": "validation",
             "metric_type": name, "metric_name": label, "metric_value": round(float(metrics[key]), 4)}
            for key, name, label in (("eval_perplexity", "perplexity", "Perplexity"),
                                     ("eval_bits_per_byte", "bits_per_byte", "Bits per byte"),
                                     ("eval_loss", "loss", "Loss (nats per token)"))
            if key in metrics and math.isfinite(metrics[key])
        ],
        "samples": samples,
        "training_time_s": round(training_time, 1),
        "cleaning_report": data.report.to_dict() if hasattr(data.report, "to_dict") else None,
        "train_tokens": data.train_tokens,
        "validation_bytes": data.validation_bytes,
        "data_from_cache": data.from_cache,
    }
    record = finish_run(trainer, tokenizer, record)
    if push_to_hub and trainer.is_world_process_zero():
        push_run_to_hub(trainer, record)
    if trainer.is_world_process_zero():
        for sample in samples:
            print(f"\n--- sample ---\n{sample['prompt']}{sample['completion']}")
        print(f"\nvalidation: loss {metrics['eval_loss']:.4f}, perplexity {metrics['eval_perplexity']:.2f}"
              + (f", bits per byte {metrics['eval_bits_per_byte']:.4f}" if "eval_bits_per_byte" in metrics else "")
              + f"\nmodel, tokenizer, loss curve and card in {output_dir}")
    return record


def main(argv=None) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    model_args, data_args, training_args, sample_args = parse_args(
        [ModelArguments, DataArguments, ScratchLMTrainingArguments, SampleArguments], argv,
        description="Pretrain a ScratchLM model on raw text with the Hugging Face Trainer.",
    )
    pretrain(model_args, data_args, training_args, sample_args)


if __name__ == "__main__":
    main()
