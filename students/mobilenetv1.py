"""MobileNet v1 exactly as in Howard et al. 2017 (arXiv 1704.04861), Table 1.

A full 3x3 conv, 13 depthwise-separable blocks, global average pooling and one linear classifier.
Width multiplier `alpha` thins every layer (channels rounded to a multiple of 8, as timm does);
the resolution multiplier is only the input size, thanks to adaptive pooling.
"""
from __future__ import annotations

import torch
from torch import nn
from timm.layers import make_divisible

# (out_channels at alpha=1, depthwise stride) for the 13 separable blocks of Table 1.
ARCH: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),  # the five 14x14x512 blocks
    (1024, 2), (1024, 1),
)
SHALLOW_DROP = slice(6, 11)  # "shallow" MobileNet (Table 5) removes the five 14x14x512 blocks
STEM_CHANNELS = 32
DW_KERNEL = 3
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


def round_channels(channels: int, alpha: float) -> int:
    return make_divisible(channels * alpha, 8)


def channel_plan(alpha: float, shallow: bool = False) -> list[int]:
    """Output channels of the stem and of each separable block at width `alpha` (the last is the feature width)."""
    arch = [out for i, (out, _) in enumerate(ARCH) if not (shallow and SHALLOW_DROP.start <= i < SHALLOW_DROP.stop)]
    return [round_channels(c, alpha) for c in (STEM_CHANNELS, *arch)]


def map_sizes(img_size: int, stem_stride: int, strides: list[int]) -> list[int]:
    """The side of the map each separable block's depthwise conv sees, for a square input of `img_size`."""
    side, sizes = (img_size - 1) // stem_stride + 1, []  # a 3x3 conv with padding 1: ceil(side / stride)
    for stride in strides:
        sizes.append(side)
        side = (side - 1) // stride + 1
    return sizes


class ConvBnAct(nn.Module):
    """conv -> BN -> act; named so `students.export.fused_copy` can fold `bn` into `conv`.

    `pad_first`: zero-pad in a layer of its own and convolve unpadded. The same numbers; it is for maps
    smaller than the kernel, where torch's CPU backward of a padded depthwise conv is 5-10x slower than
    that of the pre-padded one (BENCHMARKS.md, "Speed")."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, groups: int, act: type[nn.Module],
                 pad_first: bool = False):
        super().__init__()
        self.pad = nn.ZeroPad2d(kernel // 2) if pad_first else nn.Identity()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, 0 if pad_first else kernel // 2, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = act(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


class SeparableBlock(nn.Sequential):
    """3x3 depthwise (does the striding) then 1x1 pointwise (mixes channels)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, act: type[nn.Module], pad_first: bool = False):
        super().__init__()
        self.dw = ConvBnAct(in_chs, in_chs, DW_KERNEL, stride, groups=in_chs, act=act, pad_first=pad_first)
        self.pw = ConvBnAct(in_chs, out_chs, 1, 1, groups=1, act=act)


class MobileNetV1(nn.Module):
    """MobileNet v1.

    Args:
        num_classes: classifier outputs (the teacher's class count when distilling).
        alpha: width multiplier in (0, 2]; 1.0 / 0.75 / 0.5 / 0.25 are the paper's.
        act: "relu" (the paper) or "relu6" (timm's and TF's default).
        drop_rate: dropout before the classifier.
        shallow: drop the five 14x14x512 blocks (the paper's Table 5 "shallow" net).
        stem_stride: 2 as in the paper; 1 for small inputs (32-64 px) so the last feature map is not 1x1.
        in_chans: input channels.
        img_size: the input size it is built for, if known: depthwise convs whose map is smaller than their
            kernel at that size pad first (`ConvBnAct`), which only makes training faster. Any input size
            still works, with the same numbers.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        alpha: float = 1.0,
        act: str = "relu",
        drop_rate: float = 0.0,
        shallow: bool = False,
        stem_stride: int = 2,
        in_chans: int = 3,
        img_size: int | None = None,
    ):
        super().__init__()
        if not 0 < alpha <= 2:
            raise ValueError(f"student.alpha={alpha}: the width multiplier must be in (0, 2]")
        if act not in ACTIVATIONS:
            raise ValueError(f"student.act={act!r}: choose one of {sorted(ACTIVATIONS)}")
        if stem_stride not in (1, 2):
            raise ValueError(f"student.stem_stride={stem_stride}: use 2 (paper) or 1 (small inputs)")
        act_layer = ACTIVATIONS[act]
        strides = [stride for i, (_, stride) in enumerate(ARCH)
                   if not (shallow and SHALLOW_DROP.start <= i < SHALLOW_DROP.stop)]
        plan = channel_plan(alpha, shallow)

        self.num_classes, self.alpha, self.drop_rate, self.shallow = num_classes, alpha, drop_rate, shallow
        self.stem = ConvBnAct(in_chans, plan[0], 3, stem_stride, groups=1, act=act_layer)
        pad_first = [side < DW_KERNEL for side in map_sizes(img_size, stem_stride, strides)] if img_size else \
            [False] * len(strides)
        self.blocks = nn.Sequential(*(SeparableBlock(plan[i], plan[i + 1], stride, act_layer, pad_first[i])
                                      for i, stride in enumerate(strides)))
        self.num_features = plan[-1]
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # timm's classifier API, so timm utilities (reset_classifier, create_model(num_classes=...)) work.
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))  # B,3,H,W -> B,C,H/32,W/32 (H/16 with stem_stride=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.global_pool(x).flatten(1))  # B,C
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
