"""Encoder-decoder figures: Multi30k translation (En->De, De->En) and SciTLDR-A summarisation, on a training-time
budget.

1. Multi30k (29,000 training pairs; `val` for the BLEU-vs-minutes curve; `test_2016_flickr` for the figure): one
   joint English+German tokenizer, then a ScratchLM encoder-decoder (`--preset`) trained from scratch for
   `--minutes` per direction with the original Transformer's recipe (inverse-square-root schedule with warmup,
   label smoothing 0.1). Reported: sacreBLEU and chrF on test 2016 (beam `--num_beams`, detokenized, cased), the
   curve of greedy BLEU on the first `--curve_sentences` validation pairs against training minutes, training tokens
   per second (source + target tokens, padding excluded), parameters.
   Published references: a 9 M-parameter Transformer, 36.5 BLEU De->En (tokenized BLEU, GPU, 10 epochs); fairseq's
   Transformer-tiny 41.0 En->De (beam 5). Goal here: >= 35 sacreBLEU En->De within 60 training minutes.
2. SciTLDR-A (abstract -> one-sentence TL;DR; 1,992 / 619 / 618), ROUGE-1/2/L on test with all references (the best
   per example), side by side in one run: Lead-1 (the abstract's first sentence), the model trained from scratch
   for `--minutes`, and the model denoising-pretrained (`--denoising`: BART text infilling by default, or T5 span
   corruption) for `--pretrain_minutes` (default `--minutes`) on unlabelled text (SciTLDR train+dev abstracts and
   WikiText-2 valid+test; never the test abstracts) and then fine-tuned for `--minutes`. Both decode alike
   (`--num_beams`, never repeating a `--no_repeat_ngram_size`-gram).

Training time excludes the evaluation done for the curve. Timings on the shared 2-core machine are noisy.
Results go to benchmarks/results/seq2seq.json.

    python benchmarks/bench_seq2seq.py --minutes 60                      # the full figures (hours in all)
    python benchmarks/bench_seq2seq.py --minutes 0.5 --test_limit 50 --tasks en-de scitldr   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import wikitext_paragraphs  # noqa: E402

from scratchlm.modeling import init_seq2seq_model  # noqa: E402
from scratchlm.training.data.denoising import SpanCorruptionCollator, TextInfillingCollator
from scratchlm.training.data.seq2seq import (
    build_seq2seq_data,
    encode_with_eos,
    load_pairs,
    train_joint_tokenizer,
)
from scratchlm.training.data.tables import load_table
from scratchlm.training.evaluation import score_generations

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "seq2seq.json"
PUBLISHED = {"transformer_9m_de_en_tokenized_bleu": 36.5, "fairseq_transformer_tiny_en_de_bleu_beam5": 41.0}
NUM_SENTINELS = 100
logger = logging.getLogger("bench_seq2seq")


class TimeBudget(TrainerCallback):
    """Stops training after `minutes` of training time; every `curve_every` minutes (training time) calls
    `probe()` and records (minutes, its result) — the time the probe takes is not counted as training."""

    def __init__(self, minutes: float, curve_every: float | None = None, probe=None):
        self.budget = minutes * 60
        self.curve_every = curve_every * 60 if curve_every else None
        self.probe = probe
        self.curve: list[tuple[float, float]] = []
        self.trained = 0.0
        self.next_probe = self.curve_every

    def on_train_begin(self, args, state, control, **kwargs):
        self.resumed = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.trained += now - self.resumed
        if self.probe is not None and self.next_probe is not None and self.trained >= self.next_probe:
            self.curve.append((round(self.trained / 60, 2), self.probe()))
            logger.info("curve: %.1f min -> %.2f", *self.curve[-1])
            self.next_probe += self.curve_every
        if self.trained >= self.budget:
            control.should_training_stop = True
        self.resumed = time.perf_counter()


@torch.no_grad()
def generate(model, tokenizer, sources: list[str], *, num_beams: int, max_new_tokens: int, max_source_length: int,
             batch_size: int = 32, no_repeat_ngram_size: int = 0) -> list[str]:
    """Outputs in input order; batches of similar length (sorted) waste less on padding."""
    model.eval()
    model.generation_config.max_length = None  # max_new_tokens decides
    ids, _ = encode_with_eos(sources, tokenizer, max_source_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    outputs = [""] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt").to(model.device)
        generated = model.generate(**batch, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                   no_repeat_ngram_size=no_repeat_ngram_size)
        for index, text in zip(chunk, tokenizer.batch_decode(generated, skip_special_tokens=True)):
            outputs[index] = " ".join(text.split())
    model.train()
    return outputs


def training_arguments(args, output_dir: Path, *, seq2seq: bool = True, lr: float | None = None):
    cls = Seq2SeqTrainingArguments if seq2seq else TrainingArguments
    return cls(
        output_dir=str(output_dir), max_steps=args.max_steps or 10**9, per_device_train_batch_size=args.batch_size,
        learning_rate=lr or args.learning_rate, lr_scheduler_type="cosine" if args.max_steps else "inverse_sqrt",
        warmup_steps=args.warmup_steps,
        weight_decay=0.0, adam_beta2=0.98, label_smoothing_factor=0.1 if seq2seq else 0.0, max_grad_norm=1.0,
        logging_steps=50, save_strategy="no", report_to=[], bf16=args.bf16, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, seed=args.seed, disable_tqdm=True,
    )


def train_seq2seq(args, model, tokenizer, train_examples: Dataset, output_dir: Path, probe=None) -> dict:
    budget = TimeBudget(args.minutes, args.curve_every if probe else None, probe)
    trainer = Seq2SeqTrainer(
        model=model, args=training_arguments(args, output_dir), train_dataset=train_examples,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model), callbacks=[budget],
    )
    result = trainer.train()
    return run_figures(trainer, budget, train_examples, args.batch_size, result.training_loss)


def run_figures(trainer, budget: TimeBudget, examples: Dataset, batch_size: int, mean_loss: float) -> dict:
    steps = trainer.state.global_step
    tokens_per_example = (sum(map(len, examples["input_ids"])) + sum(map(len, examples["labels"]))) / len(examples)
    history = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"mean_train_loss": round(mean_loss, 4),
        "steps": steps, "training_minutes": round(budget.trained / 60, 2), "epochs": round(steps * batch_size /
                                                                                          len(examples), 3),
        "tokens_per_second": round(steps * batch_size * tokens_per_example / max(budget.trained, 1e-9), 1),
        "final_train_loss": history[-1] if history else None, "curve": budget.curve,
    }


def new_model(args, tokenizer):
    overrides = {"max_position_embeddings": 512, "hidden_dropout": args.dropout, "attention_dropout": args.dropout}
    return init_seq2seq_model(args.preset, overrides, tokenizer, seed=args.seed)


# ------------------------------------------------------------------------------------------------ Multi30k


def multi30k_pairs(split: str, source: str, target: str) -> Dataset:
    folder = DATA / "multi30k"
    return load_pairs(source_file=folder / f"{split}.{source}.gz", target_file=folder / f"{split}.{target}.gz")


def run_translation(args, direction: str, tokenizer, workdir: Path) -> dict:
    source, target = direction.split("-")
    train = multi30k_pairs("train", source, target)
    data = build_seq2seq_data(train, multi30k_pairs("val", source, target),
                              multi30k_pairs("test_2016_flickr", source, target), tokenizer,
                              max_source_length=128, max_target_length=128, train_on="first")
    model = new_model(args, tokenizer)
    curve_sources = data.sources["validation"][:args.curve_sentences]
    curve_refs = data.references["validation"][:args.curve_sentences]

    def probe() -> float:
        hypotheses = generate(model, tokenizer, curve_sources, num_beams=1, max_new_tokens=64, max_source_length=128)
        return round(score_generations(hypotheses, curve_refs, ("sacrebleu",))["bleu"], 2)

    logger.info("[%s] %s parameters, training for %.1f minutes", direction, f"{model.num_parameters():,}",
                args.minutes)
    figures = train_seq2seq(args, model, tokenizer, data.train, workdir / direction, probe)
    test_sources = data.sources["test"][:args.test_limit]
    test_refs = data.references["test"][:args.test_limit]
    started = time.perf_counter()
    hypotheses = generate(model, tokenizer, test_sources, num_beams=args.num_beams, max_new_tokens=80,
                          max_source_length=128)
    figures["test_generation_seconds"] = round(time.perf_counter() - started, 1)
    scores = score_generations(hypotheses, test_refs, ("sacrebleu",))
    (workdir / direction).mkdir(parents=True, exist_ok=True)
    (workdir / direction / "test_2016_flickr.hyp").write_text("".join(h + "\n" for h in hypotheses), "utf-8")
    figures.update(parameters=model.num_parameters(), test_sentences=len(test_sources),
                   test_bleu=round(scores["bleu"], 2), test_chrf=round(scores["chrf"], 2),
                   samples=[{"source": s, "output": h, "reference": r[0]}
                            for s, h, r in zip(test_sources[:3], hypotheses[:3], test_refs[:3])])
    return figures


# ------------------------------------------------------------------------------------------------- SciTLDR


def lead_1(abstract_sentences: list[str]) -> str:
    return next((s.strip() for s in abstract_sentences if s and s.strip()), "")


def pack_blocks(texts: list[str], tokenizer, block_size: int) -> Dataset:
    stream: list[int] = []
    for ids in tokenizer(texts)["input_ids"]:
        stream.extend([*ids, tokenizer.eos_token_id])
    return Dataset.from_dict({"input_ids": [stream[i:i + block_size]
                                            for i in range(0, len(stream) - block_size + 1, block_size)]})


def run_summarization(args, workdir: Path) -> dict:
    folder = DATA / "scitldr-a"
    train, dev, test = (load_pairs(table=str(folder / f"{split}.jsonl")) for split in ("train", "dev", "test"))
    test_abstracts = load_table(str(folder / "test.jsonl"))["source"]
    unlabelled = [*train["source"], *dev["source"], *wikitext_paragraphs()]
    tokenizer = train_joint_tokenizer([train, dev], vocab_size=args.vocab_size, num_sentinels=NUM_SENTINELS)
    data = build_seq2seq_data(train, dev, test, tokenizer, max_source_length=args.max_abstract_tokens,
                              max_target_length=64, train_on="each")
    sources, refs = data.sources["test"][:args.test_limit], data.references["test"][:args.test_limit]
    results = {"test_examples": len(sources),
               "lead_1": score_generations([lead_1(a) for a in test_abstracts[:args.test_limit]], refs, ("rouge",))}
    logger.info("[scitldr] Lead-1: %s", results["lead_1"])

    def evaluate_model(model) -> dict:
        outputs = generate(model, tokenizer, sources, num_beams=args.num_beams, max_new_tokens=60,
                           max_source_length=args.max_abstract_tokens, batch_size=16,
                           no_repeat_ngram_size=args.no_repeat_ngram_size)
        return {**score_generations(outputs, refs, ("rouge",)), "sample": outputs[0]}

    scratch = new_model(args, tokenizer)
    results["from_scratch"] = {"training": train_seq2seq(args, scratch, tokenizer, data.train,
                                                         workdir / "scitldr-scratch")}
    results["from_scratch"].update(evaluate_model(scratch))
    logger.info("[scitldr] from scratch: %s", results["from_scratch"])
    del scratch

    pretrained = new_model(args, tokenizer)
    if args.denoising == "text_infilling":  # the labels are the block plus eos: blocks one short of the length
        blocks = pack_blocks(unlabelled, tokenizer, args.pretrain_block_size - 1)
        collator = TextInfillingCollator(tokenizer, seed=args.seed)
    else:
        blocks = pack_blocks(unlabelled, tokenizer, args.pretrain_block_size)
        collator = SpanCorruptionCollator(tokenizer, num_sentinels=NUM_SENTINELS, seed=args.seed)
    budget = TimeBudget(args.pretrain_minutes or args.minutes)
    trainer = Trainer(model=pretrained, args=training_arguments(args, workdir / "scitldr-pretrain", seq2seq=False),
                      train_dataset=blocks, data_collator=collator, callbacks=[budget])
    trainer.train()
    steps = trainer.state.global_step
    results["pretrained"] = {"pretraining": {"objective": args.denoising, "blocks": len(blocks),
                                             "block_size": len(blocks[0]["input_ids"]),
                                             "steps": steps, "epochs": round(steps * args.batch_size / len(blocks), 3),
                                             "training_minutes": round(budget.trained / 60, 2),
                                             "final_loss": next((entry["loss"] for entry in
                                                                 reversed(trainer.state.log_history)
                                                                 if "loss" in entry), None)}}
    results["pretrained"]["training"] = train_seq2seq(args, pretrained, tokenizer, data.train,
                                                      workdir / "scitldr-finetune")
    results["pretrained"].update(evaluate_model(pretrained))
    logger.info("[scitldr] pretrained + fine-tuned: %s", results["pretrained"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60, help="Training minutes per model (and for pretraining).")
    parser.add_argument("--tasks", nargs="+", default=["en-de", "de-en", "scitldr"],
                        choices=["en-de", "de-en", "scitldr"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--warmup_steps", type=int, default=400)
    parser.add_argument("--max_steps", type=int, default=None,
                        help="With a step count the learning rate follows a cosine to 0 over it (training still stops "
                             "at --minutes); without, the original Transformer's inverse square root.")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="hidden and attention dropout (Multi30k overfits within a few epochs without it).")
    parser.add_argument("--num_beams", type=int, default=5)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bf16 autocast (AMX on this CPU: about 1.7x the fp32 training speed).")
    parser.add_argument("--curve_every", type=float, default=10, help="Minutes between points of the BLEU curve.")
    parser.add_argument("--curve_sentences", type=int, default=200)
    parser.add_argument("--test_limit", type=int, default=None, help="Score only the first N test examples.")
    parser.add_argument("--max_abstract_tokens", type=int, default=384)
    parser.add_argument("--pretrain_minutes", type=float, default=None,
                        help="Denoising-pretraining minutes for the SciTLDR model (default: --minutes); both models then "
                             "fine-tune for --minutes.")
    parser.add_argument("--no_repeat_ngram_size", type=int, default=3,
                        help="Summaries never repeat an n-gram of this size (BART's summarisation setting; 0: off). "
                             "Both SciTLDR models decode alike.")
    parser.add_argument("--pretrain_block_size", type=int, default=256)
    parser.add_argument("--denoising", choices=("text_infilling", "span_corruption"), default="text_infilling",
                        help="The SciTLDR model's pretraining: BART text infilling (30 percent masked in Poisson-3 "
                             "spans, the whole block reconstructed) or T5 span corruption (15 percent, spans only).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's). On a machine shared with other jobs use 1: measured "
                             "here with the load at ~15, a training step took 1 s on one thread and 25-30 s on two.")
    parser.add_argument("--workdir", default="/tmp/scratchlm-bench-seq2seq")
    parser.add_argument("--results", default=str(RESULTS), help="where the figures are written (JSON).")
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    results: dict = {"settings": vars(args), "published": PUBLISHED, "torch_threads": torch.get_num_threads()}
    results_file = Path(args.results)
    results_file.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        results_file.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    translation = [task for task in args.tasks if task != "scitldr"]
    if translation:
        started = time.perf_counter()
        pairs = multi30k_pairs("train", "en", "de")
        tokenizer = train_joint_tokenizer(pairs, vocab_size=args.vocab_size)
        results["multi30k_tokenizer"] = {"vocab": len(tokenizer), "seconds": round(time.perf_counter() - started, 1)}
        for direction in translation:
            results[f"multi30k_{direction}"] = run_translation(args, direction, tokenizer, workdir)
            print(f"[multi30k {direction}] " + json.dumps({k: v for k, v in results[f"multi30k_{direction}"].items()
                                                           if k != "samples"}), flush=True)
            save()
    if "scitldr" in args.tasks:
        results["scitldr"] = run_summarization(args, workdir)
        print("[scitldr] " + json.dumps(results["scitldr"]), flush=True)
        save()
    goal = results.get("multi30k_en-de", {}).get("test_bleu")
    if goal is not None and not math.isnan(goal):
        print(f"En->De test 2016 sacreBLEU {goal:.2f} (goal 35 within 60 minutes; fairseq Transformer-tiny 41.0)")
    print(f"-> {results_file}")


if __name__ == "__main__":
    main()
