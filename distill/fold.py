"""The frozen teacher's BatchNorms folded into the convolutions before them (DistillModule applies it)."""
from __future__ import annotations

from collections import Counter

import torch
from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def split_norm_act(model: nn.Module) -> int:
    """Replace, in place, each of timm's `BatchNormAct2d` (a BatchNorm2d that also applies its dropout and
    activation, as timm's MobileNets and EfficientNets use) with `nn.Sequential(BatchNorm2d, drop, act)`:
    the same outputs, and a plain BatchNorm2d that torch.fx sees after its conv, so it can be folded.
    Return how many were split."""
    found = [(name, m) for name, m in model.named_modules() if type(m) is BatchNormAct2d]
    for name, m in found:
        bn = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        bn.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith(("drop.", "act."))},
                           assign=True)  # (its own tensors: their device and dtype)
        model.set_submodule(name, nn.Sequential(bn.train(m.training), m.drop, m.act))
    return len(found)


def fold_batchnorm_in_place(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into that conv's weights, in place, and
    return how many were folded (timm's BatchNormAct2d too, split first: `split_norm_act`). Only for a
    frozen teacher in eval mode: the outputs stay the same (within float rounding), one pass over each
    activation is saved (BENCHMARKS.md, "Speed"). Models that torch.fx cannot trace are left unfolded.
    (torch.fx's own `experimental.optimization.fuse`, which `students.export` uses, returns a GraphModule,
    which drops the timm model's attributes (pretrained_cfg, num_classes, ...) that the rest of the
    project reads; this folds in place.)"""
    if model.training:
        raise ValueError("fold_batchnorm_in_place is for models in eval mode (a training step would update the BN statistics)")
    split_norm_act(model)
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 (data-dependent control flow and the like: nothing folded)
        return 0
    modules, folded = dict(model.named_modules()), 0
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    for node in graph.nodes:
        prev = node.args[0] if node.op == "call_module" and node.args else None
        if (type(modules.get(node.target)) is nn.BatchNorm2d
                and getattr(prev, "op", None) == "call_module" and type(modules.get(prev.target)) is nn.Conv2d
                and len(prev.users) == 1 and calls[prev.target] == calls[node.target] == 1):
            model.set_submodule(prev.target, fuse_conv_bn_eval(modules[prev.target], modules[node.target]))
            model.set_submodule(node.target, nn.Identity())
            folded += 1
    return folded
