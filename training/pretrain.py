"""`scratchlm-pretrain`: from raw text to a model that loads with AutoModelForCausalLM.

    scratchlm-pretrain --train_files data/*.txt --preset small --output_dir out/ --max_steps 2000
    scratchlm-pretrain run.yaml                       # every option from a file
    scratchlm-pretrain --config run.yaml --max_steps 10   # a file plus overrides
    torchrun --nproc_per_node=2 -m scratchlm.training.pretrain ...   # the same on several processes

Steps: train a tokenizer on the corpus (unless one is given), build the model (a preset, or an existing
directory to continue from), load -> clean -> split -> tokenize -> pack the text (cached), train with the Trainer
(warmup + cosine, checkpoints, TensorBoard, loss curve), evaluate loss / perplexity / bits per byte, save
everything with a model card, then print a few sample generations (after the run is saved: a failing sample
cannot lose it). A finished run given again is left as it is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, set_seed

from scratchlm.cli import command, parse_args
from scratchlm.model_cards.run_record import RUN_SETTINGS_FILE, RunRecord, eval_results
from scratchlm.modeling.initialization import init_model, parse_overrides
from scratchlm.tokenization import train_tokenizer

from .arguments import ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments
from .callbacks import LossCurveCallback, PerplexityCallback, add_language_model_metrics, use_log_friendly_progress
from .data import build_pretraining_data, check_block_size, check_tokenizer_fits, prepare_documents
from .generation import SampleArguments, sample_generations, text_prompts
from .language import run_languages, texts_of_blocks
from .run import (
    TOKENIZER_DIR,
    RunDirectory,
    add_samples,
    finish_run,
    last_complete_checkpoint,
    push_run_to_hub,
)

logger = logging.getLogger(__name__)
LANGUAGE_MODELLING_METRICS = (("perplexity", "perplexity", "Perplexity"),
                              ("bits_per_byte", "bits_per_byte", "Bits per byte"),
                              ("loss", "loss", "Loss (nats per token)"))


def load_or_train_tokenizer(model_args: ModelArguments, data_args: PretrainingDataArguments, run_dir: RunDirectory):
    """(tokenizer, the cleaned documents it was trained on, or None): a trained tokenizer and the packer share the
    documents, so the corpus is read and cleaned once."""
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if source:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code), None
    saved = run_dir.path / TOKENIZER_DIR
    settings = json.dumps(run_dir.settings, sort_keys=True)
    settings_file = saved / RUN_SETTINGS_FILE
    if not run_dir.overwrite and settings_file.is_file() and settings_file.read_text() == settings:
        return AutoTokenizer.from_pretrained(saved), None  # trained by an earlier (interrupted) attempt of this run
    logger.info("training a %d-token tokenizer on the training corpus", model_args.tokenizer_vocab_size)
    documents = prepare_documents(data_args)
    tokenizer = train_tokenizer(documents.training_texts(), vocab_size=model_args.tokenizer_vocab_size)
    tokenizer.save_pretrained(saved)
    settings_file.write_text(settings)
    return tokenizer, documents


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


def pretrain(model_args: ModelArguments, data_args: PretrainingDataArguments,
             training_args: ScratchLMTrainingArguments, sample_args: SampleArguments | None = None,
             callbacks: list | None = None) -> RunRecord:
    """Run a whole pretraining; `callbacks` are added to the Trainer's (after the loss-curve and metrics ones)."""
    sample_args = sample_args or SampleArguments()
    if not (data_args.train_files or data_args.dataset_name):
        raise ValueError("no training data: give --train_files or --dataset_name")
    settings = {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
                "training": training_args.run_identity()}
    run_dir = RunDirectory(training_args.output_dir, settings, training_args.overwrite_output,
                           is_main=training_args.process_index == 0)
    if finished := run_dir.finished_record(training_args.max_steps, training_args.num_train_epochs):
        return finished
    with run_dir:
        return _pretrain(model_args, data_args, training_args, sample_args, callbacks, run_dir)


def _pretrain(model_args, data_args, training_args, sample_args, callbacks, run_dir: RunDirectory) -> RunRecord:
    output_dir = run_dir.path
    with training_args.main_process_first(desc="tokenizer, model and data"):
        # The main process goes first: it trains the tokenizer and fills the data cache; the others then read
        # what it wrote.
        set_seed(training_args.seed)
        tokenizer, documents = load_or_train_tokenizer(model_args, data_args, run_dir)
        model = load_or_init_model(model_args, tokenizer, training_args.seed)
        context = model.config.max_position_embeddings
        block_size = data_args.block_size or context
        check_block_size(block_size, model.config)
        data = build_pretraining_data(data_args, tokenizer, block_size, seed=training_args.seed, documents=documents)
        prompts = text_prompts(sample_args, data.validation, tokenizer, context)
    resume_from = (
        last_complete_checkpoint(output_dir) if training_args.resume and not training_args.overwrite_output else None
    )
    logger.info("%s parameters; %s training tokens, %s validation tokens%s", f"{model.num_parameters():,}",
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
    use_log_friendly_progress(trainer)
    run_dir.start()
    started = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    training_time = time.perf_counter() - started
    metrics = {**train_result.metrics, **trainer.evaluate()}
    add_language_model_metrics(metrics, predicted_tokens, data.validation_bytes)
    trainer.log_metrics("all", metrics)

    validation_sources = data_args.validation_files or data_args.train_files or [data_args.dataset_name]
    record = RunRecord(
        task="text-generation",
        kind="pretraining",
        method="full",
        base_model=model_args.model_name_or_path,
        model_name=output_dir.name,
        datasets=data_args.train_files or [data_args.dataset_name],
        validation_datasets=list(data_args.validation_files or []),
        metrics=metrics,
        eval_results=eval_results(metrics, LANGUAGE_MODELLING_METRICS, task_type="text-generation",
                                  task_name="Language modelling", sources={"eval": ", ".join(validation_sources)},
                                  dataset_type=data_args.dataset_name or "text"),
        training_time_s=round(training_time, 1),
        cleaning_report=data.report.to_dict(),
        train_tokens=data.train_tokens,
        validation_bytes=data.validation_bytes,
        data_from_cache=data.from_cache,
    )
    record.language, record.language_inferred = run_languages(data_args.language,
                                                              texts_of_blocks(data.train, tokenizer))
    record = finish_run(trainer, tokenizer, record)
    if not trainer.is_world_process_zero():
        return record
    if push_to_hub:
        push_run_to_hub(trainer)
    record = add_samples(output_dir, record, lambda: sample_generations(
        model, tokenizer, prompts, sample_args.sample_max_new_tokens, training_args.seed))
    for sample in record.samples:
        print(f"\n--- sample ---\n{sample['prompt']}{sample['completion']}")
    print(f"\nvalidation: loss {metrics['eval_loss']:.4f}, perplexity {metrics['eval_perplexity']:.2f}"
          + (f", bits per byte {metrics['eval_bits_per_byte']:.4f}" if "eval_bits_per_byte" in metrics else "")
          + f"\nmodel, tokenizer, loss curve and card in {output_dir}")
    return record


@command("scratchlm-pretrain")
def main(argv=None) -> None:
    model_args, data_args, training_args, sample_args = parse_args(
        [ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments, SampleArguments], argv,
        description="Pretrain a ScratchLM model on raw text with the Hugging Face Trainer.",
    )
    pretrain(model_args, data_args, training_args, sample_args)


if __name__ == "__main__":
    main()
