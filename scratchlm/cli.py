"""The one argument layer every `scratchlm-*` command uses.

`HfArgumentParser` over the command's dataclasses, with an optional YAML or JSON config file
(`--config run.yaml`, or the file as the only argument) whose values become the defaults that
command-line options then override; and `command`, the wrapper that turns every console command's user
errors into one clear line and exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The option values of a YAML or JSON config file; broken syntax is an error naming the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.suffix not in CONFIG_SUFFIXES:
        raise ValueError(f"config file must be .yaml, .yml or .json, got {path.name}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None
    if path.suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {error.lineno} column {error.colno}: invalid JSON ({error.msg})") from None
    else:
        import yaml

        try:
            values = yaml.safe_load(text) or {}
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problem = f"{error.context}: {error.problem}" if error.context else error.problem
            raise ValueError(f"{path}{where}: invalid YAML ({problem})") from None
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: invalid YAML ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of option names to values")
    return values


logger = logging.getLogger(__name__)


def _split_config_argument(argv: list[str]) -> tuple[str | None, list[str]]:
    """(config file, other arguments): the file comes first and bare (`cmd run.yaml --flag x`) or as `--config`."""
    config = None
    if argv and argv[0].endswith(CONFIG_SUFFIXES) and not argv[0].startswith("-"):
        config, argv = argv[0], argv[1:]
    rest = []
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            config = next(it, None)
            if config is None:
                raise ValueError("--config needs a file path")
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return config, rest


def deprecated_flags(dataclass_types: Sequence[type]) -> dict[str, str]:
    """Old option name -> new one, from each dataclass's `DEPRECATED_FLAGS = {"old": "new"}` class attribute."""
    renames = {}
    for dataclass_type in dataclass_types:
        renames.update(getattr(dataclass_type, "DEPRECATED_FLAGS", {}))
    return renames


def _warn_deprecated(old: str, new: str) -> None:
    logger.warning("--%s is deprecated and will be removed in the next release: use --%s", old, new)


def _rename_deprecated_arguments(argv: list[str], renames: dict[str, str]) -> list[str]:
    renamed = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        old = name[2:].replace("-", "_") if name.startswith("--") else None
        if old in renames:
            _warn_deprecated(old, renames[old])
            arg = f"--{renames[old]}{equals}{value}"
        renamed.append(arg)
    return renamed


def _rename_deprecated_keys(values: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    renamed = {}
    for key, value in values.items():
        if key in renames:
            _warn_deprecated(key, renames[key])
            key = renames[key]
        renamed[key] = value
    return renamed


def move_bare_argument(argv: Sequence[str] | None, name: str = "model_name_or_path") -> list[str]:
    """`cmd VALUE ...` -> `cmd --NAME VALUE ...` for commands whose main argument may be given bare, first
    (`scratchlm-chat MODEL_DIR`: the model, `--model_name_or_path` in every command that loads one); a bare config
    file stays where it is, an explicit --NAME wins."""
    argv = list(sys.argv[1:] if argv is None else argv)
    spellings = (f"--{name}", f"--{name.replace('_', '-')}")
    if any(arg in spellings or arg.startswith(tuple(f"{s}=" for s in spellings)) for arg in argv):
        return argv
    for position, arg in enumerate(argv[:2]):
        if arg.startswith("-"):
            break
        if not (position == 0 and arg.endswith(CONFIG_SUFFIXES)):
            return [*argv[:position], spellings[0], arg, *argv[position + 1 :]]
    return argv


class CommandArgumentParser(HfArgumentParser):
    """`HfArgumentParser` whose parse errors are user errors (one line through `command`), not a usage dump."""

    def error(self, message: str):
        # argparse names an option by all its spellings ("--max_steps/--max-steps"): the first one is enough.
        raise ValueError(re.sub(r"(--\w+)(?:/--[\w-]+)+", r"\1", message))


def _config_value(action: argparse.Action, value: Any, path: str) -> Any:
    """A config file's `value` for the option of `action`, converted and checked as the same value on the command line
    would be (argparse converts only string defaults, and checks the choices of none)."""
    if value is None or action.type is None:
        return value
    many = action.nargs in ("+", "*")
    items = value if many and isinstance(value, list) else [value]
    try:
        converted = [_convert(action.type, item) for item in items]
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"{path}: {action.dest}: {error}") from None
    except (TypeError, ValueError):
        name = getattr(action.type, "__name__", "")
        raise ValueError(f"{path}: {action.dest}: invalid {name} value: {value!r}") from None
    for item, result in zip(items, converted):
        if action.choices is not None and result not in action.choices:
            raise ValueError(f"{path}: {action.dest}: invalid choice: {item!r} (choose from "
                             f"{', '.join(map(str, action.choices))})")
    return converted if many else converted[0]


