"""The encoder-decoder through the commands: `scratchlm-init --architecture seq2seq` -> `scratchlm-finetune --task
seq2seq` on Multi30k lines (predictions, BLEU, card, a fresh process without the package translating), span-corruption
pretraining -> fine-tuning, and the bad inputs each command refuses before any training."""

from __future__ import annotations

import gzip
import json

import pytest
import sacrebleu
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from scratchlm.modeling.cli import init_main
from scratchlm.training.data.seq2seq import load_pairs, read_lines, train_joint_tokenizer
from scratchlm.training.finetune import main as finetune_main
from scratchlm.training.pretrain import main as pretrain_main
from scratchlm.training.tasks.seq2seq import write_predictions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_PAIRS, TEST_PAIRS = 48, 6
FAST = ["--report_to", "none", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8",
        "--generation_max_length", "12", "--evaluate_before_training", "false", "--save_strategy", "no",
        "--eval_strategy", "no", "--seed", "0"]


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    """A few Multi30k En-De pairs as parallel files (train gzipped, as the data set ships; test plain) and a joint
    tokenizer trained on both sides of the training pairs."""
    root = tmp_path_factory.mktemp("multi30k")
    files = {}
    for split, source, count in (("train", "train", TRAIN_PAIRS), ("test", "test_2016_flickr", TEST_PAIRS)):
        for lang in ("en", "de"):
            lines = read_lines(data_dir / "multi30k" / f"{source}.{lang}.gz")[:count]
            path = root / (f"{split}.{lang}.gz" if split == "train" else f"{split}.{lang}")
            text = "".join(line + "\n" for line in lines)
            path.write_bytes(gzip.compress(text.encode())) if split == "train" else path.write_text(text)
            files[split, lang] = str(path)
    tokenizer = train_joint_tokenizer(load_pairs(source_file=files["train", "en"], target_file=files["train", "de"]),
                                      vocab_size=400, min_frequency=1)
    tokenizer.save_pretrained(root / "tokenizer")
    files["tokenizer"] = str(root / "tokenizer")
    files["text"] = str(root / "train.en.txt")
    (root / "train.en.txt").write_text("\n".join(read_lines(files["train", "en"])) + "\n")
    return files


def init_seq2seq(corpus, output_dir) -> str:
    init_main(["--architecture", "seq2seq", "--preset", "tiny", "--config_overrides",
               "hidden_size=64,intermediate_size=128", "--tokenizer_name_or_path", corpus["tokenizer"],
               "--output_dir", str(output_dir)])
    return str(output_dir)


def test_init_then_finetune_translates_scores_and_loads_without_the_package(corpus, tmp_path, run_without_package,
                                                                             capsys):
    base = init_seq2seq(corpus, tmp_path / "init")
    assert json.loads((tmp_path / "init" / "config.json").read_text())["model_type"] == "scratchlm_seq2seq"
    out = tmp_path / "mt"
    finetune_main(["--task", "seq2seq", "--model_name_or_path", base, "--output_dir", str(out),
                   "--train_files", corpus["train", "en"], corpus["train", "de"],
                   "--validation_split_fraction", "0", "--test_files", corpus["test", "en"], corpus["test", "de"],
                   "--max_steps", "4", "--learning_rate", "3e-3", "--generation_num_beams", "2",
                   "--label_smoothing_factor", "0.1", *FAST])  # smoothing: the loss is the Trainer's, not the model's
    assert "test_bleu" in capsys.readouterr().out

    predictions = (out / "test_predictions.txt").read_text().splitlines()
    assert len(predictions) == TEST_PAIRS
    metrics = json.loads((out / "metrics.json").read_text())
    references = read_lines(corpus["test", "de"])
    # the BLEU the command reports is sacreBLEU's on the very file it wrote
    assert metrics["test_bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score, abs=1e-3)
    assert {"test_chrf", "test_rouge1", "test_rougeL", "test_loss"} <= set(metrics)
    card = (out / "README.md").read_text()
    assert "model-index" in card and "sacreBLEU" in card and "AutoModelForSeq2SeqLM" in card

    sources = read_lines(corpus["test", "en"])[:2]
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    with torch.no_grad():
        expected = model.generate(**tokenizer(sources, return_tensors="pt", padding=True), num_beams=2,
                                  max_new_tokens=8).tolist()
    run_without_package(f"""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=True)
        model = AutoModelForSeq2SeqLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        generated = model.generate(**tokenizer({sources!r}, return_tensors="pt", padding=True), num_beams=2,
                                   max_new_tokens=8)
        assert generated.tolist() == {expected!r}, generated.tolist()
    """)


@pytest.mark.parametrize("objective,card_name", [("span_corruption", "Span corruption"),
                                                 ("text_infilling", "Text infilling")])
def test_denoising_pretraining_then_seq2seq_finetuning(corpus, tmp_path, objective, card_name):
    pretrained = tmp_path / "t5"
    pretrain_main(["--objective", objective, "--preset", "tiny", "--config_overrides",
                   "hidden_size=64,intermediate_size=128", "--tokenizer_name_or_path", corpus["tokenizer"],
                   "--train_files", corpus["text"], "--sample_by", "line", "--block_size", "32",
                   "--validation_fraction", "0.2", "--max_steps", "3", "--output_dir", str(pretrained),
                   "--data_cache_dir", str(tmp_path / "cache"), *FAST[:6]])
    record = json.loads((pretrained / "scratchlm_run.json").read_text())
    assert record["task"] == "text2text-generation" and record["kind"] == "pretraining"
    assert record["metrics"]["eval_loss"] > 0 and "eval_perplexity" not in record["metrics"]
    assert f"name: {card_name}" in (pretrained / "README.md").read_text()
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    assert "<extra_id_99>" in tokenizer.get_vocab()  # the sentinels were added to the given tokenizer and saved
    config = json.loads((pretrained / "config.json").read_text())
    assert config["model_type"] == "scratchlm_seq2seq" and config["vocab_size"] == len(tokenizer)

    out = tmp_path / "summarizer"
    finetune_main(["--task", "seq2seq", "--model_name_or_path", str(pretrained), "--output_dir", str(out),
                   "--train_files", corpus["train", "en"], corpus["train", "de"], "--validation_split_fraction",
                   "0.1", "--max_steps", "2", *FAST])
    metrics = json.loads((out / "metrics.json").read_text())
    assert "eval_bleu" in metrics and json.loads((out / "scratchlm_run.json").read_text())["base_model"]


@pytest.mark.parametrize("task", ["classification", "sft"])
def test_an_encoder_decoder_is_refused_by_the_decoder_only_tasks(corpus, tmp_path, task, capsys):
    base = init_seq2seq(corpus, tmp_path / "init")
    with pytest.raises(SystemExit) as exit_info:
        finetune_main(["--task", task, "--model_name_or_path", base, "--train_files", corpus["train", "en"],
                       "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "encoder-decoder" in error and f"--task {task}" in error and base in error
    assert not (tmp_path / "out").exists()


def test_a_decoder_only_model_is_refused_by_seq2seq_and_denoising(corpus, tmp_path, tiny_causal_lm_dir, capsys):
    base = str(tiny_causal_lm_dir)
    with pytest.raises(SystemExit) as exit_info:
        finetune_main(["--task", "seq2seq", "--model_name_or_path", base, "--train_files", corpus["train", "en"],
                       corpus["train", "de"], "--output_dir", str(tmp_path / "mt")])
    assert exit_info.value.code == 2
    assert "--task seq2seq needs a ScratchLM encoder-decoder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        pretrain_main(["--objective", "span_corruption", "--model_name_or_path", base, "--train_files",
                       corpus["text"], "--output_dir", str(tmp_path / "t5")])
    assert exit_info.value.code == 2
    assert "--objective span_corruption needs an encoder-decoder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        pretrain_main(["--objective", "text_infilling", "--model_name_or_path", base, "--train_files",
                       corpus["text"], "--output_dir", str(tmp_path / "t5")])
    assert exit_info.value.code == 2
    assert "--objective text_infilling needs an encoder-decoder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        pretrain_main(["--objective", "text_infilling", "--preset", "tiny", "--mask_ratio", "1.5", "--train_files",
                       corpus["text"], "--output_dir", str(tmp_path / "t5")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--mask_ratio must be between 0 and 1 (exclusive), got 1.5")
    assert not (tmp_path / "mt").exists() and not (tmp_path / "t5").exists()


