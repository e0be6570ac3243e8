"""ScratchLM: a decoder-only Transformer written from scratch as a transformers model.

Pre-norm blocks (RMSNorm), rotary position embeddings, grouped-query attention through transformers'
attention interface, a SwiGLU MLP and a KV cache. This file travels with saved models as remote code:
it imports only torch, transformers and its sibling configuration file.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutputWithPast,
    TokenClassifierOutput,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_scratchlm import ScratchLMConfig

logger = logging.get_logger(__name__)


class ScratchLMRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 whatever the activation dtype, then scale in the activation dtype.
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.float()
        hidden_states = hidden_states * torch.rsqrt(hidden_states.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * hidden_states.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


class ScratchLMRotaryEmbedding(nn.Module):
    """cos/sin tables of the rotary embedding; every RoPE variant of `modeling_rope_utils` is supported."""

    def __init__(self, config: ScratchLMConfig):
        super().__init__()
        self.config = config
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        inv_freq, self.attention_scaling = self.compute_inv_freq(config)
        # Non-persistent: recomputed from the config, so `_init_weights` restores them after `from_pretrained`.
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: ScratchLMConfig, device=None, **kwargs) -> tuple[torch.Tensor, float]:
        dim = config.head_dim
        base = config.rope_parameters["rope_theta"]
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim))
        return inv_freq, 1.0

    def compute_inv_freq(self, config: ScratchLMConfig, device=None) -> tuple[torch.Tensor, float]:
        if self.rope_type == "default":
            return self.compute_default_rope_parameters(config, device)
        return ROPE_INIT_FUNCTIONS[self.rope_type](config, device)

    @torch.no_grad()
    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        angles = torch.cat((freqs, freqs), dim=-1)
        cos = angles.cos() * self.attention_scaling
        sin = angles.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary_pos_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x of shape (batch, heads, seq, head_dim) by cos/sin of shape (batch, seq, head_dim)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(batch, kv_heads, seq, dim) -> (batch, kv_heads * n_rep, seq, dim), each key/value head serving n_rep queries."""
    if n_rep == 1:
        return hidden_states
    batch, kv_heads, seq_len, head_dim = hidden_states.shape
    expanded = hidden_states[:, :, None].expand(batch, kv_heads, n_rep, seq_len, head_dim)
    return expanded.reshape(batch, kv_heads * n_rep, seq_len, head_dim)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class ScratchLMAttentionBase(nn.Module):
    """What self- and cross-attention share: grouped-query projections and the call into transformers' attention
    interface (eager, SDPA, flash, flex). Subclasses say where the keys and values come from."""

    def __init__(self, config: ScratchLMConfig, layer_idx: int, is_causal: bool):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = is_causal  # SDPA reads it when there is no mask tensor

        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=bias)

    def attend(self, query, key, value, attention_mask, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries (batch, heads, seq, head_dim) over keys and values: the output projected back to the hidden size,
        and the attention weights (eager attention only)."""
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.o_proj(output.reshape(*output.shape[:2], -1)), weights


class ScratchLMAttention(ScratchLMAttentionBase):
    """Self-attention with grouped key/value heads, rotary embeddings and optional QK-norm."""

    def __init__(self, config: ScratchLMConfig, layer_idx: int, is_causal: bool = True):
        super().__init__(config, layer_idx, is_causal)
        if config.use_qk_norm:
            self.q_norm = ScratchLMRMSNorm(self.head_dim, eps=config.rms_norm_eps)
            self.k_norm = ScratchLMRMSNorm(self.head_dim, eps=config.rms_norm_eps)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, seq_len, -1, self.head_dim)
        key = self.k_proj(hidden_states).view(batch, seq_len, -1, self.head_dim)
        value = self.v_proj(hidden_states).view(batch, seq_len, -1, self.head_dim).transpose(1, 2)
        if self.config.use_qk_norm:
            query, key = self.q_norm(query), self.k_norm(key)
        cos, sin = position_embeddings
        query = apply_rotary_pos_emb(query.transpose(1, 2), cos, sin)
        key = apply_rotary_pos_emb(key.transpose(1, 2), cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)
        return self.attend(query, key, value, attention_mask, **kwargs)


class ScratchLMMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ScratchLMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ScratchLMBlock(GradientCheckpointingLayer):
    """A pre-norm Transformer block: rotary self-attention, then the SwiGLU MLP, each added to the residual stream.
    The decoder's and the encoder's layers are this block; the encoder–decoder's decoder layer adds the
    `cross_attention` it is given between the two."""

    def __init__(self, config: ScratchLMConfig, layer_idx: int, is_causal: bool = True,
                 cross_attention: nn.Module | None = None):
        super().__init__()
        self.input_layernorm = ScratchLMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = ScratchLMAttention(config, layer_idx, is_causal)
        if cross_attention is not None:  # registered in the order it runs, so a seed draws the same weights as ever
            self.cross_attn_layernorm = ScratchLMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.cross_attn = cross_attention
        self.post_attention_layernorm = ScratchLMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = ScratchLMMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        hidden_states = self.self_attention_step(hidden_states, position_embeddings, attention_mask, cache, **kwargs)
        return self.mlp_step(hidden_states)

    def self_attention_step(self, hidden_states, position_embeddings, attention_mask, cache, **kwargs) -> torch.Tensor:
        attn_output, _ = self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, attention_mask, cache=cache, **kwargs
        )
        return hidden_states + self.dropout(attn_output)

    def mlp_step(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))


class ScratchLMDecoderLayer(ScratchLMBlock):
    """The decoder's block; its own name so that FSDP (`transformer_layer_cls_to_wrap`) and `_no_split_modules` can
    name the decoder's layers."""


class ScratchLMPreTrainedBase(PreTrainedModel):
    """What the decoder's and the encoder–decoder's models share: attention backends, initialisation, and the
    `auto_map` written on saving."""

    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    # Auto class -> "file.Class" of the remote-code files, written into config.json when a model registered for remote
    # code is saved, so that every Auto class (not only the one of the saved class) loads the directory with
    # `trust_remote_code=True`. Each architecture's base class fills it in.
    remote_code_auto_map: dict[str, str] = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:
            self.config.auto_map = {**self.remote_code_auto_map, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, ScratchLMRMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, ScratchLMRotaryEmbedding):
            # from_pretrained builds on the meta device, so non-persistent buffers must be recomputed here.
            inv_freq, module.attention_scaling = module.compute_inv_freq(module.config, module.inv_freq.device)
            module.inv_freq.copy_(inv_freq)
            module.original_inv_freq.copy_(inv_freq)


class ScratchLMPreTrainedModel(ScratchLMPreTrainedBase):
    config_class = ScratchLMConfig
    config: ScratchLMConfig
    _no_split_modules = ["ScratchLMDecoderLayer"]
    # What `output_hidden_states` / `output_attentions` return, recorded by hooks (`capture_outputs`): the input of
    # every block, then the final normed output; the attention weights of every block (eager attention only).
    _can_record_outputs = {"hidden_states": ScratchLMDecoderLayer, "attentions": ScratchLMAttention}
    remote_code_auto_map = {
        "AutoConfig": "configuration_scratchlm.ScratchLMConfig",
        "AutoModel": "modeling_scratchlm.ScratchLMModel",
        "AutoModelForCausalLM": "modeling_scratchlm.ScratchLMForCausalLM",
        "AutoModelForSequenceClassification": "modeling_scratchlm.ScratchLMForSequenceClassification",
        "AutoModelForTokenClassification": "modeling_scratchlm.ScratchLMForTokenClassification",
        "AutoModelForQuestionAnswering": "modeling_scratchlm.ScratchLMForQuestionAnswering",
    }


def check_token_ids(config, input_ids, name: str = "input_ids"):
    """A clear error for ids outside the vocabulary, which the embedding cannot look up.

    It reads tensor values (a device-to-host sync), so callers run it only outside `torch.compile`.
    """
    if input_ids is not None and input_ids.numel() > 0:
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= config.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"{name} contains token id {bad}, outside the vocabulary [0, {config.vocab_size}): "
                "was the input tokenized with a tokenizer that does not belong to this model?"
            )


