"""Build students by name, and write/read the standalone student file (safetensors + JSON)."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from distill.disk import atomic_write

V1_PREFIX = "mobilenet_v1"
SLIMMABLE = "slimmable_mobilenet_v1"
SMALL_INPUT = 96  # below this, a stride-2 stem leaves too little spatial extent (1x1 at 32 px)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def create_student(
    num_classes: int,
    name: str = "mobilenet_v1",
    alpha: float = 1.0,
    img_size: int = 224,
    act: str = "relu",
    drop_rate: float = 0.0,
    shallow: bool = False,
    stem_stride: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    label_names: Sequence[str] | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """A randomly initialised student whose `pretrained_cfg` carries its own data config.

    Args:
        num_classes: the teacher's class count.
        name: `mobilenet_v1` (the paper's net; width from `alpha`) or any timm model name
            (`mobilenetv2_050`, `mobilenetv3_small_100`, ...; width is in the name).
        alpha: width multiplier, for `mobilenet_v1` only.
        img_size: the student's input resolution (rho = img_size / 224).
        act, shallow, stem_stride: `mobilenet_v1` options (see `MobileNetV1`); stem_stride None picks
            1 (the small-input stem) below 96 px and the paper's 2 otherwise.
        drop_rate: dropout before the classifier.
        mean, std: the student's input normalisation (stored with the student file).
        label_names: class names, stored with the student file.
        model_kwargs: further arguments of the timm model, e.g. `alpha_min`, `alpha_max`, `widths` and
            `sandwich` of `slimmable_mobilenet_v1` (see `SlimmableMobileNetV1`).
    """
    if name not in timm.list_models(name):
        raise ValueError(f"student.name={name!r} is not a timm model; try `mobilenet_v1` or e.g. `mobilenetv2_050`")
    if img_size < 16:
        raise ValueError(f"student.img_size={img_size} is too small: use at least 16 px")
    if stem_stride is None:
        stem_stride = 1 if img_size < SMALL_INPUT else 2
    # (lists from a config arrive as OmegaConf containers: plain ones go into the student file)
    kwargs: dict[str, Any] = dict(num_classes=num_classes, drop_rate=drop_rate, **{
        k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in model_kwargs.items()})
    if name == V1_PREFIX:
        kwargs.update(alpha=alpha, act=act, shallow=shallow, stem_stride=stem_stride, img_size=img_size)
    elif name.startswith(V1_PREFIX):  # a fixed-width variant such as mobilenet_v1_050
        kwargs.update(act=act, stem_stride=stem_stride, img_size=img_size)
    elif name == SLIMMABLE:
        if alpha != 1.0:
            raise ValueError(f"student.alpha={alpha}: a slimmable student's widths are student.alpha_min to "
                             f"student.alpha_max")
        kwargs.update(act=act, shallow=shallow, stem_stride=stem_stride, img_size=img_size)
    elif alpha != 1.0:
        raise ValueError(f"student.alpha={alpha} applies to mobilenet_v1 only; timm models carry their width "
                         f"in the name (e.g. mobilenetv2_050)")
    data_cfg = dict(input_size=(3, img_size, img_size), mean=tuple(mean), std=tuple(std), crop_pct=1.0,
                    label_names=tuple(label_names) if label_names else None)
    model = timm.create_model(name, pretrained=False, pretrained_cfg_overlay=data_cfg, **kwargs)
    model.model_args = {k: v for k, v in kwargs.items() if k != "num_classes"}  # to rebuild it from the file
    if not _builds_its_own_padding(name):
        pad_first_on_small_maps(model, img_size)
    return model


def _builds_its_own_padding(name: str) -> bool:
    return name.startswith(V1_PREFIX) or name == SLIMMABLE  # `MobileNetV1(img_size=...)`


def pad_first_on_small_maps(model: nn.Module, img_size: int) -> int:
    """Make each depthwise conv whose map is smaller than its kernel at `img_size` pad its input first (a
    forward pre-hook) and convolve unpadded: the same numbers, and there torch's CPU backward of the padded
    conv is many times slower (BENCHMARKS.md, "Speed"). For timm's students, whose modules are timm's;
    `mobilenet_v1` builds the same in as a layer of its own, since the slimmable student calls `F.conv2d` on
    sliced weights, which a module hook would not see. Returns how many convs changed."""
    convs = [m for m in model.modules() if type(m) is nn.Conv2d and m.groups > 1 and m.padding_mode == "zeros"
             and isinstance(m.padding, tuple) and any(m.padding)]
    sides: dict[nn.Module, int] = {}

    def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:  # (a hook's return replaces `out`)
        sides[module] = min(args[0].shape[-2:])

    hooks = [c.register_forward_hook(record) for c in convs]
    training = model.training
    try:
        with torch.no_grad():
            channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
            model.eval()(torch.zeros(1, channels, img_size, img_size))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    small = [c for c in convs if sides.get(c, img_size) < min(c.kernel_size)]
    for conv in small:
        (ph, pw), conv.padding = conv.padding, (0, 0)
        conv.register_forward_pre_hook(functools.partial(_pad_input, pad=(pw, pw, ph, ph)))
    return len(small)


def _pad_input(module: nn.Module, args: tuple, pad: tuple[int, int, int, int]) -> tuple:
    return (F.pad(args[0], pad), *args[1:])


def save_student(model: nn.Module, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `path` (.safetensors) and its sidecar `path.with_suffix('.json')`; returns the weights path."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "to_plain"):  # a quantization-aware student ships as the plain one it trained
        model = model.to_plain()
    cfg = model.pretrained_cfg
    meta = dict(
        model_name=cfg["architecture"],
        model_args=getattr(model, "model_args", {}),
        num_classes=model.num_classes,
        img_size=cfg["input_size"][-1],
        mean=list(cfg["mean"]),
        std=list(cfg["std"]),
        interpolation=cfg.get("interpolation", "bilinear"),
        crop_pct=cfg.get("crop_pct", 1.0),  # the centre-crop share of evaluation (data.eval_crop_pct)
        label_names=list(cfg["label_names"]) if cfg.get("label_names") else None,
    )
    meta.update(extra or {})
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    text = json.dumps(meta, indent=2, default=str)
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"student": text}))
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(text + "\n"))
    return path


def load_student(path: str | Path) -> nn.Module:
    """Rebuild a student from its file with timm (after `import students`), weights loaded, in eval mode."""
    path = Path(path).with_suffix(".safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    overlay = dict(file=str(path), input_size=(3, meta["img_size"], meta["img_size"]), mean=tuple(meta["mean"]),
                   std=tuple(meta["std"]), crop_pct=meta.get("crop_pct", 1.0), num_classes=meta["num_classes"],
                   label_names=tuple(meta["label_names"]) if meta.get("label_names") else None)
    model = timm.create_model(meta["model_name"], pretrained=True, pretrained_cfg_overlay=overlay,
                              num_classes=meta["num_classes"], **meta["model_args"])
    model.model_args = meta["model_args"]
    if not _builds_its_own_padding(meta["model_name"]):
        pad_first_on_small_maps(model, meta["img_size"])
    return model.eval()
