"""ScratchLM encoder–decoder: the original Transformer, written from scratch from the decoder's blocks.

A bidirectional encoder (padding mask) and a causal decoder whose blocks add cross-attention over the encoder
output; pre-norm RMSNorm, rotary self-attention with grouped key/value heads (the decoder's `ScratchLMAttention`),
cross-attention without positions, a SwiGLU MLP, eager/SDPA/flash/flex through transformers' attention interface,
gradient checkpointing and an `EncoderDecoderCache` while decoding. One embedding matrix serves the source, the
target and (unless `tie_word_embeddings=False`) the LM head. It keeps transformers' encoder–decoder contract as
BART, T5 and T5Gemma do: `get_encoder()`, `encoder_outputs=` reused, `labels` shifted right behind
`decoder_start_token_id`, `prepare_decoder_input_ids_from_labels` for `DataCollatorForSeq2Seq`, `generate()`.

Why its own `model_type` ("scratchlm_seq2seq") and not a flag of `ScratchLMConfig`: transformers' Auto classes map
one config class to one model class per task, so a separate type is what lets `AutoModelForSeq2SeqLM` and
`AutoModel` pick the encoder–decoder while `AutoModelForCausalLM` keeps picking the decoder; a checkpoint says by
its type alone which kind it is, and neither config carries fields that mean nothing for the other.

This file travels with saved models as remote code: it imports only torch, transformers and its sibling files
(the decoder's modeling and configuration files come along, as they are imported relatively).
"""

import torch
from torch import nn
from transformers import GenerationMixin
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.models.bart.modeling_bart import shift_tokens_right
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_scratchlm_seq2seq import ScratchLMSeq2SeqConfig
from .modeling_scratchlm import (
    ScratchLMAttention,
    ScratchLMAttentionBase,
    ScratchLMBlock,
    ScratchLMPreTrainedBase,
    ScratchLMRMSNorm,
    ScratchLMRotaryEmbedding,
    check_inputs,
    check_token_ids,
    warn_past_context,
)


class ScratchLMEncoderLayer(ScratchLMBlock):
    """The shared block with bidirectional self-attention: every source token sees every other (but padding)."""

    def __init__(self, config: ScratchLMSeq2SeqConfig, layer_idx: int):
        super().__init__(config, layer_idx, is_causal=False)


class ScratchLMCrossAttention(ScratchLMAttentionBase):
    """Decoder queries over the encoder output: grouped key/value heads, no positions (the source has them)."""

    def __init__(self, config: ScratchLMSeq2SeqConfig, layer_idx: int):
        super().__init__(config, layer_idx, is_causal=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, seq_len, -1, self.head_dim).transpose(1, 2)
        if cache is not None and cache.is_updated.get(self.layer_idx):
            # The encoder output does not change while decoding: its keys and values are projected once.
            layer = cache.cross_attention_cache.layers[self.layer_idx]
            key, value = layer.keys, layer.values
        else:
            source_shape = (*encoder_hidden_states.shape[:2], -1, self.head_dim)
            key = self.k_proj(encoder_hidden_states).view(source_shape).transpose(1, 2)
            value = self.v_proj(encoder_hidden_states).view(source_shape).transpose(1, 2)
            if cache is not None:
                key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
        return self.attend(query, key, value, attention_mask, **kwargs)


class ScratchLMSeq2SeqDecoderLayer(ScratchLMBlock):
    """The shared block (causal rotary self-attention, SwiGLU) with cross-attention over the encoder output between
    the two, pre-norm and residual like them."""

    def __init__(self, config: ScratchLMSeq2SeqConfig, layer_idx: int):
        super().__init__(config, layer_idx, cross_attention=ScratchLMCrossAttention(config, layer_idx))

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        self_cache = cache.self_attention_cache if cache is not None else None
        hidden_states = self.self_attention_step(hidden_states, position_embeddings, attention_mask, self_cache,
                                                 **kwargs)
        cross_output, _ = self.cross_attn(
            self.cross_attn_layernorm(hidden_states), encoder_hidden_states, encoder_attention_mask, cache=cache,
            **kwargs,
        )
        return self.mlp_step(hidden_states + self.dropout(cross_output))


