"""The frozen teacher's BatchNorms folded into its convolutions (distill.fold)."""
from __future__ import annotations

import copy

import pytest
import timm
import torch

from distill.fold import fold_batchnorm_in_place


def test_folding_batchnorm_keeps_the_teachers_outputs():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=5)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics as if trained
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    reference = copy.deepcopy(model)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm_in_place(copy.deepcopy(model).train())

    assert fold_batchnorm_in_place(model) == 20  # every BatchNorm of resnet18 follows a conv
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(4, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)
    assert model.num_classes == 5 and model.pretrained_cfg == reference.pretrained_cfg  # still the timm model


def test_folding_reaches_timms_norms_that_also_activate():
    """timm's MobileNets and EfficientNets norm with BatchNormAct2d (BatchNorm, then its activation, in one
    module): split into the two, every one of mobilenetv3_small_050's 34 folds, with the same outputs."""
    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=5)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    reference = copy.deepcopy(model)

    assert fold_batchnorm_in_place(model) == 34
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)
    assert reference(x).abs().max() > 0.1  # (not a comparison of near-zero outputs)
