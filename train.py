"""Distil a timm teacher into a MobileNet student (`train_teacher.py` trains a teacher).

    python train.py                       # the embedded demo, offline
    python train.py data.unlabeled_dir=D data.val_dir=V teacher.name=resnet18 teacher.checkpoint_path=C \
        student.alpha=0.5 student.img_size=32
"""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from timm.data import resolve_model_data_config

import students
from students.cost import cost_report
from distill.callbacks import RunReport, Throughput
from distill.disk import write_json
from distill.entry import build_trainer, exit_on_error, register_resolvers, run
from distill.errors import user_errors
from distill.folders import class_folders, skipped_counts
from distill.report import build_report, result_table, student_identity
from distill.slimmable import TakeOutWidths
from teachers import describe
from teachers.assistant import teacher_assistant
from teachers.subset import subset_for_folders

log = logging.getLogger("train")
register_resolvers()


def distill(cfg: DictConfig, checkpoint: str | None) -> dict:
    """teacher -> student -> data -> module -> trainer, fit, then the student file and summary.json."""
    output_dir = Path(cfg.paths.output_dir)
    with user_errors():
        teacher = (teacher_assistant(cfg.assistant, output_dir, cfg.student.alpha)
                   if cfg.get("assistant") is not None and cfg.distill.soft_weight else instantiate(cfg.teacher))
        if cfg.data.val_dir and not cfg.teacher.get("classes") and Path(cfg.data.val_dir).is_dir():
            teacher = subset_for_folders(teacher, class_folders(cfg.data.val_dir, "data.val_dir"))
        teacher_size = resolve_model_data_config(teacher)["input_size"][-1]
        label_names = teacher.pretrained_cfg.get("label_names")
        student = instantiate(cfg.student, num_classes=teacher.num_classes,
                              img_size=cfg.student.img_size or teacher_size, label_names=label_names)
        identity = student_identity(student)
        log.info("teacher %s", describe(teacher))
        log.info("student %s alpha=%s at %d px, mean %s, std %s", identity["student"], identity["alpha"],
                 identity["img_size"], list(cfg.student.mean), list(cfg.student.std))
        module = instantiate(cfg.distill, teacher=teacher, student=student)
        if not module.soft_weight and not cfg.data.train_dir:
            raise ValueError("distill.soft_weight=0 trains on hard labels alone (supervision=labels): "
                             "set data.train_dir to a labeled folder")
        datamodule = instantiate(cfg.data, image_sizes={"teacher": teacher_size, "student": identity["img_size"]},
                                 class_names=label_names, num_classes=teacher.num_classes,
                                 soft_targets=instantiate(cfg.soft_targets, teacher=module.frozen_teacher),
                                 teacher_in_training=module.soft_weight > 0)
        trainer = build_trainer(cfg)

    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)  # (fills the soft-target caches first)

    report = next((c for c in trainer.callbacks if isinstance(c, RunReport)), None)
    summary = report.summary() if report else {"final": None, "best": None, "cost": cost_report(
        module.student, identity["img_size"], latency=False)}
    summary.update(teacher=describe(teacher), **identity, trained_on="teacher" if module.soft_weight else "labels",
                   label_fraction=cfg.data.label_fraction, train_images=len(datamodule.train_set),
                   skipped_files=skipped_counts(datamodule.skipped_log),
                   soft_target_cache=datamodule.soft_target_reports,
                   throughput=next((c.stats for c in trainer.callbacks if isinstance(c, Throughput)), None))
    if trainer.is_global_zero:
        about = {"crop_pct": cfg.data.eval_crop_pct, "teacher": summary["teacher"],
                 "teacher_classes": getattr(teacher, "class_indices", None)}
        summary["student_file"] = str(students.save_student(module.student.cpu(), output_dir / "student",
                                                            extra={**about, "metrics": summary["final"]}))
        for width in next((c.results for c in trainer.callbacks if isinstance(c, TakeOutWidths)), []):
            width["student_file"] = str(students.save_student(width.pop("model").cpu(), output_dir / "widths" / (
                f"{width['alpha']:g}") / "student", extra={**about, "metrics": width["final"]}))
            summary.setdefault("widths", []).append(width)
        write_json(output_dir / "summary.json", summary)
        if "widths" in summary:  # a slimmable student: the report of an alpha sweep, one row per width
            build_report(output_dir)
        print(result_table(summary))
    return summary


def train(cfg: DictConfig) -> dict:
    """Everything a run does, given a composed config (tests call this directly)."""
    return run(cfg, distill)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict | None:
    return exit_on_error(train, cfg)


if __name__ == "__main__":
    main()
