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

An encoder-decoder is pretrained by denoising instead (`scratchlm.training.data.denoising`): T5 span corruption
(`--objective span_corruption`, the default for an encoder-decoder `--model_name_or_path`) or BART text infilling
(`--objective text_infilling`: it also teaches the decoder to copy, which summarisation leans on). `--preset` names
a seq2seq preset and the tokenizer gets the sentinels `<extra_id_0>`... (trained with them, or added). For span
corruption, raw blocks are cut so that a corrupted block fills the encoder's `--block_size` exactly and the
validation loss is the loss on the masked spans; for text infilling, blocks are one token short of `--block_size`
(the labels are the block plus eos) and the validation loss is the loss of reconstructing them. Fresh spans each
evaluation. The result fine-tunes with `scratchlm-finetune --task seq2seq`:

    scratchlm-pretrain --objective span_corruption --preset small --train_files corpus.txt --output_dir out/t5
    scratchlm-pretrain --objective text_infilling --preset small --train_files corpus.txt --output_dir out/bart
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, Trainer, set_seed

from scratchlm.cli import command, parse_args
from scratchlm.model_cards.run_record import RUN_SETTINGS_FILE, RunRecord, eval_results
from scratchlm.modeling import ScratchLMConfig, ScratchLMSeq2SeqConfig
from scratchlm.modeling.initialization import init_model, parse_config_overrides, parse_config_pairs
from scratchlm.modeling.initialization_seq2seq import init_seq2seq_model
from scratchlm.modeling.weights import check_safetensors
from scratchlm.tokenization import train_tokenizer

from .acceleration import enable_compiled_training, set_fastest_attention
from .arguments import ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments, pretrained_config_overrides
from .callbacks import (
    LogEveryStepOnceCallback,
    LossCurveCallback,
    PerplexityCallback,
    add_language_model_metrics,
    use_log_friendly_progress,
    whole_run_metrics,
)
from .data import (
    PretrainingDataSettings,
    build_pretraining_data,
    check_block_size,
    check_tokenizer_fits,
    prepare_documents,
)
from .data.denoising import (
    SpanCorruptionCollator,
    TextInfillingCollator,
    input_and_target_lengths,
    sentinel_tokens,
)
from .data.streaming import build_streaming_data, resume_stream_in_place
from .generation import SampleArguments, sample_generations, text_prompts
from .language import run_languages, texts_of_blocks
from .optimizers import trainer_optimization
from .pretraining_inputs import NUM_SENTINELS, denoising_objective, load_given_tokenizer
from .run import (
    TOKENIZER_DIR,
    RunDirectory,
    add_samples,
    finish_run,
    in_run_directory,
    last_complete_checkpoint,
    push_run_to_hub,
    run_training,
)

logger = logging.getLogger(__name__)
LANGUAGE_MODELLING_METRICS = (("perplexity", "perplexity", "Perplexity"),
                              ("bits_per_byte", "bits_per_byte", "Bits per byte"),
                              ("loss", "loss", "Loss (nats per token)"))
DENOISING_METRICS = {
    "span_corruption": (("loss", "loss", "Span-corruption loss (nats per target token)"),),
    "text_infilling": (("loss", "loss", "Text-infilling loss (nats per reconstructed token)"),),
}
DENOISING_NAMES = {"span_corruption": "Span corruption", "text_infilling": "Text infilling"}


def raw_block_size(encoder_length: int, noise_density: float, mean_noise_span_length: float) -> int:
    """The longest block of text whose span-corrupted input (sentinels and eos included) fits `encoder_length`."""
    length = encoder_length
    while length > 2 and input_and_target_lengths(length + 1, noise_density, mean_noise_span_length)[0] \
            <= encoder_length:
        length += 1
    while length > 2 and input_and_target_lengths(length, noise_density, mean_noise_span_length)[0] > encoder_length:
        length -= 1
    return length


def load_or_train_tokenizer(model_args: ModelArguments, data: PretrainingDataSettings, run_dir: RunDirectory,
                            num_sentinels: int = 0):
    """(tokenizer, the cleaned documents it was trained on, or None): a trained tokenizer and the packer share the
    documents, so the corpus is read and cleaned once. `num_sentinels` span-corruption sentinels are special tokens
    of a trained tokenizer and added to a given one that lacks them."""
    if (tokenizer := load_given_tokenizer(model_args, num_sentinels)) is not None:
        return tokenizer, None
    saved = run_dir.path / TOKENIZER_DIR
    settings = json.dumps(run_dir.settings, sort_keys=True)
    settings_file = saved / RUN_SETTINGS_FILE
    if not run_dir.overwrite and settings_file.is_file() and settings_file.read_text() == settings:
        return AutoTokenizer.from_pretrained(saved), None  # trained by an earlier (interrupted) attempt of this run
    logger.info("training a %d-token tokenizer on the training corpus", model_args.tokenizer_vocab_size)
    documents = prepare_documents(data)
    tokenizer = train_tokenizer(documents.training_texts(), vocab_size=model_args.tokenizer_vocab_size,
                                special_tokens=sentinel_tokens(num_sentinels))
    tokenizer.save_pretrained(saved)
    settings_file.write_text(settings)
    return tokenizer, documents


