"""`train_teacher.py`: a timm teacher trained on a labeled folder and written as a teacher file."""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from timm.data import resolve_model_data_config

from distill.disk import write_json
from distill.entry import build_trainer
from distill.errors import user_errors
from distill.folders import class_folders

from .factory import describe, for_classes, save_teacher

log = logging.getLogger("train")


def train_teacher(cfg: DictConfig, checkpoint: str | None) -> dict:
    """Train `cfg.teacher` on the labeled `cfg.data.train_dir` with `cfg.finetune`, then
    write the teacher file (the better of the raw and EMA weights) and summary.json."""
    output_dir = Path(cfg.paths.output_dir)
    with user_errors():
        if not cfg.data.train_dir:
            raise ValueError("train_teacher.py needs data.train_dir=LABELED_FOLDER (ImageFolder layout)")
        classes = class_folders(cfg.data.train_dir)
        teacher = for_classes(instantiate(cfg.teacher), classes)
        size = resolve_model_data_config(teacher)["input_size"][-1]
        log.info("training teacher %s on %d classes", describe(teacher), len(classes))
        datamodule = instantiate(cfg.data, image_sizes={"teacher": size}, class_names=classes)
        module = instantiate(cfg.finetune, model=teacher)
        trainer = build_trainer(cfg)

    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
    if datamodule.val_set is not None and module.validated_at != trainer.global_step:
        trainer.validate(module, datamodule=datamodule, verbose=False)  # score the weights being saved

    top1 = trainer.callback_metrics.get("val/top1")
    path = save_teacher(module.best_model().cpu(), output_dir / "teacher.safetensors", cfg.teacher.name,
                        val_top1=None if top1 is None else float(top1))
    summary = {"teacher_file": str(path), "teacher": describe(module.model),
               "val/top1": None if top1 is None else float(top1)}
    write_json(output_dir / "summary.json", summary)
    print(f"\nteacher written to {path}" + (f" (val top-1 {float(top1):.4f})" if top1 is not None else "")
          + f"\ndistill with: python train.py teacher.name={cfg.teacher.name} teacher.checkpoint_path={path} ...")
    return summary
