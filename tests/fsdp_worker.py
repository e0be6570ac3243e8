"""A few AdamW steps of the tiny decoder (tied embeddings) and the tiny encoder-decoder, sharded with FSDP2
(`torch.distributed.fsdp.fully_shard`) when run under torchrun, or whole in one process when imported by
tests/test_fsdp.py for the reference. Under torchrun, rank 0 writes into the directory given as the argument, per
architecture: the trained weights gathered whole (`<arch>_trained.pt`), the logits of the probe batch, and a sharded
torch.distributed.checkpoint directory laid out as accelerate writes one (`<arch>_sharded/pytorch_model_fsdp_0`, the
state dict under "model"), which every rank writes its own part of.

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

from scratchlm.modeling import (
    ScratchLMConfig,
    ScratchLMForCausalLM,
    ScratchLMSeq2SeqConfig,
    ScratchLMSeq2SeqForConditionalGeneration,
)

ARCHITECTURES = ("causal", "seq2seq")
GLOBAL_BATCH, SOURCE_LENGTH, TARGET_LENGTH, VOCAB = 4, 12, 10, 256
STEPS, LEARNING_RATE = 3, 1e-3
TINY = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def build_model(architecture: str) -> torch.nn.Module:
    """The same random tiny model in every process (fixed seed); both tie the LM head to the embeddings."""
    torch.manual_seed(0)
    if architecture == "causal":
        config = ScratchLMConfig.from_preset("tiny", **TINY, num_hidden_layers=2, tie_word_embeddings=True)
        return ScratchLMForCausalLM(config)
    config = ScratchLMSeq2SeqConfig.from_preset("tiny", **TINY, encoder_layers=2, decoder_layers=2,
                                                decoder_start_token_id=1)
    return ScratchLMSeq2SeqForConditionalGeneration(config)


def batches(architecture: str) -> list[dict[str, torch.Tensor]]:
    """`STEPS` global batches (plus one more, the probe), the same in every process; no padding, so that the mean
    of the ranks' mean losses is the global batch's mean loss."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS + 1):
        ids = torch.randint(3, VOCAB, (GLOBAL_BATCH, SOURCE_LENGTH), generator=generator)
        if architecture == "causal":
            out.append({"input_ids": ids, "labels": ids})
        else:
            labels = torch.randint(3, VOCAB, (GLOBAL_BATCH, TARGET_LENGTH), generator=generator)
            out.append({"input_ids": ids, "labels": labels})
    return out


def shard(model: torch.nn.Module) -> None:
    """FSDP2 as accelerate's transformer-based wrap does it with configs/accelerate/fsdp2.yaml: a unit for each
    module whose class the model's `_no_split_modules` names, then the root unit for the rest (the embeddings and the
    LM head tied to them, so the tied weight stays one parameter). Checks that those units are exactly the blocks of
    every `layers` list."""
    wrap = [module for module in model.modules() if type(module).__name__ in model._no_split_modules]
    blocks = [block for module in model.modules() if isinstance(module, torch.nn.ModuleList) for block in module]
    assert wrap == blocks, (sorted({type(m).__name__ for m in wrap}), sorted({type(m).__name__ for m in blocks}))
    for block in wrap:
        fully_shard(block)
    fully_shard(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight, "the tie was broken"


def train(architecture: str, rank: int = 0, world_size: int = 1) -> torch.nn.Module:
    """`STEPS` AdamW steps on this process's rows of each global batch (all of them in one process)."""
    model = build_model(architecture)
    if world_size > 1:
        shard(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    for batch in batches(architecture)[:STEPS]:
        local = {name: tensor.chunk(world_size)[rank] for name, tensor in batch.items()}
        model(**local).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def probe_logits(model: torch.nn.Module, architecture: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**batches(architecture)[STEPS]).logits


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    for architecture in ARCHITECTURES:
        model = train(architecture, rank, world_size)
        logits = probe_logits(model, architecture)  # every rank runs the sharded forward
        sharded = get_model_state_dict(model)  # DTensors: each rank holds its shard
        dcp.save({"model": sharded}, checkpoint_id=out_dir / f"{architecture}_sharded" / "pytorch_model_fsdp_0")
        whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save({"state_dict": whole, "logits": logits}, out_dir / f"{architecture}_trained.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