def warn_past_context(config, length: int, name: str = "input"):
    """Warn (once) when `length` tokens are more than the model was trained on.

    Rotary positions are computed for any length, so, as in transformers' models, a longer input runs: the outputs
    past the trained context are just unreliable. The message holds no token count, so `warning_once` logs it once
    however many generation steps cross the limit.
    """
    limit = config.max_sequence_length
    if limit is None or length <= limit:
        return
    rope_type = config.rope_parameters.get("rope_type", "default")
    source = "max_position_embeddings" if rope_type == "default" else (
        f"max_position_embeddings scaled by its {rope_type} RoPE factor")
    logger.warning_once(
        f"{name} longer than the model's context of {limit} tokens ({source}): positions past it were never "
        "trained, so the outputs there are unreliable; truncate the input, or use a model with a longer context or "
        "RoPE scaling"
    )


def check_inputs(config, input_ids, inputs_embeds, past_length=0, name: str = "input_ids") -> int:
    """The checks of a stack's input, before any work: exactly one of ids and embeddings, ids inside the vocabulary,
    a warning past the trained context (the last two eagerly only: they read tensor values or log). Returns its
    length."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError(f"pass exactly one of {name} or {name.replace('_ids', '_embeds')}")
    seq_len = (input_ids if input_ids is not None else inputs_embeds).shape[1]
    if not torch.compiler.is_compiling():
        check_token_ids(config, input_ids, name)
        warn_past_context(config, int(past_length) + seq_len, name)
    return seq_len


class ScratchLMModel(ScratchLMPreTrainedModel):
    """The decoder stack: embeddings, blocks and the final norm; returns the last hidden states."""

    def __init__(self, config: ScratchLMConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(
            ScratchLMDecoderLayer(config, i, is_causal=not config.use_bidirectional_attention)
            for i in range(config.num_hidden_layers)
        )
        self.norm = ScratchLMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = ScratchLMRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        `output_hidden_states` / `output_attentions` (keyword arguments, defaulting to the config's) are recorded by
        transformers' output capturing (`_can_record_outputs`); `output_hidden_states` may name the indices wanted.
        """
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past_len = cache.get_seq_length() if cache is not None else 0
        seq_len = check_inputs(self.config, input_ids, inputs_embeds, past_len)
        compiling = torch.compiler.is_compiling()
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)

        # Eagerly, an all-ones mask is dropped (the causal pattern alone, without a mask tensor); a compiled graph
        # cannot branch on tensor values, so it always takes the general path, which is correct for any mask.
        has_padding = attention_mask is not None and attention_mask.dim() == 2 and (
            compiling or not bool(attention_mask.all())
        )
        if position_ids is None:
            if has_padding:
                # Left padding: real tokens count their positions from the first non-pad token.
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -seq_len:]
            else:
                position_ids = (torch.arange(seq_len, device=inputs_embeds.device) + past_len).unsqueeze(0)

        if attention_mask is not None and attention_mask.dim() == 2 and not has_padding:
            attention_mask = None  # all ones: the causal pattern alone, which SDPA runs without a mask tensor
        if self.config.use_bidirectional_attention:  # padding masked out, nothing else (None: no padding)
            causal_mask = create_bidirectional_mask(config=self.config, inputs_embeds=inputs_embeds,
                                                    attention_mask=attention_mask, cache=cache)
        elif seq_len == 1 and attention_mask is None:
            causal_mask = None  # one query attends to every cached key: nothing to mask while decoding
        else:
            causal_mask = create_causal_mask(
                config=self.config,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                cache=cache,
                position_ids=position_ids,
            )

        hidden_states = self.dropout(inputs_embeds)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, attention_mask=causal_mask, cache=cache, **kwargs)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden_states), cache=cache if use_cache else None)


