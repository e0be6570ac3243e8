"""ScratchLM configuration.

This file travels with saved models as remote code: it imports only transformers (and, through it, torch).
"""

from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, RopeParameters

# Attention backends this model runs on (the kernels hub's "org/repo" names are accepted as well).
ATTENTION_BACKENDS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")

# Named shapes. `tiny` is for tests, `small` trains on a CPU, the rest are the usual GPT/Llama sizes.
# Exact parameter counts (tied embeddings, the preset's vocabulary) are in `PRESET_PARAMETERS` below and
# checked against instantiated models by the test suite.
PRESETS = {
    "tiny": dict(
        vocab_size=4096, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    ),
    "small": dict(
        vocab_size=8192, hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
        num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=1024,
    ),
    "125m": dict(
        vocab_size=32768, hidden_size=768, intermediate_size=2560, num_hidden_layers=12,
        num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=2048,
    ),
    "350m": dict(
        vocab_size=32768, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
        num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
    ),
    "1b": dict(
        vocab_size=32768, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048,
    ),
}


class ScratchLMConfig(PreTrainedConfig):
    r"""
    Configuration of a ScratchLM decoder: pre-norm blocks with RMSNorm, rotary position embeddings,
    grouped-query attention and a SwiGLU MLP.

    Args:
        vocab_size: number of token ids.
        hidden_size: width of the residual stream.
        intermediate_size: width of the SwiGLU MLP.
        num_hidden_layers: number of decoder blocks.
        num_attention_heads: query heads per block.
        num_key_value_heads: key/value heads (grouped-query attention); defaults to `num_attention_heads`.
        head_dim: width of one head; defaults to `hidden_size // num_attention_heads`.
        max_position_embeddings: the context length.
        rope_parameters: `rope_type` ("default", "linear", "dynamic", "yarn", ...), `rope_theta` and the
            scaling keys of that type, as read by `transformers.modeling_rope_utils`.
        rms_norm_eps: epsilon of every RMSNorm.
        hidden_dropout: dropout on the embeddings and on each residual branch.
        attention_dropout: dropout on the attention probabilities.
        initializer_range: standard deviation of the normal initialisation.
        tie_word_embeddings: share the input embedding and the LM head.
        use_qk_norm: RMSNorm on each query and key head before the rotary embedding.
        attention_bias / mlp_bias: biases in the attention and MLP projections.
        use_cache: return a KV cache from forward (generation).
        classifier_pooling: what `ScratchLMForSequenceClassification` classifies: the hidden state of the last
            real token ("last") or the mean over the real tokens ("mean").
        use_bidirectional_attention: every token attends to every real token, after it as well as before it (as
            in Gemma 3's), for the encoder heads (sequence and token classification, question answering) of a
            base pretrained causally; a causal language model cannot use it.

    Example:
    ```python
    >>> from scratchlm.modeling import ScratchLMConfig, ScratchLMForCausalLM
    >>> config = ScratchLMConfig.from_preset("tiny", vocab_size=8192)
    >>> model = ScratchLMForCausalLM(config)
    ```
    """

    model_type = "scratchlm"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    base_model_tp_plan = {
        "layers.*.self_attn.q_proj": "colwise",
        "layers.*.self_attn.k_proj": "colwise",
        "layers.*.self_attn.v_proj": "colwise",
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.gate_proj": "colwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = 8192
    hidden_size: int = 384
    intermediate_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 6
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 1024
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
    classifier_pooling: str = "last"
    use_bidirectional_attention: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None and self.num_attention_heads and self.num_attention_heads > 0:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.rope_parameters is None and "rope_theta" not in kwargs and "rope_scaling" not in kwargs:
            self.rope_parameters = {"rope_type": "default", "rope_theta": 10_000.0}
        super().__post_init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        """Raise a ValueError naming the first inconsistent field; runs on every construction and load."""
        for name in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ScratchLMConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"ScratchLMConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"ScratchLMConfig.num_attention_heads ({self.num_attention_heads}) must be divisible by "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2 != 0:
            raise ValueError(f"ScratchLMConfig.head_dim ({self.head_dim}) must be even for rotary embeddings")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"ScratchLMConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.classifier_pooling not in ("last", "mean"):
            raise ValueError(f"ScratchLMConfig.classifier_pooling must be 'last' or 'mean', got "
                             f"{self.classifier_pooling!r}")
        if self.rms_norm_eps <= 0:
            raise ValueError(f"ScratchLMConfig.rms_norm_eps must be positive, got {self.rms_norm_eps}")
        if self.hidden_act != "silu":
            raise ValueError(f"ScratchLMConfig.hidden_act must be 'silu' (SwiGLU), got {self.hidden_act!r}")
        rope_type = (self.rope_parameters or {}).get("rope_type", "default")
        if rope_type != "default" and rope_type not in ROPE_INIT_FUNCTIONS:
            known = ", ".join(["default", *sorted(ROPE_INIT_FUNCTIONS)])
            raise ValueError(f"ScratchLMConfig.rope_parameters: unknown rope_type {rope_type!r} (known: {known})")
        backend = self._attn_implementation
        if backend is not None and backend not in ATTENTION_BACKENDS and "/" not in backend:
            raise ValueError(
                f"ScratchLMConfig: unknown attention backend {backend!r} (known: {', '.join(ATTENTION_BACKENDS)})"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ScratchLMConfig":
        """A config of one of the named shapes in `PRESETS`, with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown ScratchLM preset {name!r} (known: {', '.join(PRESETS)})")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def max_sequence_length(self) -> int | None:
        """Longest sequence (cached + new tokens) the forward accepts; None where the RoPE type has no limit.

        Without RoPE scaling it is `max_position_embeddings`. Linear, YaRN, Llama-3 and LongRoPE scaling stretch
        the trained context (`original_max_position_embeddings`, else `max_position_embeddings`) by `factor`;
        dynamic NTK recomputes its frequencies for any length.
        """
        rope = self.rope_parameters or {}
        rope_type = rope.get("rope_type", "default")
        if rope_type == "dynamic":
            return None
        if rope_type == "default":
            return self.max_position_embeddings
        trained = rope.get("original_max_position_embeddings") or self.max_position_embeddings
        return max(self.max_position_embeddings, int(trained * (rope.get("factor") or 1.0)))

    @property
    def num_parameters(self) -> int:
        """Exact number of parameters of `ScratchLMForCausalLM` built from this config."""
        h, d, q, kv = self.hidden_size, self.head_dim, self.num_attention_heads, self.num_key_value_heads
        attention = h * d * (q + 2 * kv) + q * d * h
        if self.attention_bias:
            attention += d * (q + 2 * kv) + h
        if self.use_qk_norm:
            attention += 2 * d
        mlp = 3 * h * self.intermediate_size + (2 * self.intermediate_size + h if self.mlp_bias else 0)
        layer = attention + mlp + 2 * h
        embeddings = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embeddings + self.num_hidden_layers * layer + h + head


__all__ = ["ScratchLMConfig", "PRESETS"]
