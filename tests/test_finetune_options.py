"""scratchlm-finetune's options per task: `--task X --help` lists X's options and the shared ones, no other task's
(nor LoRA's without --method lora); an option of another task, as a flag or in a config file, is refused in one
line naming the task it belongs to."""

from __future__ import annotations

import dataclasses
import re

import pytest

from scratchlm.training import finetune as ft
from scratchlm.training.lora import LoraArguments
from scratchlm.training.tasks import TASKS


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        ft.main(list(argv))
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def listed(text: str, name: str) -> bool:
    return re.search(rf"--{name}\b", text) is not None


def own_options(task) -> set[str]:
    return {option.name for option in dataclasses.fields(task.arguments)}


def trainer_options(task) -> set[str]:
    return {option.name for option in dataclasses.fields(task.training_arguments)}


SHARED = ("model_name_or_path", "train_files", "max_length", "task", "method", "test_files", "output_dir",
          "learning_rate")


@pytest.mark.parametrize("name", list(TASKS))
def test_task_help_lists_that_tasks_options_only(name, capsys):
    task = TASKS[name]
    text = help_text(capsys, "--task", name, "--help")
    assert all(listed(text, option) for option in SHARED), text
    assert all(listed(text, option) for option in own_options(task) | trainer_options(task))
    for other_name, other in TASKS.items():
        foreign = (own_options(other) | trainer_options(other)) - own_options(task) - trainer_options(task)
        assert not [option for option in foreign if listed(text, option)], other_name
    assert listed(text, "num_samples") == task.answers_samples  # only the tasks that answer sample prompts
    assert not any(listed(text, option.name) for option in dataclasses.fields(LoraArguments))


def test_the_tasks_differ_where_the_issue_saw_them_mixed(capsys):
    sft = help_text(capsys, "--task", "sft", "--help")
    assert listed(sft, "packing") and listed(sft, "system_prompt")
    assert not any(listed(sft, name) for name in ("doc_stride", "n_best", "generation_num_beams", "beta",
                                                   "class_names", "source_column", "predict_with_generate"))
    seq2seq = help_text(capsys, "--task", "seq2seq", "--help")
    assert listed(seq2seq, "generation_num_beams") and listed(seq2seq, "max_target_length")
    assert not listed(seq2seq, "doc_stride") and not listed(seq2seq, "packing")


def test_lora_options_come_with_method_lora(capsys):
    text = help_text(capsys, "--task", "qa", "--method", "lora", "--help")
    assert all(listed(text, option.name) for option in dataclasses.fields(LoraArguments))
    assert listed(text, "doc_stride") and not listed(text, "packing")


def test_help_without_a_task_names_the_tasks_and_how_to_see_their_options(capsys):
    text = help_text(capsys, "--help")
    assert all(name in text for name in TASKS)
    assert "--task X --help" in " ".join(text.split())
    assert listed(text, "train_files") and not listed(text, "doc_stride") and not listed(text, "lora_r")


def test_a_config_files_task_picks_the_groups(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("task: qa\nmethod: lora\ndoc_stride: 32\n")
    text = help_text(capsys, str(config), "--help")
    assert listed(text, "doc_stride") and listed(text, "lora_r") and not listed(text, "packing")
    # the command line's --task wins over the file's
    config.write_text("task: qa\n")
    assert listed(help_text(capsys, "--config", str(config), "--task", "sft", "--help"), "packing")


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "sft", "--doc_stride", "32"], "--doc_stride is an option of --task qa, not of --task sft"),
    (["--task", "classification", "--generation_num_beams=4"],
     "--generation_num_beams is an option of --task seq2seq, not of --task classification"),
    (["--task", "qa", "--system_prompt", "Be brief."],
     "--system_prompt is an option of --task sft and --task dpo, not of --task qa"),
    (["--task", "sft", "--merge"], "--merge is an option of --method lora, not of --method full"),
])
def test_an_option_of_another_task_is_refused_in_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ft.main([*argv, "--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"scratchlm-finetune: error: {message}"


def test_an_option_of_another_task_in_a_config_file_is_refused_naming_the_file(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("task: sft\nbeta: 0.2\n")
    with pytest.raises(SystemExit):
        ft.main([str(config), "--output_dir", str(tmp_path / "out")])
    assert capsys.readouterr().err.strip() == (f"scratchlm-finetune: error: {config}: beta is an option of --task dpo, "
                                               "not of --task sft")


def test_each_task_gets_its_own_options(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("task: qa\nmax_question_tokens: 32\n")
    _, _, finetune_args, training_args, task, lora_args, sample_args = ft.parse_finetune_args(
        [str(config), "--doc_stride", "40", "--output_dir", str(tmp_path / "out")])
    assert (finetune_args.task, task.name, lora_args, sample_args) == ("qa", "qa", None, None)
    assert (task.options.doc_stride, task.options.max_question_tokens) == (40, 32)
    settings = task.options.settings(max_length=192)
    assert (settings.stride, settings.max_question_tokens, settings.n_best) == (40, 32, 20)
    _, _, _, training_args, task, lora_args, _ = ft.parse_finetune_args(
        ["--task", "seq2seq", "--method", "lora", "--lora_r", "4", "--generation_num_beams", "3",
         "--output_dir", str(tmp_path / "out")])
    assert (training_args.generation_num_beams, lora_args.lora_r, task.options.train_on) == (3, 4, "each")
