"""ScratchLM configuration.

This file travels with saved models as remote code: it imports only transformers (and, through it, torch).
"""

from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, RopeParameters

# Attention backends this model runs on (the kernels hub's "org/repo" names are accepted as well).
ATTENTION_BACKENDS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")

# Named shapes. `tiny` is for tests, `small` trains on a CPU, the rest are the usual GPT/Llama sizes.
# Exact parameter counts are `ScratchLMConfig.num_parameters`, checked against instantiated models of every preset by
# the tests.
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
        fill_attention_defaults(self, kwargs)
        super().__post_init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        """Raise a ValueError naming the first inconsistent field; runs on every construction and load."""
        check_architecture(self, ("num_hidden_layers",))
        if self.classifier_pooling not in ("last", "mean"):
            raise ValueError(f"ScratchLMConfig.classifier_pooling must be 'last' or 'mean', got "
                             f"{self.classifier_pooling!r}")

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
        h = self.hidden_size
        layer = attention_parameters(self, self.use_qk_norm) + mlp_parameters(self) + 2 * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return self.vocab_size * h + self.num_hidden_layers * layer + h + head


# The rules below hold for both ScratchLM configs (this decoder's and the encoder–decoder's), which call them.


def fill_attention_defaults(config, kwargs: dict) -> None:
    """Key/value heads default to the query heads, `head_dim` to `hidden_size // num_attention_heads`, RoPE to the
    default type (unless the old `rope_theta`/`rope_scaling` keys, in `kwargs`, are converted by transformers)."""
    if config.num_key_value_heads is None:
        config.num_key_value_heads = config.num_attention_heads
    if config.head_dim is None and isinstance(config.num_attention_heads, int) and config.num_attention_heads > 0:
        config.head_dim = config.hidden_size // config.num_attention_heads
    if config.rope_parameters is None and "rope_theta" not in kwargs and "rope_scaling" not in kwargs:
        config.rope_parameters = {"rope_type": "default", "rope_theta": 10_000.0}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_architecture(config, layer_fields: tuple[str, ...]) -> None:
    """Raise a ValueError naming the first inconsistent field of the shape both configs share (their depth fields are
    `layer_fields`), its special token ids, RoPE type and attention backend."""
    name_of = type(config).__name__
    for name in (
        "vocab_size", "hidden_size", "intermediate_size", *layer_fields,
        "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
    ):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name_of}.{name} must be a positive integer, got {value!r}")
    if config.hidden_size % config.num_attention_heads != 0:
        raise ValueError(
            f"{name_of}.hidden_size ({config.hidden_size}) must be divisible by "
            f"num_attention_heads ({config.num_attention_heads})"
        )
    if config.num_attention_heads % config.num_key_value_heads != 0:
        raise ValueError(
            f"{name_of}.num_attention_heads ({config.num_attention_heads}) must be divisible by "
            f"num_key_value_heads ({config.num_key_value_heads})"
        )
    if config.head_dim % 2 != 0:
        raise ValueError(f"{name_of}.head_dim ({config.head_dim}) must be even for rotary embeddings")
    for name in ("hidden_dropout", "attention_dropout"):
        value = getattr(config, name)
        if not (_is_number(value) and 0.0 <= value < 1.0):
            raise ValueError(f"{name_of}.{name} must be a number in [0, 1), got {value!r}")
    if not (_is_number(config.rms_norm_eps) and config.rms_norm_eps > 0):
        raise ValueError(f"{name_of}.rms_norm_eps must be a positive number, got {config.rms_norm_eps!r}")
    if config.hidden_act != "silu":
        raise ValueError(f"{name_of}.hidden_act must be 'silu' (SwiGLU), got {config.hidden_act!r}")
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
        value = getattr(config, name, None)
        for token_id in value if isinstance(value, list) else [value]:
            if token_id is not None and not (isinstance(token_id, int) and 0 <= token_id < config.vocab_size):
                raise ValueError(f"{name_of}.{name} ({token_id!r}) must be a token id in [0, {config.vocab_size})")
    rope_type = (config.rope_parameters or {}).get("rope_type", "default")
    if rope_type != "default" and rope_type not in ROPE_INIT_FUNCTIONS:
        known = ", ".join(["default", *sorted(ROPE_INIT_FUNCTIONS)])
        raise ValueError(f"{name_of}.rope_parameters: unknown rope_type {rope_type!r} (known: {known})")
    backend = config._attn_implementation
    if backend is not None and backend not in ATTENTION_BACKENDS and "/" not in backend:
        raise ValueError(f"{name_of}: unknown attention backend {backend!r} (known: {', '.join(ATTENTION_BACKENDS)})")


def attention_parameters(config, qk_norm: bool) -> int:
    """Parameters of one attention module: the four projections (and their biases), the QK-norms where used."""
    h, d, q, kv = config.hidden_size, config.head_dim, config.num_attention_heads, config.num_key_value_heads
    count = h * d * (q + 2 * kv) + q * d * h + (d * (q + 2 * kv) + h if config.attention_bias else 0)
    return count + (2 * d if qk_norm else 0)


def mlp_parameters(config) -> int:
    """Parameters of one SwiGLU MLP (and its biases)."""
    h, i = config.hidden_size, config.intermediate_size
    return 3 * h * i + (2 * i + h if config.mlp_bias else 0)


__all__ = ["ScratchLMConfig", "PRESETS"]