class ScratchLMSeq2SeqPreTrainedModel(ScratchLMPreTrainedBase):
    config_class = ScratchLMSeq2SeqConfig
    config: ScratchLMSeq2SeqConfig
    main_input_name = "input_ids"
    _no_split_modules = ["ScratchLMEncoderLayer", "ScratchLMSeq2SeqDecoderLayer"]
    remote_code_auto_map = {
        "AutoConfig": "configuration_scratchlm_seq2seq.ScratchLMSeq2SeqConfig",
        "AutoModel": "modeling_scratchlm_seq2seq.ScratchLMSeq2SeqModel",
        "AutoModelForSeq2SeqLM": "modeling_scratchlm_seq2seq.ScratchLMSeq2SeqForConditionalGeneration",
    }

    def _shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for `labels`: the start token, then the labels but the last (-100 read as padding)."""
        if self.config.decoder_start_token_id is None:
            raise ValueError(f"{type(self.config).__name__}.decoder_start_token_id must be set to train on labels")
        if self.config.pad_token_id is None:
            raise ValueError(f"{type(self.config).__name__}.pad_token_id must be set to train on labels")
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)


class ScratchLMSeq2SeqEncoder(ScratchLMSeq2SeqPreTrainedModel):
    """The encoder stack: the shared token embedding, bidirectional blocks and a final norm."""

    # Recorded by `capture_outputs`, as in BART's encoder: the input of every block then the final normed output,
    # and the attention weights of every block (eager attention only). The depth is named so that negative indices
    # in `output_hidden_states` count this stack's layers (the config's `num_hidden_layers` is the decoder's).
    _can_record_outputs = {
        "hidden_states": OutputRecorder(ScratchLMEncoderLayer, num_hidden_layers_key="encoder_layers"),
        "attentions": ScratchLMAttention,
    }

    def __init__(self, config: ScratchLMSeq2SeqConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(ScratchLMEncoderLayer(config, i) for i in range(config.encoder_layers))
        self.norm = ScratchLMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = ScratchLMRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        kwargs.pop("cache", None)
        kwargs.pop("past_key_values", None)
        seq_len = check_inputs(self.config, input_ids, inputs_embeds)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=inputs_embeds.device).unsqueeze(0)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask)

        hidden_states = self.dropout(inputs_embeds)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, attention_mask=mask, **kwargs)
        return BaseModelOutput(last_hidden_state=self.norm(hidden_states))


class ScratchLMSeq2SeqDecoder(ScratchLMSeq2SeqPreTrainedModel):
    """The decoder stack over embedded target tokens (the embedding is the encoder's): blocks and a final norm."""

    # As in BART's decoder: hidden states, self-attention and cross-attention weights of every block.
    _can_record_outputs = {
        "hidden_states": OutputRecorder(ScratchLMSeq2SeqDecoderLayer, num_hidden_layers_key="decoder_layers"),
        "attentions": ScratchLMAttention,
        "cross_attentions": ScratchLMCrossAttention,
    }

    def __init__(self, config: ScratchLMSeq2SeqConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(ScratchLMSeq2SeqDecoderLayer(config, i) for i in range(config.decoder_layers))
        self.norm = ScratchLMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = ScratchLMRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        inputs_embeds: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: EncoderDecoderCache | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        if not use_cache:
            cache = None
        seq_len = inputs_embeds.shape[1]
        past_len = cache.get_seq_length() if cache is not None else 0
        if not torch.compiler.is_compiling():
            warn_past_context(self.config, int(past_len) + seq_len, "decoder_input_ids")
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + seq_len, device=inputs_embeds.device).unsqueeze(0)

        self_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache.self_attention_cache if cache is not None else None,
            position_ids=position_ids,
        )
        cross_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )

        hidden_states = self.dropout(inputs_embeds)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                position_embeddings,
                encoder_hidden_states,
                attention_mask=self_mask,
                encoder_attention_mask=cross_mask,
                cache=cache,
                **kwargs,
            )
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=self.norm(hidden_states), cache=cache)


class ScratchLMSeq2SeqModel(ScratchLMSeq2SeqPreTrainedModel):
    """The bare encoder–decoder: returns the decoder's last hidden states and the encoder output."""

    def __init__(self, config: ScratchLMSeq2SeqConfig):
        super().__init__(config)
        self.encoder = ScratchLMSeq2SeqEncoder(config)
        self.decoder = ScratchLMSeq2SeqDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.encoder.embed_tokens = value

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        decoder_position_ids: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: EncoderDecoderCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput:
        r"""
        decoder_input_ids: target tokens so far, starting with `decoder_start_token_id` (the model's LM head
            shifts `labels` into them when they are not given).
        encoder_outputs: the encoder's output for `input_ids`, reused instead of encoding again (generation).
        cache: an `EncoderDecoderCache` (self-attention keys/values so far, cross-attention keys/values of the
            source); `past_key_values` is accepted as its old name.
        `output_hidden_states` / `output_attentions` (keyword arguments, defaulting to the config's) reach the
        encoder and the decoder, which record them with transformers' output capturing.
        """
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("pass decoder_input_ids (or labels to the LM head, which shifts them into place)")
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        if decoder_inputs_embeds is None:
            if not torch.compiler.is_compiling():
                check_token_ids(self.config, decoder_input_ids, "decoder_input_ids")
            decoder_inputs_embeds = self.get_input_embeddings()(decoder_input_ids)

        decoder_outputs = self.decoder(
            decoder_inputs_embeds,
            encoder_outputs.last_hidden_state,
            attention_mask=decoder_attention_mask,
            encoder_attention_mask=attention_mask,
            position_ids=decoder_position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class ScratchLMSeq2SeqForConditionalGeneration(ScratchLMSeq2SeqPreTrainedModel, GenerationMixin):
    """The encoder–decoder with its LM head: translation, summarization, any text-to-text task."""

    _tied_weights_keys = {"lm_head.weight": "model.encoder.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: ScratchLMSeq2SeqConfig):
        super().__init__(config)
        self.model = ScratchLMSeq2SeqModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        # Labels are already aligned with the logits (shifted into the decoder inputs instead), so the loss is a
        # plain token cross-entropy, not the causal one that the class-name suffix would pick.
        self.loss_type = "ForMaskedLM"
        self.post_init()

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        decoder_position_ids: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: EncoderDecoderCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        r"""
        labels: target token ids, -100 where a position does not count; shifted right behind
            `decoder_start_token_id` into `decoder_input_ids` when those are not given.
        logits_to_keep: logits for only the last N decoder positions (an int; 0 keeps all) or the given indices.
        """
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self._shift_right(labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            decoder_position_ids=decoder_position_ids,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
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
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Used by `DataCollatorForSeq2Seq` to build `decoder_input_ids` once per batch."""
        return self._shift_right(labels)


__all__ = [
    "ScratchLMSeq2SeqPreTrainedModel",
    "ScratchLMSeq2SeqEncoder",
    "ScratchLMSeq2SeqDecoder",
    "ScratchLMSeq2SeqModel",
    "ScratchLMSeq2SeqForConditionalGeneration",
]
