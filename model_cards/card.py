"""Model cards drawn from a run record (`scratchlm_run.json`), through `huggingface_hub`'s `ModelCard`.

Everything on the card comes from the record a training command wrote at its end: nothing is filled in by hand,
and a part the record lacks (samples, cleaning report, loss curve, ...) is left out rather than invented.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from scratchlm.files import atomic_path

from .run_record import (
    ADAPTER_CONFIG_FILE,
    CONFIG_FILE,
    KNOWN_METRICS,
    MODEL_CARD_FILE,
    TASK_NAMES,
    TASKS,
    RunRecord,
    eval_result,
    finite_number,
    is_hub_id,
)

TEMPLATE_PATH = Path(__file__).with_name("model_card.md.j2")
DEFAULT_LICENSE = "apache-2.0"
LIBRARY_NAME = "transformers"

ARCHITECTURE_LABELS = {
    "model_type": "Model type",
    "num_hidden_layers": "Layers",
    "hidden_size": "Hidden size",
    "intermediate_size": "MLP (SwiGLU) size",
    "num_attention_heads": "Attention heads",
    "num_key_value_heads": "Key/value heads (GQA)",
    "vocab_size": "Vocabulary size",
    "max_position_embeddings": "Context length (tokens)",
    "rope_type": "RoPE type",
    "tie_word_embeddings": "Tied input/output embeddings",
}
# A classifier whose accuracy is within this of always answering its training labels' majority class has not
# learnt the task: its card and the command's final report say so.
MAJORITY_MARGIN = 0.01
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese", "fr": "French", "de": "German", "es": "Spanish", "ja": "Japanese"}
ENVIRONMENT_LABELS = {"torch": "PyTorch", "transformers": "Transformers", "device": "Device"}


# ----------------------------------------------------------------------------------------------------------------
# Small formatting helpers


def _cell(value: Any) -> str:
    """One markdown table cell: no line breaks, pipes escaped."""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(item) for item in value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(value: Any) -> str:
    return f"`{_cell(value)}`"


def _fenced(text: str, language: str = "text") -> str:
    """A fenced code block that survives backticks inside `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _humanize(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _short_source(name: str) -> str:
    """A data source's name without this machine's directories (`.../tinyshakespeare/input.txt`)."""
    path = Path(name)
    if path.is_absolute() or name.startswith(("~", ".")):
        return "/".join(path.parts[-2:]) if len(path.parts) > 1 else path.name
    return name


def _short_sources(names: str) -> str:
    return ", ".join(_short_source(name.strip()) for name in str(names).split(","))


def _display_source(name: str) -> str:
    """How a data source is named on the card: Hub ids as links, local paths without this machine's directories."""
    if is_hub_id(name) and "/" in name:
        return f"[{name}](https://huggingface.co/datasets/{name})"
    if _short_source(name) != name:
        return f"`{_short_source(name)}` (local file)"
    return f"`{name}`"


# ----------------------------------------------------------------------------------------------------------------
# What the record says


def _task(record: RunRecord) -> str:
    task = record.task
    if task not in TASKS:
        raise ValueError(f"run record has task {task!r}; a model card needs one of {', '.join(TASKS)}")
    return task


def _is_adapter(record: RunRecord, output_dir: Path | None) -> bool:
    """An adapter-only repository: the LoRA weights without a merged model next to them."""
    if output_dir is not None and (output_dir / CONFIG_FILE).is_file():
        return False
    if output_dir is not None and (output_dir / ADAPTER_CONFIG_FILE).is_file():
        return True
    return output_dir is None and bool(record.adapter) and record.merged is not True


def eval_results_from_record(record: RunRecord | Mapping[str, Any]) -> list[EvalResult]:
    """The record's `eval_results`, or, when it has none, results derived from its `eval_*` metrics."""
    record = RunRecord.from_dict(record)
    entries = [dict(entry) for entry in record.eval_results or []]
    if not entries:
        task = record.task or "text-generation"
        datasets = ", ".join(str(d) for d in record.datasets or ["validation data"])
        for key in KNOWN_METRICS:
            value = record.metrics.get(key)
            if finite_number(value):
                entries.append(eval_result(key, value, task_type=task, task_name=TASK_NAMES.get(task, task),
                                           dataset_name=datasets))
    results = []
    for entry in entries:
        if not finite_number(entry.get("metric_value")):
            continue
        entry.setdefault("task_type", record.task or "text-generation")
        entry.setdefault("dataset_type", "text")
        entry["dataset_name"] = _short_sources(entry.get("dataset_name") or entry["dataset_type"])
        try:
            results.append(EvalResult(**entry))
        except TypeError as error:
            raise ValueError(f"run record has a malformed eval_results entry {entry}: {error}") from None
    return results


def card_data_from_record(
    record: RunRecord | Mapping[str, Any], *, adapter: bool = False, base_model: str | None = None
) -> ModelCardData:
    """The card's YAML metadata: license, language, library, tags, pipeline tag, data sets, base model, results."""
    record = RunRecord.from_dict(record)
    task = _task(record)
    model_name = record.model_name or "scratchlm-model"
    base_model = base_model or (record.adapter_base if record.is_finetune else None)
    tags = ["scratchlm", task, "custom_code", record.kind or "pretraining"]
    if record.method == "lora" or adapter:
        tags += ["lora", "peft"]
    if record.kind != "finetuning" and not adapter:
        tags.append("from-scratch")
    datasets = [name for name in record.datasets or [] if is_hub_id(name) and "/" in name]
    extra: dict[str, Any] = {}
    if base_model and is_hub_id(base_model):
        extra["base_model"] = base_model
        extra["base_model_relation"] = "adapter" if adapter else "finetune"
    return ModelCardData(
        language=list(record.language) if record.language else None,
        license=record.license or DEFAULT_LICENSE,
        library_name="peft" if adapter else LIBRARY_NAME,
        tags=list(dict.fromkeys(tags)),
        datasets=datasets or None,
        pipeline_tag=task,
        model_name=model_name,
        eval_results=eval_results_from_record(record) or None,
        **extra,
    )


# ----------------------------------------------------------------------------------------------------------------
# The card's sections


def _architecture_rows(record: RunRecord) -> list[tuple[str, str]]:
    rows = []
    for key, value in (record.architecture or {}).items():
        rows.append((ARCHITECTURE_LABELS.get(key, _humanize(key)), _cell(value)))
    if isinstance(record.num_parameters, int):
        rows.append(("Parameters", f"{record.num_parameters:,} ({record.num_parameters})"))
    trainable = record.trainable_parameters
    if isinstance(trainable, int) and trainable != record.num_parameters:
        rows.append(("Trainable parameters in this run", f"{trainable:,}"))
    return rows


def _adapter_rows(record: RunRecord, base_model: str | None) -> list[tuple[str, str]]:
    adapter = record.adapter
    if not adapter:
        return []
    rows = [("Base model", _code(base_model or adapter.get("base_model_name_or_path", "?")))]
    for key, label in (("r", "Rank r"), ("lora_alpha", "Alpha"), ("lora_dropout", "Dropout"),
                       ("target_modules", "Target modules"), ("modules_to_save", "Fully trained modules")):
        if adapter.get(key) not in (None, "", [], {}):
            rows.append((label, _cell(sorted(adapter[key]) if isinstance(adapter[key], (list, set)) else adapter[key])))
    return rows


def _labels(record: RunRecord) -> list[tuple[str, str]]:
    id2label = record.id2label or {}
    return sorted(((int(index), _cell(label)) for index, label in id2label.items()), key=lambda pair: pair[0])


def _evaluation_data_rows(record: RunRecord) -> list[tuple[str, str]]:
    """(split, source) of the data the run was evaluated on and did not train on."""
    return [(split, _display_source(str(name))) for split, names in
            (("validation", record.validation_datasets), ("test", record.test_datasets)) for name in names or []]


def _cleaning_rows(record: RunRecord) -> list[tuple[str, str]]:
    report = record.cleaning_report
    if not isinstance(report, Mapping):
        return []
    rows = []
    for key, value in report.items():
        if isinstance(value, Mapping):
            rows += [(f"{_humanize(key)}: {sub}", _cell(v)) for sub, v in value.items() if not isinstance(v, Mapping)]
        elif isinstance(value, int) and not isinstance(value, bool):
            rows.append((_humanize(key), f"{value:,}"))
        elif value is not None:
            rows.append((_humanize(key), _cell(value)))
    return rows


def _run_length(values: dict[str, Any]) -> tuple[str, str] | None:
    """What decided the length of the run: `max_steps` when set (the Trainer then ignores the epochs), else the
    epochs."""
    max_steps, epochs = values.pop("max_steps", None), values.pop("num_train_epochs", None)
    if finite_number(max_steps) and max_steps > 0:
        return "run length", f"max_steps {max_steps:g} (decides the length; epochs are not used)"
    if finite_number(epochs):
        return "run length", f"num_train_epochs {epochs:g}"
    return None


def _warmup(value: Any) -> str:
    """transformers reads a `warmup_steps` below 1 as a share of the training steps."""
    if finite_number(value) and 0 < value < 1:
        return f"{value:.0%} of the training steps (warmup_steps {value:g})"
    return f"{value:g} steps" if finite_number(value) else _cell(value)


QA_LABELS = {
    "max_length": "window (tokens, question included)", "stride": "overlap between windows (tokens)",
    "max_question_tokens": "question cut to (tokens)", "n_best": "candidate starts and ends (n-best)",
    "max_answer_length": "longest answer (tokens)", "null_score_threshold": "no-answer threshold",
    "span_selection": "span selection", "version_2": "unanswerable questions (SQuAD 2.0 style)",
}


def _qa_rows(record: RunRecord) -> list[tuple[str, str]]:
    """The windows and span decoding an extractive QA model was evaluated with (`answer_question` reads the same)."""
    settings = record.qa or {}
    if not settings.get("version_2"):
        settings = {key: value for key, value in settings.items() if key != "null_score_threshold"}
    return [(QA_LABELS.get(key, _humanize(key)), ("yes" if value else "no") if isinstance(value, bool) else _cell(value))
            for key, value in settings.items()]


def _hyperparameter_rows(record: RunRecord) -> list[tuple[str, str]]:
    values = {key: value for key, value in (record.hyperparameters or {}).items() if value is not None}
    length = _run_length(values)
    rows = [("warmup" if key == "warmup_steps" else key, _warmup(value) if key == "warmup_steps" else _cell(value))
            for key, value in values.items()]
    if length:
        rows.insert(0, length)
    if record.global_step is not None:
        rows.append(("optimizer steps done", _cell(record.global_step)))
    if finite_number(record.training_time_s):
        rows.append(("training time", f"{record.training_time_s / 60:.1f} min"))
    return rows


def _evaluation_rows(results: list[EvalResult]) -> list[tuple[str, str, str, str]]:
    return [
        (_cell(r.metric_name or r.metric_type), _cell(r.metric_value), _cell(r.dataset_name),
         _cell(r.dataset_split or ""))
        for r in results
    ]


def _samples(record: RunRecord) -> list[str]:
    blocks = []
    for sample in record.samples or []:
        if isinstance(sample, Mapping):
            prompt, completion = str(sample.get("prompt", "")), str(sample.get("completion", ""))
            blocks.append(f"Prompt: {_code(prompt)}\n\n" + _fenced(prompt + completion))
        elif isinstance(sample, str) and sample:
            blocks.append(_fenced(sample))
    return blocks


def classification_summary(metrics: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(headline lines, warnings) of a classifier's results: accuracy and macro-F1 of each evaluated split with the
    rate of its training labels' majority class beside them; a warning for a split where the model does no better
    than always answering that class."""
    lines, warnings = [], []
    for prefix, split in (("test", "test"), ("eval", "validation")):
        accuracy, majority = metrics.get(f"{prefix}_accuracy"), metrics.get(f"{prefix}_majority_rate")
        if not finite_number(accuracy):
            continue
        macro_f1 = metrics.get(f"{prefix}_macro_f1")
        line = f"{split.capitalize()} accuracy {accuracy:.1%}"
        if finite_number(macro_f1):
            line += f", macro-F1 {macro_f1:.3f}"
        if finite_number(majority):
            line += f" (always answering the majority class of the training labels: {majority:.1%})"
            if accuracy <= majority + MAJORITY_MARGIN:
                warnings.append(
                    f"On the {split} data this model does no better than always answering the majority class of its "
                    f"training labels ({accuracy:.1%} against {majority:.1%}): it has not learnt the task."
                )
        lines.append(line)
    return lines, warnings


def _summary(record: RunRecord, task: str, adapter: bool, base_model: str | None) -> str:
    what = {"text-generation": "language model", "question-answering": "extractive question-answering model",
            "text2text-generation": "sequence-to-sequence (translation, summarisation) model"}.get(task, "text classifier")
    languages = " and ".join(LANGUAGE_NAMES.get(code, code) for code in record.language or [])
    in_languages = f" for {languages}" if languages else ""
    size = f" {record.num_parameters:,}-parameter" if isinstance(record.num_parameters, int) else ""
    if adapter:
        return (f"A LoRA adapter that turns `{base_model or 'its base model'}` into a {what}{in_languages}, "
                "trained with ScratchLM and peft.")
    if record.is_finetune and base_model:
        how = "LoRA (merged into the weights)" if record.method == "lora" else "full fine-tuning"
        return f"A{size} {what}{in_languages}, fine-tuned from `{base_model}` with {how} using ScratchLM."
    if task == "text2text-generation":
        return (f"A{size} encoder-decoder {what}{in_languages}, trained from scratch with ScratchLM: the original "
                "Transformer's encoder and decoder built from Llama-style blocks (RMSNorm, rotary position "
                "embeddings, grouped-query attention, SwiGLU).")
    return (f"A{size} decoder-only {what}{in_languages}, trained from scratch with ScratchLM: a Llama-style "
            "transformer (RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU).")


def _procedure(record: RunRecord) -> str:
    kind = record.kind or "pretraining"
    method = record.method or "full"
    parts = [f"{kind.capitalize()} ({'LoRA' if method == 'lora' else method} training) with the 🤗 Trainer."]
    if record.finished_at:
        parts.append(f"Finished at {record.finished_at}.")
    if record.language and record.language_inferred:
        parts.append(f"Language tag ({', '.join(record.language)}) detected in the training text by its scripts.")
    return " ".join(parts)


def _usage(record: RunRecord, task: str, repo_id: str, adapter: bool, base_model: str | None) -> tuple[str, str]:
    if adapter:
        auto = {"text-generation": "AutoPeftModelForCausalLM", "question-answering": "AutoPeftModelForQuestionAnswering",
                "text2text-generation": "AutoPeftModelForSeq2SeqLM"}.get(task, "AutoPeftModelForSequenceClassification")
        code = (
            f"from peft import {auto}\nfrom transformers import AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)\n'
            f"# loads the base model `{base_model or '?'}` and applies this adapter\n"
            f'model = {auto}.from_pretrained("{repo_id}", trust_remote_code=True)\n'
            f"# or, with the base model already loaded: model = PeftModel.from_pretrained(base, \"{repo_id}\")\n"
        )
    elif task == "text-generation":
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)\n'
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", trust_remote_code=True)\n'
        )
    else:
        auto = {"question-answering": "AutoModelForQuestionAnswering", "text2text-generation": "AutoModelForSeq2SeqLM"
                }.get(task, "AutoModelForSequenceClassification")
        code = (
            f"from transformers import {auto}, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)\n'
            f'model = {auto}.from_pretrained("{repo_id}", trust_remote_code=True)\n'
        )
    prompt = _example_prompt(record)
    if task == "text-generation" and record.is_instruction_tuned:
        code += (
            f"\nmessages = [{{\"role\": \"user\", \"content\": {prompt!r}}}]\n"
            "# the chat template the model was tuned with (a plain prompt would only be continued, not answered)\n"
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, "
            "return_tensors=\"pt\")\n"
            "output = model.generate(**inputs, max_new_tokens=100, do_sample=True, top_p=0.9)\n"
            "print(tokenizer.decode(output[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))"
        )
        pipeline = (
            "from transformers import pipeline\n\n"
            f'chat = pipeline("text-generation", model="{repo_id}", trust_remote_code=True)\n'
            f"messages = [{{\"role\": \"user\", \"content\": {prompt!r}}}]\n"
            "print(chat(messages, max_new_tokens=100)[0][\"generated_text\"][-1][\"content\"])"
        )
    elif task == "text-generation":
        code += (
            f"\ninputs = tokenizer({prompt!r}, return_tensors=\"pt\")\n"
            "output = model.generate(**inputs, max_new_tokens=50, do_sample=True, top_p=0.9)\n"
            "print(tokenizer.decode(output[0], skip_special_tokens=True))"
        )
        pipeline = (
            "from transformers import pipeline\n\n"
            f'generator = pipeline("text-generation", model="{repo_id}", trust_remote_code=True)\n'
            f"print(generator({prompt!r}, max_new_tokens=50)[0][\"generated_text\"])"
        )
    elif task == "text2text-generation":  # transformers 5 has no translation/summarization pipeline
        code += (
            "\ninputs = tokenizer([\"A man is riding a bicycle.\"], return_tensors=\"pt\")\n"
            "output = model.generate(**inputs, num_beams=4, max_new_tokens=64)\n"
            "print(tokenizer.batch_decode(output, skip_special_tokens=True)[0])"
        )
        pipeline = ""
    elif task == "question-answering":  # transformers 5 has no question-answering pipeline
        code += (
            "\n# the windows and span decoding of the evaluation (pip install scratchlm)\n"
            "from scratchlm.inference.qa import answer_question\n"
            "print(answer_question(model, tokenizer, \"Who won?\", \"The Broncos won the game.\")[\"answer\"])"
        )
        pipeline = ""
    else:
        code += (
            f"\ninputs = tokenizer({prompt!r}, return_tensors=\"pt\")\n"
            "label_id = model(**inputs).logits.argmax(-1).item()\n"
            "print(model.config.id2label[label_id])"
        )
        pipeline = (
            "from transformers import pipeline\n\n"
            f'classifier = pipeline("text-classification", model="{repo_id}", trust_remote_code=True)\n'
            f"print(classifier({prompt!r}))"
        )
    return code, "" if adapter else pipeline


def _example_prompt(record: RunRecord) -> str:
    for sample in record.samples or []:
        if isinstance(sample, Mapping) and sample.get("prompt"):
            return str(sample["prompt"])[:80]
    return "一个好的故事" if (record.language or ["en"])[0] == "zh" else "Once upon a time"


def _limitations(record: RunRecord, task: str, adapter: bool) -> list[str]:
    scale = record.num_parameters
    scale_text = f"{scale:,} parameters" if isinstance(scale, int) else "a small number of parameters"
    paragraphs = []
    if task == "text-generation":
        paragraphs.append(
            "**Intended use.** Learning and research: studying how a small transformer language model is built, "
            "trained and evaluated, and as a starting point for fine-tuning experiments. It is not meant for "
            "production use or for any decision that affects people."
        )
        paragraphs.append(
            f"**Limitations.** This is a small model ({scale_text}) trained on a small corpus. Its text is often "
            "fluent-looking but incoherent or factually wrong; it has no notion of truth, follows no instructions "
            "unless fine-tuned for them, and its context is limited to "
            f"{record.architecture.get('max_position_embeddings', 'a few hundred')} tokens."
        )
    elif task == "text2text-generation":
        paragraphs.append("**Intended use.** Learning and research on translation and summarisation with an "
                          "encoder-decoder, on text like its training data.")
        paragraphs.append(f"**Limitations.** A small model ({scale_text}) trained on a small corpus; its BLEU/ROUGE "
                          "are only what the evaluation above shows. Outside its training domain it produces fluent "
                          "but wrong output, drops or invents content, and it never says it is unsure.")
    elif task == "question-answering":
        paragraphs.append("**Intended use.** Learning and research on extractive question answering: it points at "
                          "the span of a given text that answers a question, on text like its training data.")
        paragraphs.append(f"**Limitations.** A small model ({scale_text}); its exact match and F1 are only what "
                          "the evaluation above shows. It always answers with some span of the text (unless trained "
                          "on unanswerable questions), whether or not the text holds the answer.")
    else:
        labels = ", ".join(str(v) for v in (record.id2label or {}).values())
        paragraphs.append(
            "**Intended use.** Learning and research on text classification"
            + (f" into: {labels}" if labels else "")
            + ", on text like its training data. Not for decisions that affect people."
        )
        paragraphs.append(
            f"**Limitations.** A small model ({scale_text}); its accuracy is only what the evaluation above "
            "shows, on data like the evaluation set. On other domains, styles or languages it can fail silently "
            "and with high confidence."
        )
    paragraphs.append(
        "**Bias.** The model reproduces the patterns, gaps and biases of its training data"
        + (f" ({', '.join(_short_source(str(d)) for d in record.datasets)})" if record.datasets else "")
        + ", which was not filtered for stereotypes or offensive content. Check its outputs before using them."
    )
    if adapter or record.is_finetune:
        paragraphs.append("It also inherits the limitations and biases of its base model.")
    return paragraphs


# ----------------------------------------------------------------------------------------------------------------
# Public API


def render_model_card(
    record: RunRecord | Mapping[str, Any],
    output_dir: str | Path | None = None,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
) -> ModelCard:
    """Render the model card of a run from its record.

    Args:
        record: the run record (`scratchlm_run.json`) a training command wrote.
        output_dir: the run's directory, when known: the loss curve is shown only if its file is there, and an
            adapter directory (adapter_config.json, no config.json) gets an adapter card.
        repo_id: the Hub repository the card is for, used in the loading examples (default: the model name).
        base_model: the Hub id of the base model, overriding the one in the record (a local path, say).
    """
    record = RunRecord.from_dict(record)
    output_dir = Path(output_dir) if output_dir is not None else None
    task = _task(record)
    adapter = _is_adapter(record, output_dir)
    base = base_model or record.adapter_base
    if base and not is_hub_id(base):
        base = f"{_short_source(base)} (a local model)"
    card_data = card_data_from_record(record, adapter=adapter, base_model=base_model)
    model_name = record.model_name or "scratchlm-model"
    results = eval_results_from_record(record)
    loss_curve = record.loss_curve
    if loss_curve and output_dir is not None and not (output_dir / loss_curve).is_file():
        loss_curve = None
    usage_code, pipeline_code = _usage(record, task, repo_id or model_name, adapter, base)
    headline, warnings = classification_summary(record.metrics) if task == "text-classification" else ([], [])
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        summary=_summary(record, task, adapter, base),
        headline=headline,
        warnings=warnings,
        architecture_rows=_architecture_rows(record),
        adapter_rows=_adapter_rows(record, base),
        labels=_labels(record) if task == "text-classification" else [],
        usage_code=usage_code,
        pipeline_code=pipeline_code,
        dataset_rows=[_display_source(str(name)) for name in record.datasets or []],
        evaluation_data_rows=_evaluation_data_rows(record),
        cleaning_rows=_cleaning_rows(record),
        procedure=_procedure(record),
        hyperparameter_rows=_hyperparameter_rows(record),
        qa_rows=_qa_rows(record),
        loss_curve=loss_curve,
        environment_rows=[(ENVIRONMENT_LABELS.get(k, _humanize(k)), _cell(v))
                          for k, v in (record.environment or {}).items()],
        evaluation_rows=_evaluation_rows(results),
        samples=_samples(record),
        limitations=_limitations(record, task, adapter),
    )


def validate_model_card(
    card_or_path: ModelCard | str | Path, *, require_results: bool = False, require_base_model: bool = False
) -> ModelCard:
    """Check that a card parses and has the metadata the Hub needs; returns the parsed card.

    Raises `ValueError` naming what is missing: license, library_name, pipeline_tag; with `require_results`, the
    model-index evaluation results; with `require_base_model`, the Hub id of the base model of an adapter card
    (`library_name: peft`), which a run trained from a local base model only gets when it is published.
    """
    try:
        if isinstance(card_or_path, ModelCard):
            card = ModelCard(str(card_or_path))
        else:
            path = Path(card_or_path)
            if not path.is_file():
                raise ValueError(f"no model card at {path}")
            card = ModelCard.load(path)
    except ValueError as error:
        raise ValueError(f"the model card does not parse: {error}") from None
    data = card.data.to_dict()
    missing = [key for key in ("license", "library_name", "pipeline_tag") if not data.get(key)]
    if require_base_model and data.get("library_name") == "peft" and not data.get("base_model"):
        missing.append("base_model")
    if require_results and not data.get("model-index"):
        missing.append("model-index (evaluation results)")
    if missing:
        raise ValueError(f"the model card is missing required metadata: {', '.join(missing)}")
    if data.get("pipeline_tag") not in TASKS:
        raise ValueError(f"the model card has pipeline_tag {data['pipeline_tag']!r}; expected one of {TASKS}")
    return card


def record_has_results(record: RunRecord | Mapping[str, Any]) -> bool:
    """Whether the record holds evaluation numbers, so that its card must have a model-index."""
    return bool(eval_results_from_record(record))


def write_model_card(output_dir: str | Path, record: RunRecord | Mapping[str, Any], *, repo_id: str | None = None,
                     base_model: str | None = None) -> Path:
    """Render the card of a run, check it, and write it to `output_dir/README.md`; returns the path."""
    output_dir = Path(output_dir)
    card = render_model_card(record, output_dir, repo_id=repo_id, base_model=base_model)
    validate_model_card(card, require_results=record_has_results(record))
    path = output_dir / MODEL_CARD_FILE
    with atomic_path(path) as temporary:
        card.save(temporary)
    return path
