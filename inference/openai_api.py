"""The OpenAI request shapes `scratchlm-serve` accepts, as pydantic models.

Every field of OpenAI's chat and completions requests is either served, accepted only at the value that means
"not used" (`n: 1`, `logprobs: false`, `tools: []`, ...), or unknown: a request that asks for something the server
does not do gets a 4xx naming the field, never a reply that silently ignores it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_SEQUENCES = 4  # OpenAI's limit


class Unsupported(ValueError):
    """A field set to a value the server does not serve; `param` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


class SamplingRequest(BaseModel):
    """What both endpoints share: the model, the length, sampling and stop options."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = Field(default=None, validate_default=True)  # becomes a list
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None  # an end-user id for abuse monitoring: nothing to do here
    # Fields accepted only at the value that leaves them unused.
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def stop_sequences(cls, stop):
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}")
        if any(not text for text in stops):
            raise ValueError("a stop sequence cannot be empty")
        return stops

    @field_validator("stream_options")
    @classmethod
    def known_stream_options(cls, options):
        unknown = set(options or {}) - {"include_usage"}
        if unknown:
            raise ValueError(f"unsupported stream option(s): {', '.join(sorted(unknown))}")
        return options

    @model_validator(mode="after")
    def only_served_values(self):
        unused = {"n": (self.n, 1), "presence_penalty": (self.presence_penalty, 0.0),
                  "frequency_penalty": (self.frequency_penalty, 0.0)}
        for name, (value, neutral) in unused.items():
            if value != neutral:
                raise Unsupported(name, f"only {neutral} is supported, got {value}")
        if self.logit_bias:
            raise Unsupported("logit_bias", "is not supported")
        if self.stream_options and not self.stream:
            raise Unsupported("stream_options", "only allowed with stream: true")
        return self

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    name: str | None = None

    @field_validator("content")
    @classmethod
    def text_only(cls, content):
        if isinstance(content, str):
            return content
        parts = []
        for part in content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("only text content parts ({'type': 'text', 'text': ...}) are supported")
            parts.append(part["text"])
        return "".join(parts)


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def only_served_chat_values(self):
        if self.logprobs or self.top_logprobs:
            raise Unsupported("logprobs", "log probabilities are not supported")
        if self.tools or self.tool_choice not in (None, "none"):
            raise Unsupported("tools", "tool calls are not supported")
        if self.response_format and self.response_format.get("type") != "text":
            raise Unsupported("response_format", "only {'type': 'text'} is supported")
        if self.max_completion_tokens is not None:
            if self.max_tokens is not None and self.max_tokens != self.max_completion_tokens:
                raise Unsupported("max_completion_tokens", "differs from max_tokens: give one")
            self.max_tokens = self.max_completion_tokens
        return self

    def chat_messages(self) -> list[dict[str, str]]:
        """The messages as the chat template takes them (OpenAI's `developer` role is the system prompt)."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in self.messages]


class CompletionRequest(SamplingRequest):
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def one_prompt(cls, prompt):
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise ValueError(f"one prompt per request is supported, got a list of {len(prompt)}")
            prompt = prompt[0]
        return prompt

    @model_validator(mode="after")
    def only_served_completion_values(self):
        if self.echo:
            raise Unsupported("echo", "is not supported")
        if self.logprobs is not None:
            raise Unsupported("logprobs", "log probabilities are not supported")
        if self.best_of not in (None, 1):
            raise Unsupported("best_of", f"only 1 is supported, got {self.best_of}")
        if self.suffix:
            raise Unsupported("suffix", "insertion is not supported")
        return self
