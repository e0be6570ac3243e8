"""The one argument layer: config file then overrides, deprecated spellings, the user-error wrapper."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from scratchlm.cli import command, parse_args


@dataclass
class Options:
    output_dir: str = field(metadata={"help": "where"})
    max_steps: int = 5
    overwrite_output: bool = False
    names: list[str] | None = None

    DEPRECATED_FLAGS = {"output": "output_dir", "overwrite": "overwrite_output"}


def test_config_file_first_then_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("output_dir: out\nmax_steps: 100\nnames: [a, b]\n")
    for argv in ([str(config), "--max_steps", "10"], ["--config", str(config), "--max_steps", "10"],
                 ["--max_steps", "10", "--config", str(config)]):
        (options,) = parse_args([Options], argv)
        assert (options.output_dir, options.max_steps, options.names) == ("out", 10, ["a", "b"])
    (options,) = parse_args([Options], [str(config)])
    assert options.max_steps == 100


def test_deprecated_flags_are_accepted_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="scratchlm"):
        (options,) = parse_args([Options], ["--output", "x", "--overwrite"])
    assert (options.output_dir, options.overwrite_output) == ("x", True)
    assert "--output is deprecated" in caplog.text and "use --output_dir" in caplog.text
    (options,) = parse_args([Options], ["--output=y"])
    assert options.output_dir == "y"
    config = tmp_path / "old.json"
    config.write_text('{"output": "z"}')
    (options,) = parse_args([Options], [str(config)])
    assert options.output_dir == "z"


def test_unknown_config_key_is_a_user_error(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("output_dir: out\nmax_stepz: 3\n")

    @command("scratchlm-test")
    def main(argv):
        parse_args([Options], argv)

    with pytest.raises(SystemExit) as exit_info:
        main([str(config)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"scratchlm-test: error: unknown option(s) in {config}: max_stepz"


@dataclass
class Choices:
    span_selection: str = field(default="best", metadata={"choices": ["best", "expected_f1"]})
    learning_rate: float = 1e-3
    packing: bool = False


def user_error(argv, capsys, types=(Options, Choices)) -> str:
    """The whole stderr of a command whose arguments are refused: it must be one line, and the exit status 2."""

    @command("scratchlm-test")
    def main(argv):
        parse_args(list(types), argv)

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_wrong_type_or_choice_on_the_command_line_is_one_line_naming_the_flag(capsys):
    assert user_error(["--output_dir", "x", "--max_steps", "abc"], capsys) == (
        "scratchlm-test: error: argument --max_steps: invalid int value: 'abc'")
    assert user_error(["--output_dir", "x", "--span_selection", "worst"], capsys).startswith(
        "scratchlm-test: error: argument --span_selection: invalid choice: 'worst' (choose from ")
    assert user_error(["--max-steps", "3"], capsys) == (
        "scratchlm-test: error: the following arguments are required: --output_dir")
    assert user_error(["--output_dir", "x", "--max_steps"], capsys) == (
        "scratchlm-test: error: argument --max_steps: expected one argument")


def test_help_still_prints_the_usage_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args([Options, Choices], ["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("text, problem", [
    ("output_dir: out\nmax_steps: [1, 2\nnames: [a]\n", "line 3 column 6: invalid YAML (while parsing a flow "
                                                         "sequence: expected ',' or ']', but got ':')"),
    ("output_dir: 'out\n", "line 2 column 1: invalid YAML (while scanning a quoted scalar: found unexpected end "
                           "of stream)"),
])
def test_broken_yaml_names_the_file_line_and_column(tmp_path, capsys, text, problem):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    assert user_error([str(config)], capsys) == f"scratchlm-test: error: {config} {problem}"


def test_broken_json_or_bytes_name_the_file(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text('{"output_dir": "out",\n "max_steps": }\n')
    assert user_error([str(config)], capsys) == (
        f"scratchlm-test: error: {config} line 2 column 15: invalid JSON (Expecting value)")
    config.write_bytes(b'{"output_dir": "\xff"}')
    assert user_error([str(config)], capsys).startswith(f"scratchlm-test: error: {config}: not UTF-8 text")


@pytest.mark.parametrize("line, problem", [
    ("max_steps: abc", "max_steps: invalid int value: 'abc'"),
    ("max_steps: 2.5", "max_steps: invalid int value: 2.5"),
    ("max_steps: [1, 2]", "max_steps: invalid int value: [1, 2]"),
    ("learning_rate: [1, 2]", "learning_rate: invalid float value: [1, 2]"),
    ("span_selection: worst", "span_selection: invalid choice: 'worst' (choose from best, expected_f1)"),
    ("packing: maybe", "packing: Truthy value expected: got maybe"),
])
def test_a_wrong_type_in_a_config_file_names_the_file_and_the_key(tmp_path, capsys, line, problem):
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: out\n{line}\n")
    error = user_error(["--config", str(config)], capsys)
    assert error.startswith(f"scratchlm-test: error: {config}: {problem}"), error


def test_config_values_are_converted_as_on_the_command_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("output_dir: 2024\nmax_steps: '7'\nnames: one\nlearning_rate: 1e-4\npacking: yes\n"
                      "span_selection: expected_f1\n")
    options, choices = parse_args([Options, Choices], [str(config)])
    assert (options.output_dir, options.max_steps, options.names) == ("2024", 7, ["one"])
    assert (choices.learning_rate, choices.packing, choices.span_selection) == (1e-4, True, "expected_f1")
