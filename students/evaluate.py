"""Top-1 of a saved student on any labeled folder, with nothing from the training run but its file:

    python -m students.evaluate RUN_DIR_OR_STUDENT_FILE LABELED_FOLDER [--batch-size 256]

The student file's sidecar gives its resolution, normalisation, centre-crop share and class names;
the folder's class sub-folders are matched to those names (ImageFolder layout).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from timm.data import resolve_model_data_config
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy
from tqdm import tqdm

from distill.data import ImageFiles, default_num_workers, labeled_files
from distill.normalize import Normalize
from distill.views import CropViews

from . import load_student


def student_file(path: str | Path) -> Path:
    path = Path(path)
    file = path / "student.safetensors" if path.is_dir() else path
    if not file.is_file() or not file.with_suffix(".json").is_file():
        raise FileNotFoundError(f"{path}: no student file with its .json sidecar (a run directory or "
                                f"student.safetensors)")
    return file


def eval_loader(model: torch.nn.Module, files, labels=None, batch_size: int = 256, num_workers: int = 0) -> DataLoader:
    """Batches of `files` as `model` (a loaded student) sees them at evaluation: its centre crop and
    resolution, uint8 under "student" (normalise with `Normalize(model)`), and "label"."""
    cfg = resolve_model_data_config(model)
    views = CropViews({"student": cfg["input_size"][-1]}, train=False, crop_pct=cfg["crop_pct"])
    return DataLoader(ImageFiles(files, labels, views), batch_size=batch_size, num_workers=num_workers)


@torch.inference_mode()
def evaluate(student: str | Path, folder: str | Path, batch_size: int = 256, num_workers: int | None = None) -> dict:
    """{"top1", "images", "per_class"} of the student on the labeled `folder`."""
    model = load_student(student_file(student)).to(memory_format=torch.channels_last)
    names = model.pretrained_cfg.get("label_names")
    files, labels, folders = labeled_files(folder, names, "folder", model.num_classes)
    loader = eval_loader(model, files, labels, batch_size, default_num_workers() if num_workers is None else num_workers)
    normalize = Normalize(model, torch.channels_last)
    top1 = MulticlassAccuracy(model.num_classes, average="micro")
    per_class = MulticlassAccuracy(model.num_classes, average=None)
    for batch in tqdm(loader, desc="evaluate", unit="batch"):
        logits = model(normalize(batch["student"]))
        top1.update(logits, batch["label"])
        per_class.update(logits, batch["label"])
    class_names = names or folders
    present = sorted(set(labels))
    return {"top1": float(top1.compute()), "images": len(files),
            "per_class": {class_names[c]: float(per_class.compute()[c]) for c in present}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("student", help="a run directory (its student.safetensors) or a student .safetensors file")
    parser.add_argument("folder", help="a labeled folder: one sub-folder per class, named as the student's classes")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.student, args.folder, args.batch_size, args.num_workers)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"top-1 {100 * result['top1']:.2f} % on {result['images']:,} images of {args.folder}")


if __name__ == "__main__":
    main()
