"""Muon + AdamW (`training/optimizers.py`) and the time-budget schedule (`training/schedules.py`) under the real
Trainer: the groups are the ones stated, a resumed run equals an uninterrupted one, the budget ends training with
the decay finished."""

from __future__ import annotations

import functools
import shutil

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from scratchlm.training.optimizers import MuonSettings, MuonWithAdamW
from scratchlm.training.schedules import TimeBudget, time_budget_schedule

SETTINGS = MuonSettings(muon_lr=0.02, adamw_lr=3e-3, weight_decay=0.01)


@pytest.fixture(scope="module")
def tiny_lm(tiny_model):
    """`tiny_lm()`: a fresh one-layer tiny decoder, seeded, so that every run starts from the same weights."""
    return functools.partial(tiny_model, num_hidden_layers=1)


@pytest.fixture(scope="module")
def blocks():
    ids = torch.randint(3, 200, (48, 32), generator=torch.Generator().manual_seed(0)).tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


def names_in(optimizer, model, muon: bool) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for g in optimizer.param_groups if g["muon"] == muon for p in g["params"]}


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest(tiny_lm):
    model = tiny_lm()
    optimizer = MuonWithAdamW(model, SETTINGS)
    muon = names_in(optimizer, model, muon=True)
    assert muon == {f"model.layers.0.{m}.weight" for m in
                    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    adamw = {g["weight_decay"]: {n for n in names_in(optimizer, model, False)
                                 if any(p is dict(model.named_parameters())[n] for p in g["params"])}
             for g in optimizer.param_groups if not g["muon"]}
    assert adamw == {0.01: {"model.embed_tokens.weight"},  # the embedding, tied to the LM head
                     0.0: {"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                           "model.norm.weight"}}
    assert [g["lr"] for g in optimizer.param_groups] == [0.02, 3e-3, 3e-3]


def test_muon_groups_of_a_lora_model_are_its_adapters(tiny_lm):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_lm(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    optimizer = MuonWithAdamW(model, SETTINGS)
    muon = names_in(optimizer, model, muon=True)
    assert muon and all("lora_" in name for name in muon)
    assert len(muon) == 4  # A and B of two projections in one layer
    assert not any(g["params"] for g in optimizer.param_groups if not g["muon"])  # nothing else trains


def train(model, output_dir, blocks, max_steps, resume=None, save_steps=3, warmup_steps=2):
    args = TrainingArguments(str(output_dir), max_steps=max_steps, per_device_train_batch_size=8, save_steps=save_steps,
                             logging_steps=1, report_to=[], use_cpu=True, seed=0, lr_scheduler_type="cosine",
                             warmup_steps=warmup_steps, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=blocks, optimizers=(MuonWithAdamW(model, SETTINGS), None))
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer


def test_the_trainers_schedule_sets_the_rates_both_optimizers_step_with(tmp_path, blocks, one_torch_thread, tiny_lm):
    # accelerate reloads the optimizer's state when it wraps it: the inner optimizers' groups are then new dicts,
    # which the schedule must still reach (it once set rates no one read: every schedule trained like constant).
    warm, trainer = train(tiny_lm(), tmp_path / "warm", blocks, max_steps=3, warmup_steps=2)
    at_once, _ = train(tiny_lm(), tmp_path / "at_once", blocks, max_steps=3, warmup_steps=0)
    optimizer = trainer.optimizer.optimizer  # under accelerate's wrapper
    assert [group["lr"] for group in optimizer.param_groups] == [group["lr"] for inner in optimizer.inner
                                                                 for group in inner.param_groups]
    for (name, a), b in zip(warm.named_parameters(), at_once.parameters()):
        assert not torch.equal(a, b), name  # the first step's rate was 0 with warmup: every weight differs


def test_a_resumed_muon_run_equals_an_uninterrupted_one(tmp_path, blocks, one_torch_thread, tiny_lm):
    whole, _ = train(tiny_lm(), tmp_path / "whole", blocks, max_steps=6)
    shutil.copytree(tmp_path / "whole" / "checkpoint-3", tmp_path / "cut" / "checkpoint-3")
    resumed, _ = train(tiny_lm(), tmp_path / "cut", blocks, max_steps=6, resume=str(tmp_path / "cut" / "checkpoint-3"))
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    # the momentum came back from the checkpoint: without it, the resumed weights differ
    fresh, _ = train(tiny_lm(), tmp_path / "fresh", blocks, max_steps=3)
    assert not all(torch.equal(a, b) for a, b in zip(whole.parameters(), fresh.parameters()))


def test_an_adamw_checkpoint_is_refused_by_muon_in_one_line(tmp_path, blocks, one_torch_thread, tiny_lm):
    model = tiny_lm()
    adamw = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="--optim it began with"):
        MuonWithAdamW(model, SETTINGS).load_state_dict(adamw.state_dict())


def test_the_time_budget_ends_training_with_the_decay_finished(tmp_path, blocks, one_torch_thread, tiny_lm):
    model = tiny_lm()
    optimizer = MuonWithAdamW(model, SETTINGS)
    budget = TimeBudget(minutes=0.03)  # 1.8 s
    schedule = time_budget_schedule(optimizer, budget, warmup=2, decay_fraction=0.5)
    args = TrainingArguments(str(tmp_path), max_steps=100_000, per_device_train_batch_size=8, logging_steps=1,
                             report_to=[], use_cpu=True, seed=0, save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=blocks, optimizers=(optimizer, schedule), callbacks=[budget])
    trainer.train()
    assert 3 <= trainer.state.global_step < 100_000  # stopped by the budget, not the step count
    assert budget.elapsed_s >= budget.budget_s
    rates = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert rates[0] < rates[1] == pytest.approx(0.02)  # warmup, then the full rate
    assert schedule.get_last_lr()[0] <= 0.01 * 0.02  # decayed to (about) zero at the budget


def test_a_resumed_budget_counts_the_time_already_trained(tmp_path, blocks, one_torch_thread, tiny_lm):
    def run(resume=None):
        model = tiny_lm()
        optimizer = MuonWithAdamW(model, SETTINGS)
        budget = TimeBudget(minutes=0.02)
        args = TrainingArguments(str(tmp_path), max_steps=100_000, per_device_train_batch_size=8, save_steps=2,
                                 report_to=[], use_cpu=True, seed=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=blocks, callbacks=[budget],
                          optimizers=(optimizer, time_budget_schedule(optimizer, budget, 1, 0.5)))
        trainer.train(resume_from_checkpoint=resume)
        return trainer, budget

    first, budget = run()
    assert budget.elapsed_s >= budget.budget_s
    final = f"{tmp_path}/checkpoint-{first.state.global_step}"
    again, resumed = run(resume=final)
    assert resumed.elapsed_s >= budget.elapsed_s  # the saved time came back: no second budget's worth of steps
    assert again.state.global_step <= first.state.global_step + 1
