"""ScratchLM encoder–decoder configuration (the original Transformer, built from ScratchLM's blocks).

Its own `model_type`, "scratchlm_seq2seq", rather than a flag of `ScratchLMConfig`: transformers' Auto classes map
one config class to one model class per task, so a separate type is what lets `AutoModelForSeq2SeqLM` and
`AutoModel` pick the encoder–decoder while `AutoModelForCausalLM` keeps picking the decoder; it also keeps the
decoder's config free of fields that mean nothing there (encoder depth, `decoder_start_token_id`), and lets a
command tell a seq2seq checkpoint from a decoder-only one by its type alone.

This file travels with saved models as remote code: it imports only transformers (and its sibling config).
"""

from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, RopeParameters

from .configuration_scratchlm import ATTENTION_BACKENDS, ScratchLMConfig

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
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None and isinstance(self.num_attention_heads, int) and self.num_attention_heads > 0:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.rope_parameters is None and "rope_theta" not in kwargs and "rope_scaling" not in kwargs:
            self.rope_parameters = {"rope_type": "default", "rope_theta": 10_000.0}
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.bos_token_id
        super().__post_init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        """Raise a ValueError naming the first inconsistent field; runs on every construction and load."""
        name_of = type(self).__name__
        for name in (
            "vocab_size", "hidden_size", "intermediate_size", "encoder_layers", "decoder_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name_of}.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"{name_of}.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"{name_of}.num_attention_heads ({self.num_attention_heads}) must be divisible by "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2 != 0:
            raise ValueError(f"{name_of}.head_dim ({self.head_dim}) must be even for rotary embeddings")
        for name in ("hidden_dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name_of}.{name} must be in [0, 1), got {value!r}")
        if not self.rms_norm_eps > 0:
            raise ValueError(f"{name_of}.rms_norm_eps must be positive, got {self.rms_norm_eps}")
        if self.hidden_act != "silu":
            raise ValueError(f"{name_of}.hidden_act must be 'silu' (SwiGLU), got {self.hidden_act!r}")
        for name in ("pad_token_id", "bos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and 0 <= value < self.vocab_size):
                raise ValueError(f"{name_of}.{name} ({value!r}) must be a token id in [0, {self.vocab_size})")
        eos = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        for value in eos:
            if value is not None and not (isinstance(value, int) and 0 <= value < self.vocab_size):
                raise ValueError(f"{name_of}.eos_token_id ({value!r}) must be a token id in [0, {self.vocab_size})")
        if not self.is_encoder_decoder:
            raise ValueError(f"{name_of}.is_encoder_decoder must be True: this is an encoder–decoder model")
        rope_type = (self.rope_parameters or {}).get("rope_type", "default")
        if rope_type != "default" and rope_type not in ROPE_INIT_FUNCTIONS:
            known = ", ".join(["default", *sorted(ROPE_INIT_FUNCTIONS)])
            raise ValueError(f"{name_of}.rope_parameters: unknown rope_type {rope_type!r} (known: {known})")
        backend = self._attn_implementation
        if backend is not None and backend not in ATTENTION_BACKENDS and "/" not in backend:
            raise ValueError(
                f"{name_of}: unknown attention backend {backend!r} (known: {', '.join(ATTENTION_BACKENDS)})"
            )

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
        h, d, q, kv = self.hidden_size, self.head_dim, self.num_attention_heads, self.num_key_value_heads
        attention = h * d * (q + 2 * kv) + q * d * h + (d * (q + 2 * kv) + h if self.attention_bias else 0)
        self_attention = attention + (2 * d if self.use_qk_norm else 0)
        mlp = 3 * h * self.intermediate_size + (2 * self.intermediate_size + h if self.mlp_bias else 0)
        encoder_layer = self_attention + mlp + 2 * h
        decoder_layer = self_attention + attention + mlp + 3 * h
        embeddings = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        final_norms = 2 * h
        return embeddings + self.encoder_layers * encoder_layer + self.decoder_layers * decoder_layer + final_norms + head


__all__ = ["ScratchLMSeq2SeqConfig", "SEQ2SEQ_PRESETS"]
