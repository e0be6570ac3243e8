"""ScratchLM: build a language model from scratch and fine-tune it, the Hugging Face way.

Importing the package registers the ScratchLM config, models and tokenizer with transformers' Auto classes,
for use in this process, and marks them for remote code, so that `save_pretrained` writes the code files and
`auto_map` that let stock transformers load a saved directory with `trust_remote_code=True`.

The package's own modules, `scratchlm.cli` (the argument layer and the `@command` wrapper of every console command)
and `scratchlm.files` (files written whole or not at all), are the shared base below every stage: each stage
(`modeling`, `tokenization`, `training`, `inference`, `model_cards`) may import them, and they import no stage
(tests/test_layers.py checks it).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from .modeling import (
    ScratchLMConfig,
    ScratchLMForCausalLM,
    ScratchLMForQuestionAnswering,
    ScratchLMForSequenceClassification,
    ScratchLMForTokenClassification,
    ScratchLMModel,
    ScratchLMSeq2SeqConfig,
    ScratchLMSeq2SeqForConditionalGeneration,
    ScratchLMSeq2SeqModel,
)
from .tokenization import ScratchLMTokenizer

__version__ = "0.1.0"

_MODEL_AUTO_CLASSES = {
    AutoModel: ScratchLMModel,
    AutoModelForCausalLM: ScratchLMForCausalLM,
    AutoModelForSequenceClassification: ScratchLMForSequenceClassification,
    AutoModelForTokenClassification: ScratchLMForTokenClassification,
    AutoModelForQuestionAnswering: ScratchLMForQuestionAnswering,
}
_SEQ2SEQ_AUTO_CLASSES = {
    AutoModel: ScratchLMSeq2SeqModel,
    AutoModelForSeq2SeqLM: ScratchLMSeq2SeqForConditionalGeneration,
}


def _register() -> None:
    AutoConfig.register(ScratchLMConfig.model_type, ScratchLMConfig, exist_ok=True)
    ScratchLMConfig.register_for_auto_class()
    for auto_class, model_class in _MODEL_AUTO_CLASSES.items():
        auto_class.register(ScratchLMConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
    AutoTokenizer.register(ScratchLMConfig, tokenizer_class=ScratchLMTokenizer, exist_ok=True)
    ScratchLMTokenizer.register_for_auto_class("AutoTokenizer")
    AutoConfig.register(ScratchLMSeq2SeqConfig.model_type, ScratchLMSeq2SeqConfig, exist_ok=True)
    ScratchLMSeq2SeqConfig.register_for_auto_class()
    for auto_class, model_class in _SEQ2SEQ_AUTO_CLASSES.items():
        auto_class.register(ScratchLMSeq2SeqConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
    AutoTokenizer.register(ScratchLMSeq2SeqConfig, tokenizer_class=ScratchLMTokenizer, exist_ok=True)


_register()

__all__ = [
    "ScratchLMConfig",
    "ScratchLMModel",
    "ScratchLMForCausalLM",
    "ScratchLMForSequenceClassification",
    "ScratchLMForTokenClassification",
    "ScratchLMForQuestionAnswering",
    "ScratchLMSeq2SeqConfig",
    "ScratchLMSeq2SeqModel",
    "ScratchLMSeq2SeqForConditionalGeneration",
    "ScratchLMTokenizer",
]
