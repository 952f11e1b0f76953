"""Create a frozen timm teacher whose `pretrained_cfg` holds its data config and class names.

A teacher checkpoint may carry a sidecar: `<name>.json` beside it (this project's format: timm name,
num_classes, input size, mean/std, class names) and/or `classes.txt` (one class name per line).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from safetensors.torch import load_file, save_file
from timm.data import resolve_model_data_config
from torch import nn

from distill.disk import atomic_write
from students import load_student

from .subset import class_subset


# Wrapper prefixes found in checkpoints: Lightning modules (this project's TeacherModule keeps `model.`),
# DDP (`module.`), and timm's EMA copies.
_PREFIXES = ("model.", "module.", "teacher.")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from .safetensors, timm/torch .pth/.pt/.bin, or a Lightning .ckpt, with wrapper prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher.checkpoint_path={path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch/safetensors raise many types for a corrupt file
        raise ValueError(f"teacher.checkpoint_path={path} could not be read ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"teacher.checkpoint_path={path} holds no state dict of tensors")
    if any(k.startswith("ema.module.") for k in state):  # TeacherModule with an EMA: the trained net is `model.`
        state = {k: v for k, v in state.items() if k.startswith("model.")}
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON sidecar and/or classes.txt, if present."""
    path = Path(path)
    meta: dict[str, Any] = {}
    if path.with_suffix(".json").is_file():
        meta = json.loads(path.with_suffix(".json").read_text())
    classes = path.parent / "classes.txt"
    if classes.is_file() and not meta.get("label_names"):
        meta["label_names"] = [line.strip() for line in classes.read_text().splitlines() if line.strip()]
    return meta


def _classifier_rows(name: str, state: dict[str, torch.Tensor]) -> int | None:
    classifier = timm.models.get_pretrained_cfg(name)
    key = f"{classifier.classifier}.weight" if classifier and isinstance(classifier.classifier, str) else None
    return int(state[key].shape[0]) if key in state else None


def create_teacher(
    name: str,
    checkpoint_path: str | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    img_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    label_names: Sequence[str] | None = None,
    classes: Sequence[int | str] | None = None,
) -> nn.Module:
    """A frozen, eval-mode timm classifier.

    Args:
        name: any timm model name (e.g. `resnet50`, `convnext_tiny`).
        checkpoint_path: local weights (works offline); its sidecar supplies the fields below, and a student
            file's (`student.safetensors`) the arguments that built it; `name` must be the one it names.
        pretrained: download timm's pretrained weights from the hub (needs network).
        num_classes: output classes; inferred from the checkpoint when omitted.
        img_size, mean, std: override the teacher's data config (default: timm's, or the sidecar's).
        label_names: class names in output order (default: the sidecar's / classes.txt).
        classes: restrict the teacher to these classes (output indices or names; `subset.ClassSubset`).
    """
    if not timm.is_model(name):
        raise ValueError(f"teacher.name={name!r} is not a timm model (see timm.list_models())")
    if checkpoint_path and pretrained:
        raise ValueError("set either teacher.checkpoint_path or teacher.pretrained=true, not both")
    state, meta = None, {}
    if checkpoint_path:
        meta = read_sidecar(checkpoint_path)
        if not meta.get("model_name"):  # a student file's weights are read once, by load_student below
            state = load_state_dict(checkpoint_path)
        found = (state is not None and _classifier_rows(name, state)) or meta.get("num_classes")
        if num_classes is not None and found is not None and num_classes != found:
            raise ValueError(f"teacher.num_classes={num_classes} but {checkpoint_path} has {found} classes; "
                             f"drop the override or fix the checkpoint")
        num_classes = num_classes or found
    label_names = label_names or meta.get("label_names")
    if label_names is not None and num_classes is not None and len(label_names) != num_classes:
        raise ValueError(f"the teacher's class list has {len(label_names)} names but it has {num_classes} outputs")

    overlay = {k: v for k, v in dict(
        input_size=(3, img_size or meta["img_size"], img_size or meta["img_size"])
        if img_size or meta.get("img_size") else None,
        mean=tuple(mean or meta.get("mean") or ()) or None,
        std=tuple(std or meta.get("std") or ()) or None,
        label_names=tuple(label_names) if label_names else None,
    ).items() if v is not None}
    if meta.get("model_name", name) != name:  # another name would build another net, which the weights may fit
        raise ValueError(f"teacher.checkpoint_path={checkpoint_path} holds a {meta['model_name']} "
                         f"(its sidecar); set teacher.name={meta['model_name']}")
    if meta.get("model_name"):  # a student file, rebuilt as it was trained (width, stem stride, padding), so a
        model = load_student(checkpoint_path)  # distilled student can teach a narrower one (Mirzadeh et al. 2020)
        model.pretrained_cfg = {**model.pretrained_cfg, **overlay}
    else:
        model = _create(name, pretrained, overlay, num_classes, state, checkpoint_path)
    model.requires_grad_(False).eval()
    model.teacher_name = name
    model.recorded_top1 = meta.get("val_top1")  # its top-1 when trained, to compare with on the user's data
    return class_subset(model, classes) if classes else model


def _create(name: str, pretrained: bool, overlay: dict, num_classes: int | None,
            state: dict[str, torch.Tensor] | None, checkpoint_path: str | None) -> nn.Module:
    kwargs = {"num_classes": num_classes} if num_classes else {}
    try:
        model = timm.create_model(name, pretrained=pretrained, pretrained_cfg_overlay=overlay, **kwargs)
    except Exception as err:
        if pretrained:
            raise ValueError(f"could not fetch pretrained weights for teacher.name={name} ({err}); offline, "
                             f"use teacher.checkpoint_path=LOCAL_FILE instead") from err
        raise
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:  # missing / unexpected keys or shape mismatches
            first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
            raise ValueError(f"teacher.checkpoint_path={checkpoint_path} does not fit timm's {name} ({first}); "
                             f"is teacher.name right?") from err
    return model


def for_classes(model: nn.Module, class_names: Sequence[str]) -> nn.Module:
    """Give `model` a fresh classifier for `class_names` unless its head already fits; record the names."""
    if model.num_classes != len(class_names):
        model.reset_classifier(len(class_names))
    model.pretrained_cfg = {**model.pretrained_cfg, "label_names": tuple(class_names), "num_classes": len(class_names)}
    return model


def describe(model: nn.Module) -> str:
    cfg = resolve_model_data_config(model)
    return (f"{getattr(model, 'teacher_name', type(model).__name__)}: {model.num_classes} classes, "
            f"{cfg['input_size'][-1]} px, mean {tuple(round(m, 3) for m in cfg['mean'])}, "
            f"std {tuple(round(s, 3) for s in cfg['std'])}")


def save_teacher(model: nn.Module, path: str | Path, name: str, val_top1: float | None = None) -> Path:
    """Write `path` (.safetensors), its JSON sidecar and classes.txt: what `create_teacher` reads back."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = resolve_model_data_config(model)
    label_names = list(model.pretrained_cfg.get("label_names") or [])
    meta = dict(name=name, num_classes=model.num_classes, img_size=cfg["input_size"][-1], mean=list(cfg["mean"]),
                std=list(cfg["std"]), label_names=label_names or None, val_top1=val_top1)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    if label_names:
        atomic_write(path.parent / "classes.txt", lambda tmp: tmp.write_text("\n".join(label_names) + "\n"))
    return path
