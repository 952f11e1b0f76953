"""Distil a timm teacher into a MobileNet student, or (task=teacher) train the teacher itself.

    python train.py                       # the embedded demo, offline
    python train.py data.unlabeled_dir=D data.val_dir=V teacher.name=resnet18 teacher.checkpoint_path=C \
        student.alpha=0.5 student.img_size=32
"""
from __future__ import annotations

import errno
import gc
import logging
import os
import sys
from pathlib import Path

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from timm.data import resolve_model_data_config

import students
from students.cost import cost_report
from distill.cache import cache_soft_targets
from distill.callbacks import RunReport, Throughput
from distill.console import quiet
from distill.disk import write_json
from distill.errors import UserError, user_errors
from distill.folders import class_folders, skipped_counts
from distill.report import result_table
from distill.resume import continue_run
from distill.runtime import fast_cpu_defaults
from teachers import describe
from teachers.subset import subset_for_folders
from teachers.task import train_teacher

log = logging.getLogger("train")


def pick(table: DictConfig, key):
    """`${pick:${table},${key}}`: a config value chosen by another one, e.g. a recipe's epochs per alpha."""
    if key not in table:
        raise ValueError(f"no entry for {key!r} in {OmegaConf.to_container(table)}")
    return table[key]


OmegaConf.register_new_resolver("pick", pick, replace=True)


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer


def distill(cfg: DictConfig, checkpoint: str | None) -> dict:
    output_dir = Path(cfg.paths.output_dir)
    with user_errors():
        teacher = instantiate(cfg.teacher)
        if cfg.data.val_dir and not cfg.teacher.get("classes") and Path(cfg.data.val_dir).is_dir():
            teacher = subset_for_folders(teacher, class_folders(cfg.data.val_dir, "data.val_dir"))
        teacher_size = resolve_model_data_config(teacher)["input_size"][-1]
        student_size = cfg.student.img_size or teacher_size
        label_names = teacher.pretrained_cfg.get("label_names")
        log.info("teacher %s", describe(teacher))
        student = instantiate(cfg.student, num_classes=teacher.num_classes, img_size=student_size,
                              label_names=label_names)
        log.info("student %s alpha=%s at %d px, mean %s, std %s", cfg.student.name, cfg.student.alpha,
                 student_size, list(cfg.student.mean), list(cfg.student.std))
        datamodule = instantiate(cfg.data, image_sizes={"teacher": teacher_size, "student": student_size},
                                 class_names=label_names, num_classes=teacher.num_classes)
        module = instantiate(cfg.distill, teacher=teacher, student=student)
        if not module.soft_weight and not datamodule.train_dir:
            raise ValueError("distill.soft_weight=0 trains on hard labels alone (supervision=labels): "
                             "set data.train_dir to a labeled folder")
        if not module.soft_weight:
            datamodule.student_view_only("train")  # label-only: the teacher never sees a training image
        trainer = build_trainer(cfg)

    soft_targets = cache_soft_targets(module, datamodule, Path(cfg.paths.cache_dir) / "soft_targets") \
        if module.teacher_mode == "cached" else {}
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)

    report = next((c for c in trainer.callbacks if isinstance(c, RunReport)), None)
    summary = report.summary() if report else {"final": None, "best": None, "cost": cost_report(
        module.student, student_size, latency=False)}
    summary.update(teacher=describe(teacher), student=cfg.student.name, alpha=cfg.student.alpha,
                   img_size=student_size, train_images=len(datamodule.train_set),
                   skipped_files=skipped_counts(datamodule.skipped_log),
                   soft_target_cache=soft_targets,
                   throughput=next((c.stats for c in trainer.callbacks if isinstance(c, Throughput)), None))
    if trainer.is_global_zero:
        summary["student_file"] = str(students.save_student(module.student.cpu(), output_dir / "student", extra={
            "crop_pct": cfg.data.eval_crop_pct, "teacher": summary["teacher"], "metrics": summary["final"],
            "teacher_classes": getattr(teacher, "class_indices", None)}))
        write_json(output_dir / "summary.json", summary)
        print(result_table(summary))
    return summary


def train(cfg: DictConfig) -> dict:
    """Everything a run does, given a composed config (tests call this directly)."""
    fast_cpu_defaults()  # denormals flushed to zero, freed activation memory kept for the next step
    quiet()  # Lightning's tips and the warnings expected here, by name
    pl.seed_everything(cfg.seed, workers=True)
    try:
        with user_errors():
            if cfg.get("demo"):
                instantiate(cfg.demo)
            if cfg.get("teacher_stage") and cfg.task != "teacher":
                instantiate(cfg.teacher_stage)  # a recipe's teacher, trained once by `task=teacher` if missing
            checkpoint, lock = continue_run(cfg)
        with lock:
            if cfg.task == "teacher":
                return train_teacher(cfg, checkpoint, build_trainer)
            return distill(cfg, checkpoint)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise UserError(f"disk full while writing {err.filename or 'a file'}: files are written to a temporary "
                        f"name first, so no finished file was replaced; free space and rerun with resume=auto") from err
    finally:
        # A multirun runs its jobs one after another in this process. The trainer, module and data refer
        # to each other, so without a collection each job's teacher, student and open cache files
        # outlived it (measured: three jobs left three modules alive).
        gc.collect()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict | None:
    try:
        return train(cfg)
    except (UserError, FloatingPointError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return None  # the sweep goes on; its report lists this job as failed
        sys.exit(2 if isinstance(err, UserError) else 3)


if __name__ == "__main__":
    main()
