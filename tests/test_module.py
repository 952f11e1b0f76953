"""DistillModule: the student's bf16 policy (autocast in training where it pays; fp32 weights, logits and validation)."""
from __future__ import annotations

import pytest
import torch

import distill.module
import students
from distill.module import DistillModule, student_bf16_pays
from teachers import create_teacher


def _module(student_bf16, alpha=0.25, img_size=16) -> DistillModule:
    teacher = create_teacher("test_resnet", num_classes=3, img_size=img_size)
    return DistillModule(teacher, students.create_student(3, alpha=alpha, img_size=img_size), torch.optim.SGD,
                         student_bf16=student_bf16)


def _conv_dtypes(module: DistillModule, images: torch.Tensor) -> set[torch.dtype]:
    seen = set()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype)) for m in module.student.modules()
             if isinstance(m, torch.nn.Conv2d)]
    logits = module(images)
    for h in hooks:
        h.remove()
    assert logits.dtype == torch.float32  # the loss always sees fp32 logits
    return seen


def test_student_bf16_true_and_false():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert _conv_dtypes(_module(True), images) == {torch.bfloat16}
    assert _conv_dtypes(_module(False), images) == {torch.float32}
    assert _conv_dtypes(_module(True).eval(), images) == {torch.float32}  # validation: as exported
    module = _module(True)
    module(images).sum().backward()  # gradients land on fp32 weights: the optimizer never sees bf16
    assert {p.grad.dtype for p in module.student.parameters()} == {torch.float32}


@pytest.mark.parametrize("alpha, size, pays", [
    (1.0, 224, True),    # 569 M mult-adds at 224 px: 1.23x faster measured
    (0.75, 224, True),   # 325 M: 1.07x
    (0.5, 224, False),   # 149 M: 1.03x, a wash
    (1.0, 160, False),   # 290 M but 160 px: 0.95x
    (1.0, 128, False),   # 0.87x: the casts cost more than the convolutions gain
])
def test_auto_picks_bf16_for_big_students(alpha, size, pays):
    assert student_bf16_pays(students.create_student(10, alpha=alpha, img_size=size)) is pays


def test_auto_is_fp32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(distill.module, "student_bf16_pays", lambda student: True)
    module = _module("auto")
    monkeypatch.setattr(distill.module, "bf16_fast", lambda device_type: False)
    assert module.use_student_bf16 is False
    monkeypatch.setattr(distill.module, "bf16_fast", lambda device_type: True)
    assert module.use_student_bf16 is True
