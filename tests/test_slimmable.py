"""The slimmable MobileNet v1 (students/slimmable.py) and its distillation (distill/slimmable.py)."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from hydra.utils import instantiate

import students
from distill.errors import UserError
from distill.losses import logit_mse_loss
from distill.runtime import count_macs
from distill.slimmable import SlimmableDistillModule
from students.slimmable import SlimmableMobileNetV1
from train import train


def slimmable(**kwargs) -> SlimmableMobileNetV1:
    torch.manual_seed(0)
    return students.create_student(10, name="slimmable_mobilenet_v1", img_size=32, **kwargs)


def settle_statistics(model: torch.nn.Module, width: float) -> None:
    """A few training-mode batches, so the running statistics are not the initial 0 / 1."""
    model.train().at_width(width)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32) * 2 + 1)
    model.at_width(model.alpha_max).eval()


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.6, 0.25])
def test_a_width_taken_out_gives_the_slimmable_nets_logits(alpha, tmp_path):
    model = slimmable()
    settle_statistics(model, model.alpha_max)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model.at_width(alpha)(x)
        plain = model.extract(alpha)
        assert type(plain) is students.MobileNetV1 and plain.alpha == alpha
        torch.testing.assert_close(plain(x), expected, rtol=1e-4, atol=1e-5)
        # ... and so does its file, opened by timm (after `import students`) as any plain student
        reopened = students.load_student(students.save_student(plain, tmp_path / "w" / "student"))
        assert json.loads((tmp_path / "w" / "student.json").read_text())["model_name"] == "mobilenet_v1"
        torch.testing.assert_close(reopened(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.25])
def test_each_width_costs_what_the_plain_v1_costs(alpha):
    model = slimmable()
    plain = timm.create_model("mobilenet_v1", alpha=alpha, num_classes=10, stem_stride=1)
    params = sum(p.numel() for p in plain.parameters())
    assert sum(p.numel() for p in model.extract(alpha).parameters()) == params
    assert count_macs(model.extract(alpha), 32) == count_macs(plain, 32)
    assert count_macs(model.at_width(alpha), 32) == count_macs(plain, 32)  # the net running at that width
    model.at_width(1.0)


def test_running_statistics_are_tracked_at_the_widest_width_only():
    model = slimmable().train()
    before = model.stem.bn.running_mean.clone()
    with torch.no_grad():
        model.at_width(0.5)(torch.randn(8, 3, 32, 32) + 3)
    torch.testing.assert_close(model.stem.bn.running_mean, before)  # narrower widths: batch statistics only
    with torch.no_grad():
        model.at_width(1.0)(torch.randn(8, 3, 32, 32) + 3)
    assert not torch.equal(model.stem.bn.running_mean, before)


def test_sandwich_rule_widest_random_narrowest():
    model = slimmable(alpha_min=0.3, alpha_max=0.9, widths=[0.9, 0.3], sandwich=3)
    widths = model.sandwich_widths(torch.Generator().manual_seed(0))
    assert len(widths) == 5 and widths[0] == 0.9 and widths[-1] == 0.3
    assert all(0.3 <= w <= 0.9 for w in widths[1:-1])
    assert widths[1:-1] != model.sandwich_widths(torch.Generator().manual_seed(1))[1:-1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha_min=0.0), "alpha_min"),
    (dict(alpha_min=0.5, widths=[1.0, 0.25]), "outside"),
    (dict(sandwich=-1), "sandwich"),
    (dict(alpha=0.5), "alpha_min to student.alpha_max"),
])
def test_bad_slimmable_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        slimmable(**kwargs)


@pytest.mark.parametrize("narrow_targets", ["teacher", "widest", "both"])
def test_sandwich_step_sums_each_widths_loss(narrow_targets, make_cfg):
    cfg = make_cfg("student=slimmable_mobilenet_v1", "student.alpha=1.0", "distill.loss=mse",
                   f"distill.narrow_targets={narrow_targets}")
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    teacher.pretrained_cfg = dict(input_size=(3, 16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)
    student = instantiate(cfg.student, num_classes=10, img_size=16)
    module = instantiate(cfg.distill, teacher=teacher, student=student)
    assert isinstance(module, SlimmableDistillModule)
    batch = {"student": torch.rand(4, 3, 16, 16), "teacher_logits": torch.randn(4, 10), "label": -torch.ones(4).long()}

    torch.manual_seed(3)
    loss = module.step_loss(batch)
    assert student.width == student.alpha_max  # back at the widest width, which validation scores
    torch.manual_seed(3)
    widths = student.sandwich_widths()
    expected, widest = 0.0, None
    for width in widths:
        student.at_width(width)
        s = module(batch["student"])
        on_teacher, on_widest = logit_mse_loss(s, batch["teacher_logits"], 4.0), None
        if widest is not None:
            on_widest = logit_mse_loss(s, widest, 4.0)
        expected += {"teacher": on_teacher, "widest": on_widest if widest is not None else on_teacher,
                     "both": (on_teacher + on_widest) / 2 if widest is not None else on_teacher}[narrow_targets]
        widest = s.detach() if widest is None else widest
    torch.testing.assert_close(loss, expected)


def test_slimmable_needs_a_slimmable_student(make_cfg):
    cfg = make_cfg("distill=slimmable")
    with pytest.raises(UserError, match="student=slimmable_mobilenet_v1"):
        train(cfg)


def test_one_slimmable_run_writes_a_plain_student_per_width(make_cfg, tmp_path):
    cfg = make_cfg("student=slimmable_mobilenet_v1", "student.alpha=1.0", "student.widths=[1.0,0.5,0.25]",
                   "callbacks.widths.calibration_images=20")
    summary = train(cfg)
    run = tmp_path / "run"
    slim = students.load_student(run / "student.safetensors")
    assert [w["alpha"] for w in summary["widths"]] == [1.0, 0.5, 0.25]
    for width in summary["widths"]:
        plain = students.load_student(width["student_file"])
        assert width["student_file"] == str(run / "widths" / f"{width['alpha']:g}" / "student.safetensors")
        assert type(plain) is students.MobileNetV1 and plain.alpha == width["alpha"] and plain.num_classes == 3
        assert 0 <= width["final"]["val/top1"] <= 1 and 0 <= width["final"]["val/agreement"] <= 1
        assert width["cost"]["params"] == sum(p.numel() for p in plain.parameters())
        # the weights are the slimmable net's; the BatchNorm statistics were recalibrated at this width
        sliced = slim.extract(width["alpha"])
        torch.testing.assert_close(plain.blocks[0].pw.conv.weight, sliced.blocks[0].pw.conv.weight)
        assert not torch.allclose(plain.blocks[0].pw.bn.running_mean, sliced.blocks[0].pw.bn.running_mean)
    report = (run / "sweep.md").read_text()  # the report an alpha sweep writes, one row per width
    assert report.count("slimmable_mobilenet_v1-16") == 3
    assert json.loads((run / "summary.json").read_text())["widths"][2]["alpha"] == 0.25
