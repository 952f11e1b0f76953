"""The teacher stage against a plain PyTorch SGD loop, at equal wall time, on the same folder and cores.

    python benchmarks/teacher.py                         # CIFAR-10 (../shared/data/cifar10), about 60-70 min (the stage, then the loop for as long)
    python benchmarks/teacher.py --label-fraction 0.3333 # the label-budget teacher
    python benchmarks/teacher.py --budget-min 27         # the plain loop alone, for a given wall time
    python benchmarks/teacher.py --budget-min 22 --data TUNE --test-split val --save DIR
                                                         # an outside teacher (DIR/teacher.safetensors) for train.py

1. The stage: `python train_teacher.py experiment=cifar10_teacher` from nothing (a fresh decoded-image cache and run
   directory), timed as a whole command.
2. The plain loop, written here with torch, torchvision and timm only (no project code on its training
   path): timm resnet18, 4-pixel pad-and-crop + flip at 32 px, then upsampled to 64 px; SGD with
   Nesterov momentum 0.9, weight decay 5e-4, one-cycle to lr 0.2 with 25 % warm-up, batch 128, fp32.
   Its epoch count is set so that it takes the stage's wall time (timed on its first steps).
Both teachers are then scored on the test folder by the same evaluation (timm model, Resize to 64 px,
ImageNet mean/std), and the two rows printed side by side; results go to benchmarks/results/teacher_labels*.json
(the plain loop alone: teacher_labels*_plain_SPLIT.json).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_loader(folder: Path, size: int) -> DataLoader:
    tf = transforms.Compose([transforms.Resize(size, antialias=True), transforms.ToTensor(),
                             transforms.Normalize(MEAN, STD)])
    return DataLoader(datasets.ImageFolder(folder, tf), batch_size=256, num_workers=1)


@torch.inference_mode()
def top1(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    right = total = 0
    for x, y in loader:
        right += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return right / total


def run_stage(data: Path, label_fraction: float, work: Path) -> dict:
    """The documented stage command, from nothing, timed whole; its teacher scored on test."""
    run = work / "stage"
    command = [sys.executable, "train_teacher.py", "experiment=cifar10_teacher", f"recipe_data={data}",
               f"data.label_fraction={label_fraction}", f"data.decoded_cache={work / 'decoded'}",
               f"hydra.run.dir={run}"]
    print("stage:", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    meta = json.loads((run / "teacher.json").read_text())
    model = timm.create_model(meta["name"], num_classes=meta["num_classes"])
    model.load_state_dict(load_file(str(run / "teacher.safetensors")))
    return {"wall_s": round(wall, 1), "test_top1": top1(model, test_loader(data / "test", meta["img_size"])),
            "command": " ".join(command[1:])}


def labeled_subset(dataset: datasets.ImageFolder, fraction: float, seed: int = 0) -> Subset:
    """The same share of every class (a seeded draw), for the label-budget case."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(len(dataset.classes)):
        idx = [i for i, t in enumerate(dataset.targets) if t == c]
        keep += [idx[int(j)] for j in torch.randperm(len(idx), generator=g)[: round(fraction * len(idx))]]
    return Subset(dataset, sorted(keep))


def run_plain(data: Path, label_fraction: float, budget_s: float, test_split: str = "test", save: Path | None = None,
              batch: int = 128, max_lr: float = 0.2) -> dict:
    """The plain loop, with as many epochs as fit `budget_s` seconds (timed on its first 20 steps).

    `save`: a folder for its weights (timm's state dict, safetensors), to distill from as a teacher the project
    never trained: `teacher.name=resnet18 teacher.checkpoint_path=DIR/teacher.safetensors teacher.img_size=64`.
    """
    start = time.perf_counter()
    torch.manual_seed(0)
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.Resize(64, antialias=True), transforms.ToTensor(),
                                   transforms.Normalize(MEAN, STD)])
    train_set = datasets.ImageFolder(data / "train", train_tf)
    if label_fraction < 1:
        train_set = labeled_subset(train_set, label_fraction)
    loader = DataLoader(train_set, batch_size=batch, shuffle=True, drop_last=True, num_workers=1,
                        persistent_workers=True)
    test = test_loader(data / test_split, 64)

    def new_model():
        torch.manual_seed(0)
        return timm.create_model("resnet18", num_classes=10)

    def step(model, opt, x, y) -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def sgd(model, lr):
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)

    # Time 20 steps of the real thing (after 3 warm-up steps) to size the schedule to the budget.
    model = new_model()
    opt, batches = sgd(model, 0.05), (b for _ in itertools.count() for b in loader)
    for i in range(23):
        if i == 3:
            t0 = time.perf_counter()
        step(model, opt, *next(batches))
    step_s = (time.perf_counter() - t0) / 20
    eval_s = step_s * len(test.dataset) / batch / 3  # forward only, about a third of a step per image
    remaining = budget_s - (time.perf_counter() - start) - eval_s
    epochs = max(1, math.floor(remaining / (step_s * len(loader))))
    print(f"plain loop: {step_s * 1000:.0f} ms a step, {epochs} epochs to fit {budget_s / 60:.1f} min", flush=True)

    model = new_model()
    opt = sgd(model, max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=epochs * len(loader), pct_start=0.25)
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            step(model, opt, x, y)
            sched.step()
        print(f"plain loop: epoch {epoch + 1}/{epochs} at {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    score = top1(model, test)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), str(save / "teacher.safetensors"))
    return {"wall_s": round(time.perf_counter() - start, 1), "epochs": epochs, "test_top1": score}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--label-fraction", type=float, default=1.0)
    parser.add_argument("--test-split", default="test", help="the folder under --data to score on")
    parser.add_argument("--save", type=Path, default=None, help="keep the plain loop's teacher in this folder")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--budget-min", type=float, default=None,
                        help="skip the stage: run the plain loop alone for this many minutes")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 2)
    data = args.data.resolve()
    rows = []
    if args.budget_min is None:
        with tempfile.TemporaryDirectory() as tmp:
            stage = run_stage(data, args.label_fraction, Path(tmp))
        rows.append(("stage (experiment=cifar10_teacher)", stage))
    plain = run_plain(data, args.label_fraction, rows[0][1]["wall_s"] if rows else 60 * args.budget_min,
                      args.test_split, args.save)
    rows.append(("plain PyTorch SGD loop", plain))
    print(f"\nCIFAR-10 teacher, labels {args.label_fraction:g}, scored on {data / args.test_split}:")
    print(f"{'':36} {'wall min':>9} {'test top-1':>11}")
    for name, row in rows:
        print(f"{name:36} {row['wall_s'] / 60:9.1f} {100 * row['test_top1']:10.2f}%")
    # The plain loop alone (--budget-min) gets a file of its own: it must not replace a side-by-side result.
    plain_only = "" if args.budget_min is None else f"_plain_{args.test_split}"
    out = args.out or ROOT / "benchmarks" / "results" / f"teacher_labels{args.label_fraction:g}{plain_only}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**{("stage" if n.startswith("stage") else "plain"): r for n, r in rows},
                               "label_fraction": args.label_fraction}, indent=2) + "\n")


if __name__ == "__main__":
    main()
