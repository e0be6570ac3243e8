"""Extractive question answering: SQuAD reading and checks, windows and span mapping, n-best decoding, the shipped
`squad` metric, `scratchlm-finetune --task qa` for a few steps, `answer_question` and `scratchlm-qa`, and loading the
result without the package.

Records written here plus a slice of ../shared/data/squad-v1.1/dev-v1.1.json; a 600-token tokenizer and a one-layer
model stand in for real ones.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

import scratchlm  # noqa: F401 - registers ScratchLM with the Auto classes
from scratchlm.inference.qa import answer_question, predict_answers, window_settings
from scratchlm.inference.qa import main as qa_main
from scratchlm.modeling import ScratchLMConfig, ScratchLMForCausalLM
from scratchlm.modeling.span_decoding import (
    NO_ANSWER_INDEX,
    best_spans,
    build_features,
    expected_f1_span,
    postprocess_predictions,
    span_text,
)
from scratchlm.tokenization import train_tokenizer
from scratchlm.training.cloze import main as cloze_main
from scratchlm.training.data.cloze import cloze_questions, split_sentences
from scratchlm.training.data.qa import (
    QAReport,
    check_answers,
    is_version_2,
    load_squad,
    metric_inputs,
    split_by_article,
)
from scratchlm.training.finetune import main as finetune_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METRIC_DIR = Path(scratchlm.__file__).resolve().parents[1] / "training" / "metrics" / "squad"
CONTEXT = "The Denver Broncos defeated the Carolina Panthers 24-10 to win Super Bowl 50 in Santa Clara."
PUBLISHED = {"version": "2.0", "data": [
    {"title": "Super_Bowl", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": "q1", "question": "Who won Super Bowl 50?",
         "answers": [{"text": "Denver Broncos", "answer_start": 4}, {"text": "The Denver Broncos", "answer_start": 0}]},
        {"id": "q2", "question": "Who lost?", "answers": [{"text": "Carolina Panthers", "answer_start": 5}]},
        {"id": "q3", "question": "Who sang the anthem?", "answers": [], "is_impossible": True},
    ]}]},
    {"title": "Santa_Clara", "paragraphs": [{"context": "Santa Clara is a city in California.", "qas": [
        {"id": "q4", "question": "Where is Santa Clara?", "answers": [{"text": "California", "answer_start": 25}]},
    ]}]},
]}


@pytest.fixture(scope="module")
def squad(data_dir) -> Dataset:
    return load_squad(data_dir / "squad-v1.1" / "dev-v1.1.json")


@pytest.fixture(scope="module")
def tokenizer(squad):
    return train_tokenizer(list(dict.fromkeys(squad.select(range(600))["context"])), vocab_size=600,
                           show_progress=False)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qa") / "tiny-v2.json"
    path.write_text(json.dumps(PUBLISHED), encoding="utf-8")
    return path


def test_published_and_flat_files_read_alike(published, tmp_path):
    dataset = load_squad(published)
    assert dataset["id"] == ["q1", "q2", "q3", "q4"] and dataset["title"][0] == "Super_Bowl"
    assert dataset[0]["answers"] == {"text": ["Denver Broncos", "The Denver Broncos"], "answer_start": [4, 0]}
    assert dataset["is_impossible"] == [False, False, True, False] and is_version_2(dataset)
    rows = tmp_path / "rows.jsonl"  # the flat layout, answers as a dict of two lists (the `datasets` squad layout)
    rows.write_text("".join(json.dumps({key: row[key] for key in ("id", "title", "context", "question", "answers")})
                            + "\n" for row in dataset), encoding="utf-8")
    assert load_squad(rows)["answers"] == dataset["answers"]


def test_missing_field_is_named(tmp_path):
    broken = json.loads(json.dumps(PUBLISHED))
    del broken["data"][1]["paragraphs"][0]["qas"][0]["question"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json data\[1\]\.paragraphs\[0\]\.qas\[0\] has no 'question'"):
        load_squad(path)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": "a", "question": "Q?", "answers": {"text": ["x"], "answer_start": [0]}}) + "\n")
    with pytest.raises(ValueError, match=r"rows\.jsonl row 0 has no 'context'"):
        load_squad(rows)
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps(PUBLISHED)[:30], encoding="utf-8")
    with pytest.raises(ValueError, match=r"cut\.json is not valid JSON: Unterminated string"):
        load_squad(cut)
    lines = _jsonl(tmp_path / "lines.json", _rows(["a", "b"]))  # JSON Lines in a .json file are rows
    assert load_squad(lines)["id"] == ["a", "b"]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _rows(ids: list) -> list[dict]:
    """Flat rows of the first published question, with these ids (None: no id field)."""
    row = {"title": "t", "context": CONTEXT, "question": "Who won?",
           "answers": {"text": ["Denver Broncos"], "answer_start": [4]}}
    return [{**row, **({"id": i} if i is not None else {})} for i in ids]


def test_missing_and_repeated_ids_are_named(tmp_path, published):
    # Predictions are stored by question id: a missing or repeated one would lose questions from the scores.
    with pytest.raises(ValueError, match=r"mixed\.jsonl row 1 has no 'id'"):
        load_squad(_jsonl(tmp_path / "mixed.jsonl", _rows(["a", None, "c"])))
    with pytest.raises(ValueError, match=r"twice\.jsonl row 2 repeats the id 'a' of .*twice\.jsonl row 0"):
        load_squad(_jsonl(tmp_path / "twice.jsonl", _rows(["a", "b", "a"])))
    repeated = json.loads(json.dumps(PUBLISHED))
    repeated["data"][1]["paragraphs"][0]["qas"][0]["id"] = "q1"
    (tmp_path / "repeated.json").write_text(json.dumps(repeated), encoding="utf-8")
    with pytest.raises(ValueError, match=r"repeated\.json data\[1\]\.paragraphs\[0\]\.qas\[0\] repeats the id 'q1' "
                                         r"of .*data\[0\]\.paragraphs\[0\]\.qas\[0\]"):
        load_squad(tmp_path / "repeated.json")
    # data in which no question has an id gets them numbered, and the report says how many
    report = QAReport()
    numbered = load_squad(_jsonl(tmp_path / "none.jsonl", _rows([None, None, None])), report=report)
    assert numbered["id"] == ["row-1", "row-2", "row-3"] and report.numbered_ids == 3


def test_answers_off_their_start_are_skipped_and_counted(published):
    checked, report = check_answers(load_squad(published), "train")
    # q2's "Carolina Panthers" is not at 5: skipped; q2 has no answer left, so it is dropped; q3 is unanswerable.
    assert checked["id"] == ["q1", "q3", "q4"]
    assert (report.bad_answers, report.dropped_questions, report.questions, report.unanswerable) == (1, 1, 3, 1)
    assert "'Carolina Panthers' at 5" in report.bad_answer_example and "q2" in report.bad_answer_example


def test_unanswerable_questions_point_at_the_no_answer_position(published, tokenizer):
    checked, report = check_answers(load_squad(published), "train")
    features = build_features(checked, tokenizer, max_length=96, stride=16, report=report)
    labels = {row["example_id"]: (row["start_positions"], row["end_positions"]) for row in features}
    assert labels["q3"] == (NO_ANSWER_INDEX, NO_ANSWER_INDEX) and labels["q1"][0] > NO_ANSWER_INDEX
    assert features[0]["input_ids"][NO_ANSWER_INDEX] == tokenizer.bos_token_id


def test_split_by_article_shares_no_context(squad):
    train, test = split_by_article(squad, test_fraction=0.2)
    titles = list(dict.fromkeys(squad["title"]))
    assert len(train) + len(test) == len(squad) == 10570
    assert set(test["title"]) == set(titles[-10:]) and not set(train["context"]) & set(test["context"])


def test_cloze_questions_are_valid_squad_rows_with_the_answer_blanked(squad, tokenizer):
    paragraphs = list(dict.fromkeys(zip(squad["title"][:300], squad["context"][:300])))
    rows = cloze_questions(paragraphs, per_paragraph=3, seed=1)
    assert len(paragraphs) < len(rows) <= 3 * len(paragraphs)
    assert rows == cloze_questions(paragraphs, per_paragraph=3, seed=1)  # reproducible
    checked, report = check_answers(load_squad(Dataset.from_list(rows)), "train")
    assert len(checked) == len(rows) and report.bad_answers == 0  # every answer is at its answer_start
    assert all(row["question"].endswith("?") for row in rows)
    assert not {"The", "In", "A"} & {row["answers"]["text"][0] for row in rows}
    features = build_features(checked, tokenizer, max_length=128, stride=32, report=report)
    assert report.answers_in_no_window == 0 and len(features) >= len(rows)
    # Without word dropping, the question is the answer's neighbourhood in its sentence with a wh-word in its
    # place: putting the answer back gives a piece of the context.
    verbatim = cloze_questions(paragraphs, per_paragraph=3, drop_rate=0.0, seed=1)

    def squeezed(text: str) -> str:  # the question re-spaces punctuation next to the blank: "( what )"
        return "".join(text.split()).lower()

    restored = sum(any(squeezed(row["question"][:-1].replace(wh, row["answers"]["text"][0], 1))
                       in squeezed(row["context"]) for wh in ("how many", "when", "what")) for row in verbatim)
    assert restored >= 0.95 * len(verbatim)


def test_cloze_sentences_do_not_end_at_initials_or_titles():
    text = "The U.S. Army and Dr. Smith met J. R. R. Tolkien in 1950. They talked. Mrs. Brown left! Was it St. Louis?"
    assert split_sentences(text) == [(0, "The U.S. Army and Dr. Smith met J. R. R. Tolkien in 1950."),
                                     (58, "They talked."), (71, "Mrs. Brown left!"), (88, "Was it St. Louis?")]


def test_cloze_command_writes_squad_rows_and_names_text_without_answers(published, tmp_path, capsys):
    output = tmp_path / "cloze" / "cloze.jsonl"
    cloze_main(["--train_files", str(published), "--output_file", str(output), "--per_paragraph", "1"])
    rows, report = check_answers(load_squad(str(output)), "train")
    assert len(rows) == 2 and report.bad_answers == 0  # one per paragraph, each answer where it says
    assert {row["context"] for row in rows} == {CONTEXT, "Santa Clara is a city in California."}
    assert "2 cloze questions from 2 paragraphs" in capsys.readouterr().out

    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"id": "p", "title": "t", "context": "all of it in lower case, no numbers.",
                                 "question": "what?", "answers": {"text": ["all"], "answer_start": [0]}}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        cloze_main(["--train_files", str(plain), "--output_file", str(tmp_path / "none.jsonl")])
    assert exit_info.value.code == 2 and not (tmp_path / "none.jsonl").exists()
    assert "no cloze question could be made from the 1 paragraph(s)" in capsys.readouterr().err


def test_cloze_command_reads_plain_text_paragraphs(tmp_path, capsys):
    first = "The Rhine flows\nthrough Basel. In 1815 the Congress of Vienna fixed its course."
    second = "It is 1,230 kilometres long and reaches the North Sea at Rotterdam."
    (tmp_path / "notes.txt").write_text(f"{first}\n\n  \n{second}\n", encoding="utf-8")
    with gzip.open(tmp_path / "more.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("Santa Clara is a city in California.\n")
    output = tmp_path / "cloze.jsonl"
    cloze_main(["--text_files", str(tmp_path / "notes.txt"), str(tmp_path / "more.txt.gz"),
                "--output_file", str(output), "--per_paragraph", "2"])
    rows, report = check_answers(load_squad(str(output)), "train")
    assert report.bad_answers == 0 and len(rows) == 5  # 2 + 2 + 1: each answer sits at its answer_start
    assert {row["context"] for row in rows} == {" ".join(first.split()), second, "Santa Clara is a city in California."}
    assert {row["title"] for row in rows} == {"notes.txt", "more.txt.gz"}
    assert "5 cloze questions from 3 paragraphs" in capsys.readouterr().out

    (tmp_path / "latin1.txt").write_bytes("Café in Zürich, 1999.".encode("latin-1"))
    (tmp_path / "broken.txt.gz").write_bytes(b"not gzip")
    for argv, message in ((["--text_files", str(tmp_path / "nope.txt")], "text file not found: "),
                          (["--text_files", str(tmp_path / "latin1.txt")], "latin1.txt: invalid UTF-8 at byte offset 3"),
                          (["--text_files", str(tmp_path / "broken.txt.gz")], "broken.txt.gz: not a readable gzip file"),
                          ([], "nothing to make cloze questions from: give --train_files and/or --text_files")):
        with pytest.raises(SystemExit) as exit_info:
            cloze_main([*argv, "--output_file", str(tmp_path / "none.jsonl")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "none.jsonl").exists()


def test_span_mapping_round_trip_and_windows_keep_answers(squad, tokenizer):
    examples = squad.select(range(300))
    single, windowed = QAReport(), QAReport()
    long_enough = build_features(examples, tokenizer, max_length=1024, stride=128, report=single)
    assert single.windows == len(examples) and single.answers_in_no_window == 0
    features = build_features(examples, tokenizer, max_length=160, stride=48, report=windowed)
    assert windowed.windows > len(examples)  # contexts are cut into several windows
    by_id = {row["id"]: row for row in examples}
    exact = 0
    for dataset in (long_enough, features):
        answered = set()
        for feature in dataset:
            start, end = feature["start_positions"], feature["end_positions"]
            if start == NO_ANSWER_INDEX:
                assert end == NO_ANSWER_INDEX
                continue
            example = by_id[feature["example_id"]]
            offsets = feature["offset_mapping"]
            text, _ = span_text(example["context"], offsets[start][0], offsets[end][1])
            answer = example["answers"]["text"][0]
            assert answer in text and len(text) - len(answer) < 20, (answer, text)
            exact += text == answer
            answered.add(example["id"])
        # every answer short enough for a window is found in one (the stride makes windows overlap)
        assert len(examples) - len(answered) == (single if dataset is long_enough else windowed).answers_in_no_window
    assert windowed.answers_in_no_window <= 2
    assert exact / (len(long_enough) + windowed.windows) > 0.4  # most mapped spans decode to the answer exactly


def test_nbest_decoding_picks_best_valid_span():
    offsets = [None, None, [0, 3], [3, 8], [8, 12], [12, 20]]
    start = np.array([9.0, 0.0, 1.0, 0.0, 5.0, 0.0])  # index 0 (no answer) is not a span
    end = np.array([9.0, 0.0, 4.0, 3.0, -1.0, 2.0])
    # best pair overall is start 4 with end 2 (invalid: end before start); then 4->5 (7.0); 2->2 is 5.0.
    spans = best_spans(start, end, offsets, n_best=5, max_answer_length=30)
    assert spans[0] == (7.0, 8, 20) and (5.0, 0, 3) in spans
    assert all(s[1] < s[2] for s in spans)
    assert best_spans(start, end, offsets, n_best=5, max_answer_length=1)[0] == (5.0, 0, 3)  # one token at most


def test_postprocess_uses_every_window_and_no_answer_for_v2():
    examples = Dataset.from_list([{"id": "a", "context": "abcdefghij"}])
    features = Dataset.from_list([
        {"example_id": "a", "offset_mapping": [None, [0, 2], [2, 5]]},
        {"example_id": "a", "offset_mapping": [None, [5, 8], [8, 10]]},
    ])
    start = [np.array([0.0, 1.0, 0.0]), np.array([6.0, 3.0, 0.0])]
    end = [np.array([0.0, 0.0, 1.0]), np.array([6.0, 0.0, 2.0])]
    v1 = postprocess_predictions(examples, features, start, end)["a"]
    assert (v1["text"], v1["answer_start"], v1["score"]) == ("fghij", 5, 5.0)  # from the second window
    v2 = postprocess_predictions(examples, features, start, end, version_2=True)["a"]
    assert v2["no_answer_score"] == 0.0 and v2["text"] == "fghij"  # min no-answer score over windows, 0 < 5
    end[0][0] = start[0][0] = 4.0
    end[1][0] = 10.0
    assert postprocess_predictions(examples, features, start, end, version_2=True)["a"]["text"] == ""


def test_expected_f1_selection_picks_the_answer_the_probability_mass_agrees_on():
    context = "The Broncos won the game in Denver."
    examples = Dataset.from_list([{"id": "a", "context": context}])
    # One window: token 1 "The", 2 " Broncos", 3 " won", 4 " the game in", 5 " Denver."; spans of 2 tokens at most.
    # "Denver." is the single best span (start + end logit 3.0), but "Broncos" (2.7), "The Broncos" (2.0) and
    # "Broncos won" (2.4) hold more of the probability together, and "Broncos" is (or overlaps) all three.
    features = Dataset.from_list([{"example_id": "a", "offset_mapping": [
        None, [0, 3], [3, 11], [11, 15], [15, 27], [27, 35]]}])
    start = [np.array([-9.0, 0.5, 1.2, -9.0, -9.0, 1.5])]
    end = [np.array([-9.0, -9.0, 1.5, 1.2, -9.0, 1.5])]
    best = postprocess_predictions(examples, features, start, end, max_answer_length=2)["a"]
    assert best["text"] == "Denver." and best["score"] == 3.0
    chosen = postprocess_predictions(examples, features, start, end, max_answer_length=2,
                                     span_selection="expected_f1")["a"]
    assert chosen["text"] == "Broncos" and chosen["answer_start"] == context.index("Broncos")
    assert chosen["score"] == pytest.approx(2.7)
    assert expected_f1_span(context, [(4.0, 27, 35)]) == (4.0, 27, 35)  # a single candidate is the answer
    with pytest.raises(ValueError, match="unknown span selection 'longest'"):
        postprocess_predictions(examples, features, start, end, span_selection="longest")


def test_squad_metric_equals_hand_computed_scores(published):
    metric = evaluate.load(str(METRIC_DIR))
    examples = load_squad(published).select([0, 3])
    predictions = {"q1": {"text": "the Denver Broncos!"}, "q4": {"text": "in California state"}}
    scores = metric.compute(**metric_inputs(predictions, examples))
    # q1: normalised "denver broncos" equals a reference: EM 1, F1 1. q4: "in california state" vs "california":
    # overlap 1, precision 1/3, recall 1, F1 = 0.5. Means: EM 50, F1 75.
    assert scores == pytest.approx({"exact_match": 50.0, "f1": 75.0})
    v2 = metric.compute(predictions=[{"id": "q3", "prediction_text": ""}, {"id": "q4", "prediction_text": "Ohio"}],
                        references=[{"id": "q3", "answers": {"text": [], "answer_start": []}},
                                    {"id": "q4", "answers": {"text": ["California"], "answer_start": [25]}}])
    assert (v2["exact_match"], v2["no_answer_exact_match"], v2["has_answer_f1"], v2["no_answer_total"]) == \
        (50.0, 100.0, 0.0, 1)


def write_published(path: Path, examples: Dataset) -> str:
    """`examples` as a SQuAD file as published, one article per title."""
    articles: dict[str, list] = {}
    for row in examples:
        answers = [{"text": text, "answer_start": start}
                   for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"])]
        articles.setdefault(row["title"], []).append(
            {"context": row["context"], "qas": [{"id": row["id"], "question": row["question"], "answers": answers}]})
    data = [{"title": title, "paragraphs": paragraphs} for title, paragraphs in articles.items()]
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def finetuned(squad, tokenizer, tmp_path_factory, tiny_sizes) -> Path:
    """`scratchlm-finetune --task qa` for a few steps: a tiny base, jsonl training rows, a published validation file
    with one answer off its answer_start."""
    work = tmp_path_factory.mktemp("qa-run")
    config = ScratchLMConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                             **{**tiny_sizes, "max_position_embeddings": 256})
    torch.manual_seed(0)
    ScratchLMForCausalLM(config).save_pretrained(work / "base")
    tokenizer.save_pretrained(work / "base")
    train = work / "train.jsonl"
    train.write_text("".join(json.dumps({k: row[k] for k in ("id", "title", "context", "question", "answers")}) + "\n"
                             for row in squad.select(range(48))), encoding="utf-8")
    validation = squad.select(range(5000, 5010))
    first = validation[0]["answers"]
    broken = {"text": first["text"][:1], "answer_start": [first["answer_start"][0] + 1]}  # one answer, off by one
    validation = Dataset.from_list([{**validation[0], "answers": broken}, *validation.select(range(1, 10))],
                                   features=validation.features)
    finetune_main([
        "--task", "qa", "--model_name_or_path", str(work / "base"), "--train_files", str(train),
        "--validation_files", write_published(work / "dev.json", validation), "--max_length", "192",
        "--doc_stride", "40",
        "--max_steps", "6", "--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--logging_steps", "1",
        "--evaluate_before_training", "false", "--report_to", "none", "--output_dir", str(work / "qa"),
    ])
    return work / "qa"


def test_finetune_task_qa_writes_metrics_predictions_and_card(finetuned, squad):
    record = json.loads((finetuned / "scratchlm_run.json").read_text())
    losses = list(record["train_losses"].values())
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)
    metrics = json.loads((finetuned / "metrics.json").read_text())
    assert 0 <= metrics["eval_exact_match"] <= metrics["eval_f1"] <= 100
    assert record["qa"]["max_length"] == 192 and record["qa"]["stride"] == 40 and not record["qa"]["version_2"]
    report = record["data_report"]["validation"]
    assert (report["bad_answers"], report["dropped_questions"], report["questions"]) == (1, 1, 9)
    predictions = json.loads((finetuned / "eval_predictions.json").read_text())
    contexts = {row["id"]: row["context"] for row in squad.select(range(5000, 5010))}
    assert len(predictions) == 9 and all(answer in contexts[key] for key, answer in predictions.items())
    card = (finetuned / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and "Exact match" in card and "answer_question" in card
    assert "| window (tokens, question included) | 192 |" in card and "| overlap between windows (tokens) | 40 |" in card
    assert "| span selection | best |" in card and "| unanswerable questions (SQuAD 2.0 style) | no |" in card
    assert "no-answer threshold" not in card  # only SQuAD 2.0-style data decodes "no answer"


def test_answers_are_spans_of_the_context_with_the_recorded_windows(finetuned, squad, tmp_path):
    model = AutoModelForQuestionAnswering.from_pretrained(finetuned)
    tokenizer = AutoTokenizer.from_pretrained(finetuned)
    assert window_settings(model)["max_length"] == 192 and window_settings(model, stride=16)["stride"] == 16
    # The Hub gets no run record (scratchlm-publish uploads the model, tokenizer and card): config.json carries them.
    published = shutil.copytree(finetuned, tmp_path / "published", ignore=shutil.ignore_patterns("scratchlm_run.json"))
    settings = window_settings(AutoModelForQuestionAnswering.from_pretrained(published))
    assert (settings["max_length"], settings["stride"], settings["version_2"]) == (192, 40, False)
    long_context = " ".join(squad["context"][:3])  # several windows
    for selection in ("best", "expected_f1"):
        answer = answer_question(model, tokenizer, "Who won Super Bowl 50?", long_context, span_selection=selection)
        assert answer["answer"] and long_context[answer["start"]:answer["end"]] == answer["answer"]
    predictions = predict_answers(model, tokenizer, squad.select(range(8)), max_length=128, stride=32)
    assert all(p["text"] in squad[i]["context"] for i, p in enumerate(predictions.values()))


def test_qa_command_answers_and_names_bad_flags(finetuned, tmp_path, capsys, caplog):
    output_dir = finetuned
    context = tmp_path / "context.txt"
    context.write_text(CONTEXT, encoding="utf-8")
    qa_main(["--model_name_or_path", str(output_dir), "--question", "Who won?", "--context_file", str(context)])
    printed = json.loads(capsys.readouterr().out)
    assert printed["answer"] in CONTEXT and CONTEXT[printed["start"]:printed["end"]] == printed["answer"]
    # The model given bare, as every inference command takes it, and under its old name (deprecated, still working).
    qa_main([str(output_dir), "--question", "Who won?", "--context_file", str(context)])
    assert json.loads(capsys.readouterr().out) == printed
    with caplog.at_level("WARNING", logger="scratchlm.cli"):
        qa_main(["--model", str(output_dir), "--question", "Who won?", "--context_file", str(context)])
    assert json.loads(capsys.readouterr().out) == printed
    assert "--model is deprecated and will be removed in the next release: use --model_name_or_path" in caplog.text
    with pytest.raises(SystemExit) as exit_info:
        qa_main(["--model_name_or_path", str(output_dir), "--question", "Who won?"])
    assert exit_info.value.code == 2
    assert "exactly one of --context and --context_file" in capsys.readouterr().err


def test_finetune_names_a_repeated_id_in_one_line(finetuned, squad, tmp_path, capsys):
    rows = [{k: row[k] for k in ("id", "title", "context", "question", "answers")} for row in squad.select(range(4))]
    rows[3]["id"] = rows[1]["id"]
    train = _jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(SystemExit) as exit_info:
        finetune_main(["--task", "qa", "--model_name_or_path", str(finetuned.parent / "base"), "--train_files",
                       str(train), "--max_steps", "1", "--report_to", "none", "--output_dir", str(tmp_path / "qa")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{train} row 4 repeats the id {rows[1]['id']!r} of {train} row 2" in err
    assert not (tmp_path / "qa").exists()


def test_a_published_file_without_validation_data_or_ids_holds_out_questions(finetuned, squad, tmp_path):
    """A SQuAD file as published is one table row: the validation fraction is taken from its questions. Its questions
    have no ids here, so they are numbered, and the card says so."""
    examples = squad.select(range(60))
    path = Path(write_published(tmp_path / "train.json", examples))
    published = json.loads(path.read_text(encoding="utf-8"))
    for article in published["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                del qa["id"]
    path.write_text(json.dumps(published), encoding="utf-8")
    output_dir = tmp_path / "qa"
    finetune_main(["--task", "qa", "--model_name_or_path", str(finetuned.parent / "base"), "--train_files", str(path),
                   "--max_length", "192", "--doc_stride", "40", "--max_steps", "2", "--per_device_train_batch_size",
                   "8", "--evaluate_before_training", "false", "--report_to", "none", "--output_dir", str(output_dir)])
    record = json.loads((output_dir / "scratchlm_run.json").read_text())
    assert record["data_report"]["train"]["questions"] == 54 and record["data_report"]["validation"]["questions"] == 6
    assert record["data_report"]["train"]["numbered_ids"] == 60
    predictions = json.loads((output_dir / "eval_predictions.json").read_text())
    assert len(predictions) == 6 and all(key.startswith("row-") for key in predictions)
    assert "numbered row-1, row-2, ... (60 questions had none)" in (output_dir / "README.md").read_text()


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_no_answer_is_null_and_an_empty_context_is_refused(finetuned, tmp_path, capsys):
    model = AutoModelForQuestionAnswering.from_pretrained(finetuned)
    tokenizer = AutoTokenizer.from_pretrained(finetuned)
    nothing = answer_question(model, tokenizer, "Who won?", CONTEXT, max_answer_length=0)  # no span can fit
    assert nothing == {**nothing, "answer": "", "start": -1, "end": -1, "score": None}
    assert _strict_json(json.dumps(nothing, allow_nan=False)) == nothing
    with pytest.raises(ValueError, match="the context is empty"):
        answer_question(model, tokenizer, "Who won?", " \n")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    for argv, message in ((["--context", ""], "--context is empty"),
                          (["--context_file", str(tmp_path / "empty.txt")], f"--context_file {tmp_path}/empty.txt is empty"),
                          (["--context", CONTEXT, "--question", " "], "--question is empty")):
        with pytest.raises(SystemExit) as exit_info:
            qa_main(["--model_name_or_path", str(finetuned), "--question", "Who won?", *argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    qa_main(["--model_name_or_path", str(finetuned), "--question", "Who won?", "--context", CONTEXT])
    assert _strict_json(capsys.readouterr().out)["answer"] in CONTEXT


def test_a_model_that_is_not_a_qa_model_is_refused_before_loading(finetuned, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        qa_main(["--model_name_or_path", str(finetuned.parent / "base"), "--question", "Who won?", "--context", CONTEXT])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("is not a question-answering model (its architectures: ScratchLMForCausalLM): fine-tune one with "
            "scratchlm-finetune --task qa") in err
    with pytest.raises(SystemExit) as exit_info:
        qa_main(["--model_name_or_path", str(tmp_path / "typo"), "--question", "Who won?", "--context", CONTEXT])
    assert exit_info.value.code == 2 and "typo does not exist" in capsys.readouterr().err


def test_answering_loads_no_training_code_and_no_metric():
    code = ("import sys, scratchlm.inference.qa; print(sorted(m for m in sys.modules "
            "if m.startswith('scratchlm.training') or m.split('.')[0] == 'evaluate'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"


def test_loads_without_the_package(finetuned, tokenizer, run_without_package):
    output_dir = finetuned
    model = AutoModelForQuestionAnswering.from_pretrained(output_dir)
    text = "<|bos|>Who won?<|eos|>The Broncos won."
    result = run_without_package(f"""
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer
        model = AutoModelForQuestionAnswering.from_pretrained({str(output_dir)!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(output_dir)!r}, trust_remote_code=True)
        with torch.no_grad():
            output = model(**tokenizer({text!r}, return_tensors="pt"))
        print(type(model).__name__, output.start_logits[0, -1].item())
    """)
    name, value = result.stdout.split()
    assert name == "ScratchLMForQuestionAnswering"
    with torch.no_grad():
        expected = model(**tokenizer(text, return_tensors="pt")).start_logits[0, -1].item()
    assert float(value) == pytest.approx(expected, abs=1e-5)
