"""The wall-time budget: a run that would not fit is shortened with its schedule, and keeps that on resume."""
from __future__ import annotations

from functools import partial

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from distill.callbacks import TimeBudget

MAX_LR = 0.2


class Tiny(pl.LightningModule):
    """A linear model with the one-cycle schedule of the teacher stage, built as the project's modules do."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)
        self.scheduler_fn = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=MAX_LR, pct_start=0.25)
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=MAX_LR)
        scheduler = self.scheduler_fn(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class StepClock:
    """One second per training step: the budget's arithmetic without real time."""

    def __init__(self):
        self.trainer = None

    def __call__(self) -> float:
        return float(self.trainer.global_step) if self.trainer else 0.0


class StopAt(pl.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            trainer.should_stop = True  # (the run stops here; its last.ckpt is this step's)


def fit(tmp_path, minutes, max_steps=100, ckpt_path=None, stop_at=None, jobs_at_once=1):
    clock = StepClock()
    budget = TimeBudget(minutes, jobs_at_once, warmup_steps=2, measure_steps=4, reserve=0.0, clock=clock)
    callbacks = [budget, pl.callbacks.ModelCheckpoint(tmp_path, save_last=True, save_top_k=0, every_n_train_steps=1)]
    if stop_at is not None:
        callbacks.append(StopAt(stop_at))
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks)
    clock.trainer = trainer
    model = Tiny()
    data = DataLoader(TensorDataset(torch.randn(640, 4)), batch_size=4)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return trainer, model


def one_cycle_lrs(total_steps: int) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=MAX_LR)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=MAX_LR, pct_start=0.25, total_steps=total_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_a_run_over_budget_is_shortened_and_its_schedule_still_anneals(tmp_path):
    trainer, model = fit(tmp_path, minutes=40 / 60)  # one second a step: 40 of the 100 steps fit
    assert trainer.global_step == 40
    short = one_cycle_lrs(40)
    # from the decision on (step 6) the rate follows a one-cycle schedule of 40 steps, down to its floor
    assert model.lrs[7:] == pytest.approx(short[7:], rel=1e-6)
    assert model.lrs[-1] < MAX_LR / 1000
    assert model.lrs[:6] == pytest.approx(one_cycle_lrs(100)[:6], rel=1e-6)


def test_jobs_side_by_side_each_get_the_machine_time_of_the_budget(tmp_path):
    trainer, model = fit(tmp_path, minutes=20 / 60, jobs_at_once=2)  # two jobs on half the cores: 2 x 20 s
    assert trainer.global_step == 40
    assert model.lrs[7:] == pytest.approx(one_cycle_lrs(40)[7:], rel=1e-6)


def test_a_run_within_budget_is_untouched(tmp_path):
    trainer, model = fit(tmp_path, minutes=5, max_steps=60)  # 300 s for 60 steps of one second
    assert trainer.global_step == 60 and model.lrs == pytest.approx(one_cycle_lrs(60), rel=1e-6)


def test_no_budget_is_no_change(tmp_path):
    trainer, model = fit(tmp_path, minutes=None, max_steps=30)
    assert trainer.global_step == 30 and model.lrs == pytest.approx(one_cycle_lrs(30), rel=1e-6)


def test_a_resumed_run_keeps_the_shortened_length_and_schedule(tmp_path):
    whole, whole_model = fit(tmp_path / "whole", minutes=40 / 60)
    fit(tmp_path / "cut", minutes=40 / 60, stop_at=20)
    ckpt = tmp_path / "cut" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 20
    # resumed with a budget that alone would fit everything: the decision in the checkpoint wins
    resumed, resumed_model = fit(tmp_path / "cut", minutes=5, ckpt_path=str(ckpt))
    assert resumed.global_step == whole.global_step == 40
    assert resumed_model.lrs == pytest.approx(whole_model.lrs[-len(resumed_model.lrs):], rel=1e-6)


def test_bad_budget_is_a_config_error():
    with pytest.raises(ValueError, match="time_budget"):
        TimeBudget(minutes=0)
    with pytest.raises(ValueError, match="jobs_at_once"):
        TimeBudget(minutes=5, jobs_at_once=0)
