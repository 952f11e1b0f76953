"""How good a target the teacher's mean over an image's K views is: the teacher alone on a labeled folder,
top-1 of each cached view's logits against the view's logits moved toward the mean (`soft_targets.view_mean`).

    python benchmarks/view_mean.py experiment=cifar10_recipe recipe_data=TUNE data.val_dir=TUNE/val \
        teacher.checkpoint_path=DIR/teacher.safetensors teacher.img_size=64

Takes train.py's overrides: the teacher, the training views (crops, pad, flips) and K are the run's; the
images are `data.val_dir`'s, seen through those training views (a soft-target cache of K views is built
for them, beside the run's own, and reused). Prints one line per weight w and writes
benchmarks/results/view_mean.json. Where the mean scores higher, a student trained on it learns from a
better teacher than any single crop gives.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from timm.data import resolve_model_data_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.entry import register_resolvers  # noqa: E402
from distill.folders import labeled_files  # noqa: E402
from students import create_student  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main(overrides: list[str]) -> dict:
    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["soft_targets=cached", "data.skipped_log=null", *overrides])
    teacher = instantiate(cfg.teacher)
    size = resolve_model_data_config(teacher)["input_size"][-1]
    names = teacher.pretrained_cfg.get("label_names")
    module = instantiate(cfg.distill, teacher=teacher, student=create_student(teacher.num_classes, alpha=0.25,
                                                                              img_size=size))
    files, labels, _ = labeled_files(cfg.data.val_dir, names, "data.val_dir", teacher.num_classes)
    data = instantiate(cfg.data, image_sizes={"teacher": size, "student": size}, class_names=names,
                       num_classes=teacher.num_classes, unlabeled_dir=cfg.data.val_dir, val_dir=None, train_dir=None,
                       soft_targets=instantiate(cfg.soft_targets, teacher=module.frozen_teacher))
    data.served("train")
    report = data.soft_target_reports["train"]
    label_of = dict(zip(map(str, files), labels))
    y = np.array([label_of[str(f)] for f in data.train_set.files])
    z = np.load(report["path"]).astype(np.float32)  # K x N x C
    mean = z.mean(0)
    rows = {f"{w:g}": float(((((1 - w) * z + w * mean).argmax(-1)) == y).mean()) for w in WEIGHTS}
    result = {"teacher": cfg.teacher.checkpoint_path, "folder": cfg.data.val_dir, "images": len(y),
              "views": int(z.shape[0]), "top1_by_view_mean_weight": rows,
              "top1_of_each_view": [float((z[k].argmax(-1) == y).mean()) for k in range(len(z))]}
    for w, top1 in rows.items():
        print(f"view_mean={w}: teacher top-1 {100 * top1:.2f} % over {len(y)} images x {len(z)} views")
    out = ROOT / "benchmarks" / "results" / "view_mean.json"
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