def _convert(type_function, item: Any) -> Any:
    if isinstance(item, str):
        return type_function(item)
    if type_function is str:  # a mapping stays one: `dict | str` fields (lr_scheduler_kwargs) parse as str
        return item if isinstance(item, (dict, list)) else str(item)
    if isinstance(item, (dict, list)):
        raise TypeError(f"a {type(item).__name__} where one value is expected")
    return type_function(str(item))  # YAML's 3 or true, read as the command line would read "3" or "True"


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None, description: str | None = None):
    """Parse `argv` (default: sys.argv[1:]) into one instance of each dataclass, in order.

    A YAML/JSON config file (first and bare, or `--config FILE`) gives defaults that the other options override.
    A dataclass may declare `DEPRECATED_FLAGS = {"old_name": "new_name"}`: the old spelling is still accepted, on
    the command line and in config files, with a deprecation warning.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    renames = deprecated_flags(dataclass_types)
    parser = CommandArgumentParser(tuple(dataclass_types), description=description)
    parser.add_argument("--config", help="YAML or JSON file of option values; command-line options override it")
    config_path, argv = _split_config_argument(argv)
    argv = _rename_deprecated_arguments(argv, renames)
    if config_path is not None:
        values = _rename_deprecated_keys(load_config_file(config_path), renames)
        options = {}
        for action in parser._actions:
            options.setdefault(action.dest, action)  # an option comes before its --no_x complement (same dest)
        unknown = sorted(set(values) - set(options))
        if unknown:
            raise ValueError(f"unknown option(s) in {config_path}: {', '.join(unknown)}")
        values = {key: _config_value(options[key], value, config_path) for key, value in values.items()}
        for action in parser._actions:  # every action of an option: a bool has --x and --no_x, one dest
            if action.dest in values:
                action.required = False
                action.default = values[action.dest]
    *parsed, _config = parser.parse_args_into_dataclasses(args=argv)
    return tuple(parsed)


# Errors a user can fix (a bad flag, file, row or value): one line naming the problem, exit status 2.
USER_ERRORS = (ValueError, OSError, KeyError, UnicodeError)
_TRACEBACK_ENV = "SCRATCHLM_TRACEBACK"


def setup_logging(verbosity: int = logging.INFO) -> None:
    """Routine progress at INFO for our loggers, WARNING and up for everything else (libraries stay quiet)."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("scratchlm").setLevel(verbosity)
    logging.getLogger("__main__").setLevel(verbosity)  # a command run as `python -m scratchlm.training.pretrain`
    if not sys.stderr.isatty():
        disable_progress_bars()


def disable_progress_bars() -> None:
    """No tqdm bars from datasets, transformers or huggingface_hub: written to a pipe (a log file, CI) they become
    blank or run-together lines. The training commands log one progress line per logging step instead
    (`scratchlm.training.callbacks.ProgressLogCallback`)."""
    import datasets
    import huggingface_hub
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def command(name: str):
    """Decorator turning `function(argv)` into a console entry point `main(argv=None)`.

    A user error (a `ValueError`, `OSError`, ... raised with a clear message) prints one line
    `NAME: error: MESSAGE` on stderr and exits with status 2; set SCRATCHLM_TRACEBACK=1 to see the traceback.
    Any other exception is a bug and keeps its traceback.
    """

    def decorate(function):
        @functools.wraps(function)
        def main(argv: Sequence[str] | None = None):
            setup_logging()
            try:
                return function(argv)
            except USER_ERRORS as error:
                if os.environ.get(_TRACEBACK_ENV):
                    raise
                message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
                message = " ".join(line.strip() for line in message.splitlines() if line.strip())  # one line
                print(f"{name}: error: {message}", file=sys.stderr)
                raise SystemExit(2) from None

        return main

    return decorate
