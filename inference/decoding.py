"""Greedy and sampled decoding over a static cache with one compiled forward per token.

`model.generate` is general: logits processors, stopping criteria, input preparation and cache bookkeeping run in
Python on every token. `StaticCacheDecoder` does only what greedy and sampled decoding need: the prompt runs once
eagerly into a `StaticCache`, then each token is one call of a compiled full-graph forward on fixed-shape tensors
that are updated in place (the token, its positions, the attention mask), followed by an argmax or a sample.

On a CPU a token of a small model costs what reading its weights from memory costs, plus per-kernel overheads. Three
choices, each measured on benchmarks/bench_model.py's shape (13.8 M parameters, batch 1, 2 cores), go at them:
- inductor's freezing folds the weights into the compiled step as constants, so the matrix products run on
  prepacked oneDNN weights (bf16: 4.7 -> 4.0 ms a token);
- the step attends with the plain matmul-softmax ("eager") attention, which inductor fuses, instead of SDPA's CPU
  kernel, whose set-up for a single query costs ~150 us a layer (4.0 -> 3.1 ms);
- `dtype=torch.bfloat16` halves the bytes read per token (fp32: 5.6 ms; Llama's default `generate`: 8.7 ms).
The decoder works on a copy of the model when it needs another dtype or attention, so the model passed in is left
as it is; a compiled step (frozen) or a copy keeps the weights it first saw: build a new decoder after changing them.

It works for any transformers causal LM whose forward takes a static cache (`cache=`), Llama as well as ScratchLM,
so benchmarks/bench_model.py can say which part of the gain is the decoding loop and which the model. Greedy
decoding gives exactly what `model.generate(do_sample=False)` gives for the same weights and attention
(tests/test_decoding.py). Beam search, repetition penalties and the other `generate` options stay with `generate`.
"""

from __future__ import annotations

import copy
import math
import types

import torch
from transformers import StaticCache


def sample_next_token(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of `logits` ([batch, vocab]) drawn after temperature, top-k and top-p (nucleus) filtering,
    in that order, as transformers' logits warpers apply them."""
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # the most likely token is always kept
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), -math.inf)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


