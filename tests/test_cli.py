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
