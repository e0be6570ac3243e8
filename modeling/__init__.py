"""The ScratchLM model: configuration, decoder and task heads, written from scratch as transformers classes."""

from .configuration_scratchlm import PRESETS, ScratchLMConfig
from .modeling_scratchlm import (
    ScratchLMForCausalLM,
    ScratchLMForQuestionAnswering,
    ScratchLMForSequenceClassification,
    ScratchLMForTokenClassification,
    ScratchLMModel,
    ScratchLMPreTrainedModel,
)

__all__ = [
    "PRESETS",
    "ScratchLMConfig",
    "ScratchLMPreTrainedModel",
    "ScratchLMModel",
    "ScratchLMForCausalLM",
    "ScratchLMForSequenceClassification",
    "ScratchLMForTokenClassification",
    "ScratchLMForQuestionAnswering",
]