def load_or_init_model(model_args: ModelArguments, tokenizer, seed: int, seq2seq: bool = False):
    if model_args.model_name_or_path:
        model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(
            model_args.model_name_or_path,
            attn_implementation=model_args.attn_implementation or "sdpa",
            trust_remote_code=model_args.trust_remote_code,
            **parse_config_pairs(model_args.config_overrides),
        )
        if seq2seq and len(tokenizer) > model.config.vocab_size:  # sentinels added to the tokenizer
            model.resize_token_embeddings(len(tokenizer))
    elif seq2seq:
        overrides = parse_config_overrides(model_args.config_overrides, ScratchLMSeq2SeqConfig)
        model = init_seq2seq_model(model_args.preset, overrides, tokenizer, seed)
        model.set_attn_implementation(model_args.attn_implementation or "sdpa")
    else:
        overrides = {"attn_implementation": model_args.attn_implementation or "sdpa",
                     **parse_config_overrides(model_args.config_overrides, ScratchLMConfig)}
        model = init_model(model_args.preset, overrides, tokenizer, seed)
    check_tokenizer_fits(tokenizer, model.config)
    return model


def pretrain(model_args: ModelArguments, data_args: PretrainingDataArguments,
             training_args: ScratchLMTrainingArguments, sample_args: SampleArguments | None = None,
             callbacks: list | None = None) -> RunRecord:
    """Run a whole pretraining; `callbacks` are added to the Trainer's (after the loss-curve and metrics ones)."""
    sample_args = sample_args or SampleArguments()
    data_settings = data_args.to_settings()  # data options that cannot work together are refused before anything runs
    model_args.check_local_paths()
    if model_args.model_name_or_path:  # a pretrained base: whole weights, and overrides that fit them
        check_safetensors(model_args.model_name_or_path)
        pretrained_config_overrides(model_args.config_overrides, AutoConfig.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code), model_args.model_name_or_path)
    denoising = denoising_objective(model_args, data_args)  # refuses an objective the model cannot take, first
    settings = {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
                "training": training_args.run_identity()}
    return in_run_directory(training_args, settings, lambda run_dir: _pretrain(
        model_args, data_args, data_settings, training_args, sample_args, callbacks, run_dir, denoising))


def resolve_block_size(flag: int | None, model_config) -> int:
    """The model's input length in tokens: `--block_size`, or the model's context when it is not given; checked
    against the context here, once."""
    block_size = model_config.max_position_embeddings if flag is None else flag
    check_block_size(block_size, model_config)
    return block_size


def packed_block_length(block_size: int, denoising: str | None, data_args: PretrainingDataArguments) -> int:
    """The tokens of text in one packed block: the whole block for a causal LM; for span corruption the longest text
    whose corrupted form (sentinels and eos added) fills `block_size`; for text infilling one less (the labels are
    the block plus eos)."""
    if denoising == "span_corruption":
        return raw_block_size(block_size, data_args.noise_density, data_args.mean_noise_span_length)
    if denoising == "text_infilling":
        return block_size - 1
    return block_size


def first_blocks(validation, count: int) -> Dataset:
    """The first `count` validation blocks as a `datasets.Dataset` (what `text_prompts` takes)."""
    rows = [[int(token) for token in validation[i]["input_ids"]] for i in range(min(count, len(validation)))]
    return Dataset.from_dict({"input_ids": rows})


