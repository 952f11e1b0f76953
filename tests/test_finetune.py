"""TeacherModule: a teacher really trains (BatchNorm in train mode), and its mixup, erasing and EMA options."""
from __future__ import annotations

import functools

import lightning.pytorch as pl
import pytest
import torch

from distill.data import DistillDataModule
from teachers import create_teacher, for_classes
from teachers.finetune import TeacherModule
from tests.conftest import CLASSES


def fit(folders, steps: int = 4, **options) -> TeacherModule:
    torch.manual_seed(0)
    teacher = for_classes(create_teacher("test_resnet", img_size=16), CLASSES)  # frozen, eval mode: as loaded
    module = TeacherModule(teacher, optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9), **options)
    data = DistillDataModule({"teacher": 16}, train_dir=str(folders["train"]), val_dir=str(folders["val"]),
                             class_names=CLASSES, batch_size=8, num_workers=0, train_pad=2)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    return module


def test_teacher_trains_with_batch_statistics(folders):
    """A teacher arrives frozen and in eval mode; training it must use (and update) BatchNorm's batch
    statistics: in eval mode the running statistics stay at their initial 0 / 1 and the net trains
    without normalisation."""
    module = fit(folders)
    norms = [m for m in module.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(int(m.num_batches_tracked) == 4 for m in norms)
    assert all(p.requires_grad for p in module.model.parameters())


def test_ema_is_validated_and_kept_only_when_better(folders):
    module = fit(folders, ema_decay=0.5)
    metrics = module.trainer.callback_metrics
    assert {"val/top1_raw", "val/top1_ema", "val/top1"} <= set(metrics)
    assert float(metrics["val/top1"]) == max(float(metrics["val/top1_raw"]), float(metrics["val/top1_ema"]))
    assert module.best_model() is (module.ema.module if metrics["val/top1_ema"] > metrics["val/top1_raw"]
                                   else module.model)
    ema, raw = module.ema.module.state_dict(), module.model.state_dict()
    assert not all(torch.equal(ema[k], raw[k]) for k in raw)  # an average, not a copy
    assert not any(p.requires_grad for p in module.ema.parameters())


def test_mixup_trains_on_mixed_soft_targets(folders, monkeypatch):
    seen = []
    from timm.loss import SoftTargetCrossEntropy

    forward = SoftTargetCrossEntropy.forward
    monkeypatch.setattr(SoftTargetCrossEntropy, "forward",
                        lambda self, x, target: seen.append(target) or forward(self, x, target))
    fit(folders, steps=2, mixup={"mixup_alpha": 1.0, "cutmix_alpha": 0.0, "prob": 1.0}, erase_prob=0.5)
    assert len(seen) == 2
    for target in seen:
        torch.testing.assert_close(target.sum(1), torch.ones(len(target)))
        assert ((target > 0.1).sum(1) >= 1).all() and (target.max(1).values < 0.99).any()  # mixed, smoothed


def test_a_one_cycle_schedule_too_short_to_split_is_a_one_line_error(folders):
    """torch's OneCycleLR divides by zero when its warm-up is exactly one step (pct_start * steps == 1):
    a quick `trainer.max_steps=4` look at the teacher stage (pct_start 0.25) got a traceback from inside torch."""
    from distill.errors import UserError

    one_cycle = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, pct_start=0.25)
    with pytest.raises(UserError, match="4 training steps.*pct_start"):
        fit(folders, steps=4, scheduler=one_cycle)
    fit(folders, steps=5, scheduler=one_cycle)  # one step more trains


@pytest.mark.parametrize("pad", [0, 3])
def test_pad_and_crop_shifts_the_whole_image(pad):
    import random

    from distill.views import CropViews

    img = torch.arange(3 * 8 * 8, dtype=torch.uint8).view(3, 8, 8)
    views = CropViews({"teacher": 8}, train=True, pad=pad, hflip=False)
    for seed in range(20):
        out = views(img, random.Random(seed))["teacher"]
        if pad == 0:
            continue
        top, left, _, _ = views.box(8, 8, random.Random(seed))
        assert -pad <= top <= pad and -pad <= left <= pad
        shifted = torch.zeros_like(img)  # the image moved by (-top, -left), the uncovered border zero
        src = img[:, max(0, top):8 + min(0, top), max(0, left):8 + min(0, left)]
        shifted[:, max(0, -top):max(0, -top) + src.shape[1], max(0, -left):max(0, -left) + src.shape[2]] = src
        assert torch.equal(out, shifted)


def test_randaugment_is_a_function_of_the_seed():
    import random

    from distill.views import CropViews

    ramp = torch.arange(32) * 7
    img = torch.stack([ramp[None, :] + 0 * ramp[:, None], ramp[:, None] + 0 * ramp[None, :],
                       (ramp[None, :] + ramp[:, None]) // 2]).to(torch.uint8)  # smooth: resizing is near-exact
    views = CropViews({"teacher": 32, "student": 16}, train=True, pad=4, augment="rand-m9-mstd0.5")
    state = random.getstate()
    a, b = views(img, random.Random(7)), views(img, random.Random(7))
    assert torch.equal(a["teacher"], b["teacher"]) and random.getstate() == state  # global RNG untouched
    assert any(not torch.equal(views(img, random.Random(s))["teacher"], a["teacher"]) for s in range(3))
    down = torch.nn.functional.avg_pool2d(a["teacher"].float()[None], 2)[0]
    assert (down - a["student"].float()).abs().mean() < 8  # both views went through the same operations


def test_bad_randaugment_string_is_one_line_error():
    from distill.views import CropViews

    with pytest.raises(ValueError, match="data.train_augment='rand-x9'"):
        CropViews({"teacher": 8}, train=True, augment="rand-x9")


@pytest.mark.parametrize("experiment", ["cifar10_teacher", "imagenette_teacher"])
def test_teacher_stage_trains_in_bf16_only_where_bf16_is_native(experiment, monkeypatch):
    """Emulated bf16 (a CPU without AVX512-BF16) trained the stage's resnet18 14x slower than fp32, so its
    time budget kept 97 of 4,095 steps; the stage's precision follows the hardware."""
    from distill import entry
    from tests.conftest import compose_cfg

    entry.register_resolvers()
    cfg = compose_cfg([f"experiment={experiment}"], config_name="train_teacher")
    for native, precision in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(entry, "bf16_fast", lambda device, native=native: native)
        assert cfg.trainer.precision == precision  # resolved on access, on the machine that runs it
    assert entry.fast_precision("mps") == "32-true"
    assert cfg.callbacks.time_budget.minutes  # and on a slow machine it trains fewer steps, not for hours
