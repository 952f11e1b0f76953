"""timm registrations for the paper's MobileNet v1 family.

Names use `mobilenet_v1*`: timm already ships `mobilenetv1_100` (a different, ReLU6 definition),
so this family keeps its own prefix rather than shadowing it.
"""
from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .mobilenetv1 import MobileNetV1
from .slimmable import SlimmableMobileNetV1

# The classifier is deliberately not named here: timm drops a named classifier on a class-count
# mismatch and loads the rest silently; a distilled student file should load whole or fail loudly.
VARIANTS = ("mobilenet_v1", "mobilenet_v1_100", "mobilenet_v1_075", "mobilenet_v1_050", "mobilenet_v1_025",
            "mobilenet_v1_shallow_100", "slimmable_mobilenet_v1")
default_cfgs = generate_default_cfgs({
    name: dict(
        num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
        interpolation="bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        first_conv="stem.conv", classifier=None,
    )
    for name in VARIANTS
})


def _create(variant: str, pretrained: bool, **kwargs) -> MobileNetV1:
    return build_model_with_cfg(MobileNetV1, variant, pretrained, **kwargs)


@register_model
def mobilenet_v1(pretrained: bool = False, **kwargs) -> MobileNetV1:
    """Any width: `timm.create_model("mobilenet_v1", alpha=0.6)`."""
    return _create("mobilenet_v1", pretrained, **kwargs)


@register_model
def mobilenet_v1_100(pretrained: bool = False, **kwargs) -> MobileNetV1:
    return _create("mobilenet_v1_100", pretrained, **dict(kwargs, alpha=1.0))


@register_model
def mobilenet_v1_075(pretrained: bool = False, **kwargs) -> MobileNetV1:
    return _create("mobilenet_v1_075", pretrained, **dict(kwargs, alpha=0.75))


@register_model
def mobilenet_v1_050(pretrained: bool = False, **kwargs) -> MobileNetV1:
    return _create("mobilenet_v1_050", pretrained, **dict(kwargs, alpha=0.5))


@register_model
def mobilenet_v1_025(pretrained: bool = False, **kwargs) -> MobileNetV1:
    return _create("mobilenet_v1_025", pretrained, **dict(kwargs, alpha=0.25))


@register_model
def mobilenet_v1_shallow_100(pretrained: bool = False, **kwargs) -> MobileNetV1:
    return _create("mobilenet_v1_shallow_100", pretrained, **dict(kwargs, alpha=1.0, shallow=True))


@register_model
def slimmable_mobilenet_v1(pretrained: bool = False, **kwargs) -> SlimmableMobileNetV1:
    """Every width in [alpha_min, alpha_max] from one set of weights (Yu & Huang 2019)."""
    return build_model_with_cfg(SlimmableMobileNetV1, "slimmable_mobilenet_v1", pretrained, **kwargs)