def _pretrain(model_args, data_args, data_settings: PretrainingDataSettings, training_args, sample_args, callbacks,
              run_dir: RunDirectory, denoising: str | None = None) -> RunRecord:
    output_dir = run_dir.path
    seq2seq = denoising is not None
    with training_args.main_process_first(desc="tokenizer, model and data"):
        # The main process goes first: it trains the tokenizer and fills the data cache; the others then read
        # what it wrote.
        set_seed(training_args.seed)
        tokenizer, documents = load_or_train_tokenizer(model_args, data_settings, run_dir,
                                                       NUM_SENTINELS if seq2seq else 0)
        model = load_or_init_model(model_args, tokenizer, training_args.seed, seq2seq)
        block_size = resolve_block_size(data_args.block_size, model.config)
        if model_args.attn_implementation is None and not seq2seq:
            started_with = run_dir.started_speed_settings().get("model.attn_implementation")
            if started_with:  # eager and SDPA round differently: a resumed run goes on as it began
                model.set_attn_implementation(started_with)
                logger.info("attention: %s, as when this run started", started_with)
            else:
                set_fastest_attention(model, training_args, block_size)
        collator = None
        if denoising == "span_corruption":
            collator = SpanCorruptionCollator(tokenizer, noise_density=data_args.noise_density,
                                              mean_noise_span_length=data_args.mean_noise_span_length,
                                              num_sentinels=NUM_SENTINELS, seed=training_args.seed)
        elif denoising == "text_infilling":
            collator = TextInfillingCollator(tokenizer, mask_ratio=data_args.mask_ratio,
                                             poisson_lambda=data_args.poisson_lambda, seed=training_args.seed)
        length = packed_block_length(block_size, denoising, data_args)
        if data_settings.streaming:
            blocks = build_streaming_data(data_settings, tokenizer, length, seed=training_args.seed,
                                          num_processes=training_args.world_size, documents=documents)
        else:
            blocks = build_pretraining_data(data_settings, tokenizer, length, documents=documents)
        if collator is not None:
            blocks = dataclasses.replace(blocks, collator=collator)
        prompts = [] if seq2seq else text_prompts(sample_args, first_blocks(blocks.validation, sample_args.num_samples),
                                                  tokenizer, model.config.max_position_embeddings)
    resume_from = (
        last_complete_checkpoint(output_dir) if training_args.resume and not training_args.overwrite_output else None
    )
    logger.info("%s parameters; %s training tokens, %s validation tokens%s", f"{model.num_parameters():,}",
                f"{blocks.train_tokens:,}" if blocks.train_tokens else "?", f"{blocks.validation_tokens:,}",
                f"; resuming from {resume_from}" if resume_from else "")

    # The Trainer's own push would upload the whole output directory (pickles included) at every save and replace
    # the card: the run is pushed once at the end instead, with exactly what `scratchlm-publish` uploads.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    predicted_tokens = blocks.validation_tokens - len(blocks.validation)  # each block predicts all but its first token
    if blocks.train_tokens is None:
        # A stream under DDP: every process reads its own shards of it (or, when they do not divide, the whole stream
        # keeping its slice of every global batch), instead of rank 0 reading every batch and sending it to the others.
        training_args.accelerator_config.dispatch_batches = False
    enable_compiled_training(training_args)
    optimization = trainer_optimization(model, training_args)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=blocks.train,
        eval_dataset=blocks.validation,
        data_collator=blocks.collator,
        processing_class=tokenizer,
        callbacks=[LossCurveCallback(), LogEveryStepOnceCallback(),
                   *([] if seq2seq else [PerplexityCallback(predicted_tokens, blocks.validation_bytes)]),
                   *optimization.callbacks, *(callbacks or [])],
        optimizers=optimization.optimizers,
    )
    use_log_friendly_progress(trainer)
    resume_stream_in_place(trainer, data_settings, resume_from)
    run_dir.start(trainer, {"model.attn_implementation": model.config._attn_implementation})
    started = time.perf_counter()
    train_result = run_training(trainer, resume_from)
    training_time = time.perf_counter() - started
    metrics = {**train_result.metrics, **whole_run_metrics(trainer.state), **trainer.evaluate()}
    if not seq2seq:  # perplexity and bits per byte are of next-token prediction, not of the masked spans
        add_language_model_metrics(metrics, predicted_tokens, blocks.validation_bytes)
    trainer.log_metrics("all", metrics)

    validation_sources = data_args.validation_files or data_args.train_files or [data_args.dataset_name]
    record = RunRecord(
        task="text2text-generation" if seq2seq else "text-generation",
        kind="pretraining",
        method="full",
        base_model=model_args.model_name_or_path,
        model_name=output_dir.name,
        datasets=data_args.train_files or [data_args.dataset_name],
        validation_datasets=list(data_args.validation_files or []),
        metrics=metrics,
        eval_results=eval_results(metrics, DENOISING_METRICS[denoising] if seq2seq else LANGUAGE_MODELLING_METRICS,
                                  task_type="text2text-generation" if seq2seq else "text-generation",
                                  task_name=DENOISING_NAMES[denoising] if seq2seq else "Language modelling",
                                  sources={"eval": ", ".join(validation_sources)},
                                  dataset_type=data_args.dataset_name or "text"),
        training_time_s=round(training_time, 1),
        cleaning_report=blocks.report.to_dict(),
        train_tokens=blocks.train_tokens,
        validation_bytes=blocks.validation_bytes,
        data_from_cache=blocks.from_cache,
    )
    record.language, record.language_inferred = run_languages(data_args.language,
                                                              texts_of_blocks(blocks.train, tokenizer))
    record = finish_run(trainer, tokenizer, record)
    if not trainer.is_world_process_zero():
        return record
    if push_to_hub:
        push_run_to_hub(trainer)
    record = add_samples(trainer, record, lambda: sample_generations(
        model, tokenizer, prompts, sample_args.sample_max_new_tokens, training_args.seed))
    for sample in record.samples:
        print(f"\n--- sample ---\n{sample['prompt']}{sample['completion']}")
    if seq2seq:
        print(f"\nvalidation: {DENOISING_NAMES[denoising].lower()} loss {metrics['eval_loss']:.4f}\nmodel, tokenizer, "
              f"loss curve and card in {output_dir}; fine-tune it with scratchlm-finetune --task seq2seq")
        return record
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
