"""Serve a ScratchLM model over the OpenAI API with transformers' own server: `scratchlm-serve`.

    scratchlm-serve MODEL_DIR [--host 127.0.0.1] [--port 8000] [--device auto] [--dtype auto]

This is `transformers serve MODEL_DIR --trust-remote-code` (FastAPI + uvicorn; `pip install "transformers[serving]"`)
with one fix: transformers 5.24's model manager finds the model class with `getattr(transformers,
config.architectures[0])`, which fails for a class that transformers does not ship. The command makes ScratchLM's
classes attributes of the `transformers` module in this process, then starts the stock server, pinned to the one
model, and with the chat request's fields checked against the OpenAI types it declares (transformers checks only
the field names: `"messages": "hi"` was a 500 "Internal Server Error", it is now a 422 naming the field). Endpoints: `POST /v1/chat/completions` (streamed as server-sent events with `"stream": true`),
`POST /v1/completions`, `POST /v1/responses`, `GET /v1/models`, `GET /health`.
"""

from __future__ import annotations

import collections.abc
import json
import logging
import typing
from dataclasses import dataclass, field
from pathlib import Path

import transformers

from scratchlm.cli import command, move_bare_argument, parse_args

from .model_dir import check_model_dir

logger = logging.getLogger(__name__)

SERVING_EXTRAS_MISSING = 'scratchlm-serve needs transformers\' serving extras: pip install "transformers[serving]"'


@dataclass
class ServeArguments:
    model_dir: str = field(metadata={"help": "The ScratchLM model directory to serve."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0: every interface)."})
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    device: str = field(default="auto", metadata={"help": "Device for inference: auto, cpu, cuda, cuda:1, mps."})
    dtype: str = field(default="auto", metadata={"help": "Weights dtype: auto (as saved), float32, bfloat16, ..."})
    seed: int | None = field(default=None, metadata={"help": "Seed for sampling, when a request gives none."})
    enable_cors: bool = field(default=False, metadata={"help": "Allow cross-origin requests (browser apps)."})
    log_level: str = field(default="warning", metadata={"help": "transformers' log level in the server."})


def make_architectures_reachable(model_dir: Path) -> list[str]:
    """Make each ScratchLM class named in the model's config.json an attribute of `transformers` (what the serving
    model manager looks the class up in); returns the names."""
    from scratchlm import modeling

    architectures = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    if not architectures:
        raise ValueError(f"{model_dir}/config.json names no architectures: cannot tell which model class to serve")
    for name in architectures:
        if hasattr(transformers, name):
            continue
        if not hasattr(modeling, name):
            raise ValueError(f"{model_dir}/config.json names {name!r}, which is neither a transformers nor a ScratchLM class")
        setattr(transformers, name, getattr(modeling, name))
    return architectures


def request_errors(params_class, body: dict) -> list[str]:
    """What is wrong in a request `body`, field by field, checked with pydantic against the TypedDict
    `params_class` (OpenAI's request type, as extended by transformers)."""
    from pydantic import TypeAdapter, ValidationError

    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return ["messages: a non-empty list of {role, content} messages is required"]
    if not isinstance(body.get("stream", False), bool):
        return ["stream: must be true or false"]
    hints = typing.get_type_hints(params_class)
    errors = []
    for key, value in body.items():
        if key in ("model", "stream") or key not in hints:
            continue  # one model is served; unexpected names are transformers' own check
        annotation = hints[key]
        if typing.get_origin(annotation) is collections.abc.Iterable:  # validated lazily by pydantic: use a list
            annotation = list[typing.get_args(annotation)]
        try:
            TypeAdapter(annotation).validate_python(value)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in (key, *first["loc"]))
            errors.append(f"{where}: {first['msg']}")
    return errors


def use_validating_chat_handler() -> None:
    """Make transformers' server build its chat endpoint with `request_errors` as the first check: a 422 naming
    the bad field instead of an exception deep in the handler."""
    from fastapi import HTTPException
    from transformers.cli.serving import chat_completion

    stock = chat_completion.ChatCompletionHandler
    if getattr(stock, "checks_request_types", False):
        return

    class ValidatingChatCompletionHandler(stock):
        checks_request_types = True

        def _validate_request(self, body: dict) -> None:
            super()._validate_request(body)
            if errors := request_errors(self._valid_params_class, body):
                raise HTTPException(status_code=422, detail="; ".join(errors))

    chat_completion.ChatCompletionHandler = ValidatingChatCompletionHandler


def start_server(args: ServeArguments, non_blocking: bool = False):
    """The transformers `Serve` object serving `args.model_dir`; with `non_blocking` its server runs in a thread
    (stop it with `.kill_server()`), otherwise this returns when the server stops."""
    from transformers.cli.serve import Serve
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        raise ModuleNotFoundError(SERVING_EXTRAS_MISSING)
    model_dir = check_model_dir(args.model_dir)
    make_architectures_reachable(model_dir)
    use_validating_chat_handler()
    logger.info("serving %s on http://%s:%d/v1", model_dir, args.host, args.port)
    return Serve(
        force_model=str(model_dir), trust_remote_code=True, host=args.host, port=args.port, device=args.device,
        dtype=args.dtype, default_seed=args.seed, enable_cors=args.enable_cors, log_level=args.log_level,
        non_blocking=non_blocking,
    )  # fmt: skip


@command("scratchlm-serve")
def main(argv=None) -> None:
    (args,) = parse_args([ServeArguments], move_bare_argument(argv), description=__doc__.split("\n\n")[0])
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():  # one line, not a traceback: a missing install is the user's to fix
        raise OSError(SERVING_EXTRAS_MISSING)
    start_server(args)
