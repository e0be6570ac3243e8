"""ScratchLM encoder–decoder configuration (the original Transformer, built from ScratchLM's blocks).

Its own `model_type`, "scratchlm_seq2seq", rather than a flag of `ScratchLMConfig`: transformers' Auto classes map
one config class to one model class per task, so a separate type is what lets `AutoModelForSeq2SeqLM` and
`AutoModel` pick the encoder–decoder while `AutoModelForCausalLM` keeps picking the decoder; it also keeps the
decoder's config free of fields that mean nothing there (encoder depth, `decoder_start_token_id`), and lets a
command tell a seq2seq checkpoint from a decoder-only one by its type alone.

This file travels with saved models as remote code: it imports only transformers (and its sibling config).
"""

from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters

from .configuration_scratchlm import (
    ScratchLMConfig,
    attention_parameters,
    check_architecture,
    fill_attention_defaults,
    mlp_parameters,
)

# Named shapes. `tiny` is for tests; `small` (about 9.6 M parameters with an 8k vocabulary) is the size of the
# small Multi30k Transformers and trains on a CPU; `base` is the original Transformer-base (d_model 512, 6 + 6
# layers, 8 heads; the SwiGLU width 1408 ≈ 2/3 of its 2048 keeps the MLP's parameter count). Exact parameter
# counts are `ScratchLMSeq2SeqConfig.num_parameters`, checked against instantiated models by the tests.
SEQ2SEQ_PRESETS = {
    "tiny": dict(
        vocab_size=4096, hidden_size=128, intermediate_size=352, encoder_layers=2, decoder_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    ),
    "small": dict(
        vocab_size=8192, hidden_size=256, intermediate_size=704, encoder_layers=4, decoder_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
    ),
    "base": dict(
        vocab_size=32768, hidden_size=512, intermediate_size=1408, encoder_layers=6, decoder_layers=6,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024,
    ),
}


class ScratchLMSeq2SeqConfig(PreTrainedConfig):
    r"""
    Configuration of a ScratchLM encoder–decoder: a bidirectional encoder and a causal decoder with
    cross-attention, both of pre-norm blocks with RMSNorm, rotary self-attention with grouped key/value heads
    and a SwiGLU MLP. Source, target and LM head share one vocabulary and one embedding matrix.

    Args:
        vocab_size: number of token ids (source and target share them).
        hidden_size: width of the residual stream of both stacks.
        intermediate_size: width of the SwiGLU MLP.
        encoder_layers: number of encoder blocks.
        decoder_layers: number of decoder blocks (also readable as `num_hidden_layers`, which the KV cache uses).
        num_attention_heads: query heads of every attention (self- and cross-).
        num_key_value_heads: key/value heads (grouped-query attention); defaults to `num_attention_heads`.
        head_dim: width of one head; defaults to `hidden_size // num_attention_heads`.
        max_position_embeddings: the longest source and the longest target.
        rope_parameters: `rope_type`, `rope_theta` and scaling keys of the rotary self-attention, as read by
            `transformers.modeling_rope_utils`. Cross-attention has no positions.
        rms_norm_eps: epsilon of every RMSNorm.
        hidden_dropout: dropout on the embeddings and on each residual branch.
        attention_dropout: dropout on the attention probabilities.
        initializer_range: standard deviation of the normal initialisation.
        tie_word_embeddings: the LM head is the shared embedding matrix (False gives it its own weights; the
            encoder and decoder always share the input embedding).
        use_qk_norm: RMSNorm on each query and key head of the self-attention before the rotary embedding.
        attention_bias / mlp_bias: biases in the attention and MLP projections.
        use_cache: return a KV cache from forward (generation).
        pad_token_id, bos_token_id, eos_token_id: the tokenizer's special ids.
        decoder_start_token_id: the first decoder input; `labels` are shifted right behind it.

    Example:
    ```python
    >>> from scratchlm.modeling import ScratchLMSeq2SeqConfig, ScratchLMSeq2SeqForConditionalGeneration
    >>> config = ScratchLMSeq2SeqConfig.from_preset("small", pad_token_id=2, decoder_start_token_id=0)
    >>> model = ScratchLMSeq2SeqForConditionalGeneration(config)
    ```
    """

    model_type = "scratchlm_seq2seq"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {"num_hidden_layers": "decoder_layers"}

    vocab_size: int = 8192
    hidden_size: int = 256
    intermediate_size: int = 704
    encoder_layers: int = 4
    decoder_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 512
    rope_parameters: RopeParameters | dict | None = None
    rms_norm_eps: float = 1e-6
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    use_qk_norm: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        fill_attention_defaults(self, kwargs)
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.bos_token_id
        super().__post_init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        """Raise a ValueError naming the first inconsistent field; runs on every construction and load."""
        check_architecture(self, ("encoder_layers", "decoder_layers"))
        if not self.is_encoder_decoder:
            raise ValueError(f"{type(self).__name__}.is_encoder_decoder must be True: this is an encoder–decoder model")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ScratchLMSeq2SeqConfig":
        """A config of one of the named shapes in `SEQ2SEQ_PRESETS`, with any field overridden."""
        if name not in SEQ2SEQ_PRESETS:
            raise ValueError(f"unknown ScratchLM seq2seq preset {name!r} (known: {', '.join(SEQ2SEQ_PRESETS)})")
        return cls(**{**SEQ2SEQ_PRESETS[name], **overrides})

    # The longest source or target the model was trained for (RoPE scaling included), as in the decoder's config.
    max_sequence_length = ScratchLMConfig.max_sequence_length

    @property
    def num_parameters(self) -> int:
        """Exact number of parameters of `ScratchLMSeq2SeqForConditionalGeneration` built from this config."""
        h, mlp = self.hidden_size, mlp_parameters(self)
        self_attention = attention_parameters(self, self.use_qk_norm)
        encoder_layer = self_attention + mlp + 2 * h
        decoder_layer = self_attention + attention_parameters(self, qk_norm=False) + mlp + 3 * h  # + cross-attention
        layers = self.encoder_layers * encoder_layer + self.decoder_layers * decoder_layer
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return self.vocab_size * h + layers + 2 * h + head  # 2 * h: the final norm of each stack


__all__ = ["ScratchLMSeq2SeqConfig", "SEQ2SEQ_PRESETS"]
