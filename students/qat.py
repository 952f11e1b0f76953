"""Quantization-aware fine-tuning of a trained student, for when post-training INT8 loses too much.

    python train.py <the run's overrides> student=qat student.path=RUN/student.safetensors trainer.max_epochs=2
    python -m students.export QAT_RUN --int8

The student's BatchNorm is folded into its convolutions first, so the fake quantization acts on the very
weights the INT8 file stores: int8, symmetric per output channel over [-127, 127] (onnxruntime's grid for
QInt8 weights), uint8 activations. The graph is prepared by torch.ao's FX QAT (`prepare_qat_fx`: conv + ReLU
fused, fake-quant on weights and on every activation); it trains as any student of a distillation run, so
the loss stays the teacher's soft targets, online or from the run's soft-target cache. Its validation
top-1 is therefore the simulated INT8 one. The file it writes is a plain student again (the folded weights,
BatchNorm set to the identity), which `students.export --int8` quantizes onto the grid it was trained for.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from .export import fused_copy
from .factory import load_student
from .mobilenetv1 import ConvBnAct

with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
    warnings.simplefilter("ignore", DeprecationWarning)
    from torch.ao.quantization import (FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver,
                                       QConfig, QConfigMapping, disable_observer, enable_observer)
    from torch.ao.quantization.quantize_fx import prepare_qat_fx


def _qconfig_mapping() -> QConfigMapping:
    activation = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                        dtype=torch.quint8)
    # averaging_constant=1: each step's weight scale is max|w| / 127 of the weights as they are, as in the file
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, averaging_constant=1.0,
                                    quant_min=-127, quant_max=127, dtype=torch.qint8,
                                    qscheme=torch.per_channel_symmetric)
    return QConfigMapping().set_global(QConfig(activation=activation, weight=weight))


class QATStudent(nn.Module):
    """A trained MobileNet v1 with its BatchNorm folded and fake quantization on weights and activations.

    Observers follow the mode: they track activation ranges while training and are frozen for evaluation.
    `to_plain()` gives the student file's model back."""

    def __init__(self, plain: nn.Module):
        super().__init__()
        if not any(isinstance(m, ConvBnAct) for m in plain.modules()):
            raise ValueError(f"student=qat fine-tunes a mobilenet_v1 student; "
                             f"this file holds {plain.pretrained_cfg.get('architecture')}")
        self._plain = (plain.eval(),)  # a tuple: its weights are not this module's parameters (never changed)
        self.pretrained_cfg, self.num_classes = plain.pretrained_cfg, plain.num_classes
        self.alpha, self.model_args = getattr(plain, "alpha", None), getattr(plain, "model_args", {})
        size = plain.pretrained_cfg["input_size"][-1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = prepare_qat_fx(fused_copy(plain).train(), _qconfig_mapping(),  # (fused_copy copies)
                                      (torch.zeros(2, 3, size, size),))
        with torch.no_grad():  # weight scales from the start (activation ranges come with the first batch)
            for module in self.net.modules():
                if hasattr(module, "weight_fake_quant"):
                    module.weight_fake_quant(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> "QATStudent":
        super().train(mode)
        self.net.apply(enable_observer if mode else disable_observer)
        return self

    @torch.no_grad()
    def to_plain(self) -> nn.Module:
        """The plain student with this one's trained weights: each conv the folded one, its BatchNorm the
        identity (scale 1, shift the folded bias, mean 0, variance 1 - eps)."""
        plain = copy.deepcopy(self._plain[0])
        for name, block in plain.named_modules():
            if isinstance(block, ConvBnAct):
                trained = self.net.get_submodule(f"{name}.conv")
                block.conv.weight.copy_(trained.weight)
                block.bn.weight.fill_(1.0)
                block.bn.bias.copy_(trained.bias)
                block.bn.running_mean.zero_()
                block.bn.running_var.fill_(1.0 - block.bn.eps)
        trained = self.net.get_submodule("classifier")
        plain.classifier.weight.copy_(trained.weight)
        plain.classifier.bias.copy_(trained.bias)
        return plain.eval()


def qat_student(path: str | Path, num_classes: int, **_) -> QATStudent:
    """`student=qat`: the student file at `path`, ready for a quantization-aware fine-tune. Its architecture,
    width and resolution are the file's (the config's student keys are not used)."""
    path = Path(str(path))
    if not path.with_suffix(".safetensors").is_file():
        raise FileNotFoundError(f"student.path={path}: no student file there (a run's student.safetensors)")
    plain = load_student(path)
    if plain.num_classes != num_classes:
        raise ValueError(f"student.path={path}: the student has {plain.num_classes} classes, the teacher "
                         f"{num_classes}: fine-tune it with the teacher it was distilled from")
    return QATStudent(plain)