def test_parallel_files_of_different_lengths_are_refused_naming_both(corpus, tmp_path, capsys):
    base = init_seq2seq(corpus, tmp_path / "init")
    with pytest.raises(SystemExit) as exit_info:
        finetune_main(["--task", "seq2seq", "--model_name_or_path", base, "--output_dir", str(tmp_path / "mt"),
                       "--train_files", corpus["train", "en"], corpus["test", "de"]])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert corpus["train", "en"] in error and corpus["test", "de"] in error
    assert f"{TRAIN_PAIRS:,} lines" in error and f"{TEST_PAIRS:,}" in error
    with pytest.raises(SystemExit):
        finetune_main(["--task", "seq2seq", "--model_name_or_path", base, "--output_dir", str(tmp_path / "mt"),
                       "--train_files", corpus["train", "en"], corpus["train", "de"], "--validation_files",
                       corpus["test", "en"]])
    assert "--validation_files must be two parallel text files" in capsys.readouterr().err


def test_a_cut_off_gzip_or_a_mapping_target_is_one_line_naming_the_place(corpus, tmp_path, capsys):
    base = init_seq2seq(corpus, tmp_path / "init")
    cut = tmp_path / "train.de.gz"
    cut.write_bytes(open(corpus["train", "de"], "rb").read()[:200])
    table = tmp_path / "pairs.jsonl"
    table.write_text("".join(json.dumps({"source": "A dog runs.", "target": target}) + "\n"
                             for target in ("Ein Hund rennt.", {"de": "Ein Hund rennt."})))
    for files, problem in (([corpus["train", "en"], str(cut)], f"{cut}: not a readable gzip file"),
                           ([str(table)], f"{table} row 2: column 'target' holds a value of type dict")):
        with pytest.raises(SystemExit) as exit_info:
            finetune_main(["--task", "seq2seq", "--model_name_or_path", base, "--output_dir", str(tmp_path / "mt"),
                           "--train_files", *files, *FAST])
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith(f"scratchlm-finetune: error: {problem}") and "Traceback" not in lines[0], lines
    assert not (tmp_path / "mt").exists()


def test_a_failed_write_of_the_predictions_leaves_the_previous_file(tmp_path):
    path = write_predictions(tmp_path / "test_predictions.txt", ["Ein Hund.", "Zwei  Katzen."])
    assert path.read_text() == "Ein Hund.\nZwei Katzen.\n"
    with pytest.raises(UnicodeEncodeError):
        write_predictions(path, ["Ein Hund.", "\ud800"])  # a lone surrogate fails mid-write
    assert path.read_text() == "Ein Hund.\nZwei Katzen.\n" and [p.name for p in tmp_path.iterdir()] == [path.name]