class StaticCacheDecoder:
    """`decoder.generate(input_ids, attention_mask, max_new_tokens=...)` for a decoder-only `model` in eval mode.

    Args:
        model: a transformers causal LM (its forward takes `cache=` and `position_ids=`).
        compile: compile the one-token forward (`torch.compile`, full graph, static shapes; on a CPU with inductor's
            freezing). Off: the same loop eagerly, still without `generate`'s per-token overhead.
        backend: the `torch.compile` backend.
        length_bucket: cache lengths are rounded up to a multiple of this, so calls of similar lengths reuse one
            compiled graph and one cache instead of compiling again.
        dtype: decode with the weights in this dtype (e.g. `torch.bfloat16`); None: the model's.
        attention: the attention implementation to decode with; None: "eager" when the step is compiled on a CPU
            (see the module's docstring), else the model's own.
    """

    def __init__(self, model, *, compile: bool = True, backend: str = "inductor", length_bucket: int = 256,
                 dtype: torch.dtype | None = None, attention: str | None = None):
        if getattr(model.config, "is_encoder_decoder", False):
            raise ValueError("StaticCacheDecoder decodes decoder-only models; use model.generate for an "
                             "encoder-decoder")
        on_cpu = model.device.type == "cpu"
        if attention is None:
            attention = "eager" if compile and on_cpu else model.config._attn_implementation
        if (dtype is not None and dtype != model.dtype) or attention != model.config._attn_implementation:
            model = copy.deepcopy(model).to(dtype or model.dtype).eval()
            model.set_attn_implementation(attention)
        self.model = model
        self.length_bucket = length_bucket
        self.step = self._forward_one_token
        if compile:
            compiled = torch.compile(self._own_step_function(), fullgraph=True, dynamic=False, backend=backend)
            self.step = compiled
            if backend == "inductor" and on_cpu:
                # Compilation happens inside a call, so the freezing setting has to be in force around the calls:
                # torch 2.13's torch.compile(options={"freezing": True}) does not reach the freezing pass (the
                # graph keeps aten::mm). Entering the patch costs ~10 us a token.
                freezing = torch._inductor.config.patch(freezing=True)

                def frozen_step(*args):
                    with freezing:
                        return compiled(*args)

                self.step = frozen_step
        self._caches: dict[tuple[int, int], StaticCache] = {}

    def _own_step_function(self):
        """`_forward_one_token` bound to this decoder with its own code object. Dynamo keeps compiled graphs per code
        object and checks every graph's guards on each call (at most 8 graphs), so decoders sharing one would slow
        each other down (~1 ms a token with four decoders) and could fall back to eager."""
        function = StaticCacheDecoder._forward_one_token
        code = function.__code__.replace()  # an equal but distinct code object
        return types.MethodType(types.FunctionType(code, function.__globals__, function.__name__), self)

    def _forward_one_token(self, token, position_ids, attention_mask, cache):
        return self.model(input_ids=token, position_ids=position_ids, attention_mask=attention_mask, cache=cache,
                          use_cache=True).logits[:, -1, :]

    def context_limit(self) -> int:
        config = self.model.config
        return getattr(config, "max_sequence_length", None) or config.max_position_embeddings

    def _cache(self, batch_size: int, length: int) -> StaticCache:
        key = (batch_size, length)
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = StaticCache(config=self.model.config, max_cache_len=length)
        else:
            cache.reset()
        return cache

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, max_new_tokens: int,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos_token_id: int | list[int] | None = None,
                 pad_token_id: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """The prompt followed by up to `max_new_tokens` tokens ([batch, prompt + new]), as `model.generate`
        returns it for a decoder-only model: rows that ended (an `eos_token_id`) are padded with `pad_token_id`,
        and the output stops once every row has ended. Prompts in a batch are left-padded (`attention_mask`)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if do_sample and temperature <= 0:
            raise ValueError(f"temperature must be positive when sampling, got {temperature}")
        batch_size, prompt_length = input_ids.shape
        total = prompt_length + max_new_tokens
        limit = self.context_limit()
        if total > limit:
            raise ValueError(f"prompt ({prompt_length} tokens) + max_new_tokens ({max_new_tokens}) = {total} is "
                             f"past the model's context of {limit} tokens")
        eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else (eos_token_id or []),
                           device=input_ids.device)
        if len(eos) and pad_token_id is None:
            pad_token_id = int(eos[0])
        cache_length = min(max(limit, total), -(-total // self.length_bucket) * self.length_bucket)
        cache = self._cache(batch_size, cache_length)

        mask = torch.zeros(batch_size, cache_length, dtype=torch.long, device=input_ids.device)
        mask[:, :prompt_length] = 1 if attention_mask is None else attention_mask
        # Left padding: every row counts positions from its first real token.
        prompt_positions = (mask[:, :prompt_length].cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=input_ids, position_ids=prompt_positions, attention_mask=mask, cache=cache,
                            use_cache=True, logits_to_keep=1).logits[:, -1, :]
        position = prompt_positions[:, -1:].clone()
        token = torch.empty(batch_size, 1, dtype=torch.long, device=input_ids.device)
        output = torch.empty(batch_size, max_new_tokens, dtype=torch.long, device=input_ids.device)
        finished = torch.zeros(batch_size, dtype=torch.bool, device=input_ids.device)
        generated = max_new_tokens
        for index in range(max_new_tokens):
            if do_sample:
                chosen = sample_next_token(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                           generator=generator)
            else:
                chosen = logits.argmax(-1)
            if len(eos):
                chosen = chosen.masked_fill(finished, pad_token_id)
                finished |= torch.isin(chosen, eos)
            output[:, index] = chosen
            # One host sync every 16 tokens to stop early; rows that ended meanwhile only produce padding.
            if len(eos) and index % 16 == 15 and bool(finished.all()):
                generated = index + 1
                break
            if index == max_new_tokens - 1:
                break
            token.copy_(chosen[:, None])
            position += 1
            mask[:, prompt_length + index] = 1
            logits = self.step(token, position, mask, cache)
        output = output[:, :generated]
        if len(eos) and generated > 0:  # trim the columns after the last row ended
            ended = torch.isin(output, eos).to(torch.int8)
            if bool(ended.any(-1).all()):
                generated = int(ended.argmax(-1).max()) + 1
                output = output[:, :generated]
        return torch.cat([input_ids, output], dim=-1)