class ScratchLMForCausalLM(ScratchLMPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: ScratchLMConfig):
        if config.use_bidirectional_attention:
            raise ValueError("use_bidirectional_attention is for the encoder heads (classification, question "
                             "answering): a causal language model would see the tokens it predicts")
        super().__init__(config)
        self.model = ScratchLMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        labels: token ids to predict (shifted inside the loss); -100 marks positions that do not count.
        logits_to_keep: compute logits for only the last N positions (an int; 0 keeps all), or for the given
            indices (a 1D tensor); generation keeps 1 and saves the full-vocabulary projection of the prompt.
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden_states = hidden_states[:, -logits_to_keep:] if logits_to_keep else hidden_states
        else:
            hidden_states = hidden_states[:, logits_to_keep]
        logits = self.lm_head(hidden_states)

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def _last_token_index(config, input_ids, attention_mask, batch_size: int, seq_len: int, device) -> torch.Tensor:
    """Index of the last real (non-pad) token of each row, for left or right padding."""
    positions = torch.arange(seq_len, device=device)
    if attention_mask is not None and attention_mask.dim() == 2:
        return (positions * attention_mask.to(device=device, dtype=torch.long)).argmax(-1)
    if input_ids is not None and config.pad_token_id is not None:
        return (positions * (input_ids != config.pad_token_id).long()).argmax(-1)
    if batch_size > 1:
        raise ValueError(
            "a batch of more than one sequence needs an attention_mask (or config.pad_token_id) "
            "to find each sequence's last token"
        )
    return torch.full((batch_size,), seq_len - 1, device=device)


