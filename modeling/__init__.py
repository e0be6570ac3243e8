"""The ScratchLM models: configurations, the decoder and its task heads, the encoder–decoder, as transformers classes."""

from .configuration_scratchlm import PRESETS, ScratchLMConfig
from .configuration_scratchlm_seq2seq import SEQ2SEQ_PRESETS, ScratchLMSeq2SeqConfig
from .initialization_seq2seq import init_seq2seq_model
from .modeling_scratchlm import (
    ScratchLMForCausalLM,
    ScratchLMForQuestionAnswering,
    ScratchLMForSequenceClassification,
    ScratchLMForTokenClassification,
    ScratchLMModel,
    ScratchLMPreTrainedModel,
)
from .modeling_scratchlm_seq2seq import (
    ScratchLMSeq2SeqForConditionalGeneration,
    ScratchLMSeq2SeqModel,
    ScratchLMSeq2SeqPreTrainedModel,
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
    "SEQ2SEQ_PRESETS",
    "ScratchLMSeq2SeqConfig",
    "ScratchLMSeq2SeqPreTrainedModel",
    "ScratchLMSeq2SeqModel",
    "ScratchLMSeq2SeqForConditionalGeneration",
    "init_seq2seq_model",
]
