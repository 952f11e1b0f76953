"""A universally slimmable MobileNet v1 (Yu & Huang, ICCV 2019, "Universally Slimmable Networks and
Improved Training Techniques"), written from the paper.

One set of weights at the widest width `alpha_max`; running at width `alpha` uses the first
`channel_plan(alpha)` channels of every layer, rounded exactly as the plain v1 rounds them. Any width
in [alpha_min, alpha_max] can be taken out (`extract`) as a plain `mobilenet_v1` student file.

BatchNorm: the affine parameters are shared (sliced) by all widths. Running statistics are tracked at
the widest width only, which is what validation during training scores; a narrower width's statistics
are recalibrated on data after training (the paper's "BN calibration"), because statistics shared
across widths belong to none of them.
"""
from __future__ import annotations

from typing import Sequence

import timm
import torch
import torch.nn.functional as F

from .mobilenetv1 import ConvBnAct, MobileNetV1, channel_plan

DEFAULT_WIDTHS = (1.0, 0.75, 0.5, 0.25)


class SlimmableMobileNetV1(MobileNetV1):
    """MobileNet v1 that runs at any width in [alpha_min, alpha_max] (`width`, or `at_width`).

    Args:
        alpha_min, alpha_max: the width range trained (the sandwich rule's narrowest and widest).
        widths: the widths taken out as plain students at the end of a run.
        sandwich: random widths per training step, besides the widest and the narrowest.
        plain_args: `MobileNetV1`'s other arguments (act, drop_rate, shallow, stem_stride, in_chans).
    """

    def __init__(self, num_classes: int = 1000, alpha_min: float = 0.25, alpha_max: float = 1.0,
                 widths: Sequence[float] = DEFAULT_WIDTHS, sandwich: int = 2, **plain_args):
        super().__init__(num_classes, alpha_max, **plain_args)
        if not 0 < alpha_min <= alpha_max:
            raise ValueError(f"student.alpha_min={alpha_min}: must be in (0, student.alpha_max={alpha_max}]")
        if outside := [w for w in widths if not alpha_min <= w <= alpha_max]:
            raise ValueError(f"student.widths {outside} are outside [alpha_min, alpha_max] = [{alpha_min}, {alpha_max}]")
        if sandwich < 0:
            raise ValueError(f"student.sandwich={sandwich}: the number of random widths per step must be >= 0")
        self.alpha_min, self.alpha_max, self.sandwich = alpha_min, alpha_max, sandwich
        self.widths = tuple(sorted(set(widths), reverse=True))
        self.plain_args = plain_args  # the widths taken out are plain nets built with these
        self.width = alpha_max

    def _check(self, alpha: float) -> float:
        if not self.alpha_min <= alpha <= self.alpha_max:
            raise ValueError(f"width {alpha} is outside the trained range [{self.alpha_min}, {self.alpha_max}]")
        return alpha

    def at_width(self, alpha: float) -> "SlimmableMobileNetV1":
        self.width = self._check(alpha)
        return self

    def sandwich_widths(self, generator: torch.Generator | None = None) -> list[float]:
        """The sandwich rule: widest, `sandwich` widths drawn uniformly in between, narrowest."""
        span = self.alpha_max - self.alpha_min
        drawn = (self.alpha_min + span * torch.rand(self.sandwich, generator=generator)).tolist()
        return [self.alpha_max, *sorted(drawn, reverse=True), self.alpha_min]

    def _layer(self, layer: ConvBnAct, x: torch.Tensor, out: int) -> torch.Tensor:
        conv, bn = layer.conv, layer.bn
        depthwise = conv.groups > 1
        weight = conv.weight[:out] if depthwise else conv.weight[:out, : x.shape[1]]
        x = F.conv2d(layer.pad(x), weight, None, conv.stride, conv.padding, conv.dilation,
                     groups=out if depthwise else 1)
        # Running statistics: updated at the widest width only, read at every width in eval mode.
        stats = not self.training or self.width == self.alpha_max
        return layer.act(F.batch_norm(x, bn.running_mean[:out] if stats else None,
                                      bn.running_var[:out] if stats else None, bn.weight[:out], bn.bias[:out],
                                      self.training, bn.momentum, bn.eps))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        plan = channel_plan(self.width, self.shallow)
        x = self._layer(self.stem, x, plan[0])
        for i, block in enumerate(self.blocks):
            x = self._layer(block.pw, self._layer(block.dw, x, plan[i]), plan[i + 1])
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.global_pool(x).flatten(1))  # B,C(width)
        return x if pre_logits else F.linear(x, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)

    @torch.no_grad()
    def extract(self, alpha: float) -> MobileNetV1:
        """Width `alpha` as a plain timm `mobilenet_v1` (same data config, weights and statistics sliced):
        its logits are this net's at `at_width(alpha)`, in eval mode."""
        args = dict(alpha=self._check(alpha), **self.plain_args)
        overlay = {k: self.pretrained_cfg[k] for k in ("input_size", "mean", "std", "crop_pct", "label_names")
                   if k in self.pretrained_cfg}
        plain = timm.create_model("mobilenet_v1", num_classes=self.num_classes, pretrained_cfg_overlay=overlay, **args)
        plain.model_args = args
        wide = self.state_dict()
        plain.load_state_dict({k: wide[k][tuple(slice(0, n) for n in v.shape)] for k, v in plain.state_dict().items()})
        return plain.to(self.classifier.weight.device).eval()