def _mean_over_real_tokens(config, input_ids, attention_mask, hidden_states: torch.Tensor) -> torch.Tensor:
    """The mean hidden state of each row's real (non-pad) tokens."""
    if attention_mask is not None and attention_mask.dim() == 2:
        mask = attention_mask[:, -hidden_states.shape[1]:]
    elif input_ids is not None and config.pad_token_id is not None:
        mask = input_ids != config.pad_token_id
    else:
        return hidden_states.mean(1)
    mask = mask.to(device=hidden_states.device, dtype=hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * mask).sum(1) / mask.sum(1).clamp(min=1)


class ScratchLMForSequenceClassification(ScratchLMPreTrainedModel):
    """Sequence classification (sentiment, topics, ...) from the hidden state of each sequence's last real token,
    or the mean over its real tokens (`config.classifier_pooling = "mean"`)."""

    def __init__(self, config: ScratchLMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = ScratchLMModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        batch_size, seq_len = hidden_states.shape[:2]
        if self.config.classifier_pooling == "mean":
            pooled_logits = self.score(_mean_over_real_tokens(self.config, input_ids, attention_mask, hidden_states))
        else:
            last = _last_token_index(self.config, input_ids, attention_mask, batch_size, seq_len,
                                     hidden_states.device)
            pooled_logits = self.score(hidden_states[torch.arange(batch_size, device=hidden_states.device), last])

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=pooled_logits, labels=labels, pooled_logits=pooled_logits,
                                      config=self.config)
        return SequenceClassifierOutputWithPast(
            loss=loss,
            logits=pooled_logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


# The heads below are written out rather than taken from transformers' GenericFor* classes, which would save their
# forward: those build the base with `AutoModel.from_config`, which asks for trust_remote_code again (and fails)
# when a saved head loads as remote code where ScratchLM is not installed, and they read `last_hidden_state` from
# a base that returns a tuple under `config.return_dict=False`.
class ScratchLMForTokenClassification(ScratchLMPreTrainedModel):
    """A label per token (named entities, tagging)."""

    def __init__(self, config: ScratchLMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = ScratchLMModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        r"""
        cache: keys and values of earlier tokens, extended in place (the output has no cache field, so none is built
            unless `use_cache=True`).
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=bool(use_cache),
            return_dict=True,
            **kwargs,
        )
        logits = self.score(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class ScratchLMForQuestionAnswering(ScratchLMPreTrainedModel):
    """Extractive question answering: start and end logits of the answer span."""

    def __init__(self, config: ScratchLMConfig):
        super().__init__(config)
        self.model = ScratchLMModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> QuestionAnsweringModelOutput:
        r"""
        cache: keys and values of earlier tokens, extended in place (as in the token-classification head).
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=bool(use_cache),
            return_dict=True,
            **kwargs,
        )
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions, **kwargs)
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = [
    "ScratchLMPreTrainedModel",
    "ScratchLMModel",
    "ScratchLMForCausalLM",
    "ScratchLMForSequenceClassification",
    "ScratchLMForTokenClassification",
    "ScratchLMForQuestionAnswering",
]
