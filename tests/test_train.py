"""End to end through train.py's real config: a few steps of distillation and of teacher training."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import students
import train
import train_teacher
from distill.errors import UserError
from distill.module import DistillModule

ROOT = Path(__file__).resolve().parents[1]


def test_distill_end_to_end(make_cfg, tmp_path):
    out = tmp_path / "run"
    summary = train.train(make_cfg())

    saved = json.loads((out / "summary.json").read_text())
    for key in ("val/top1", "val/top5", "val/agreement", "val/kl", "val/teacher_top1"):
        assert 0 <= saved["final"][key] <= (1 if key != "val/kl" else 1e6), key
    assert saved["cost"]["params"] == summary["cost"]["params"] > 0
    assert saved["cost"]["macs"] > 0
    assert (out / "checkpoints" / "last.ckpt").exists()
    assert (out / "metrics.csv").read_text().count("\n") == 2  # header + one validation

    # The standalone student file reproduces the checkpointed student's logits exactly.
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"]), "teacher weights leaked into checkpoint"
    student = students.load_student(out / "student.safetensors")
    reference = students.create_student(**_student_args(out))
    reference.load_state_dict({k[len("student."):]: v for k, v in ckpt["state_dict"].items()
                               if k.startswith("student.")})
    x = torch.randn(3, 3, 16, 16)
    assert torch.equal(student(x), reference.eval()(x))
    assert student.pretrained_cfg["label_names"] == ("ant", "bee", "cat")


def _student_args(run: Path) -> dict:
    meta = json.loads((run / "student.json").read_text())
    return {"num_classes": meta["num_classes"], "img_size": meta["img_size"], **meta["model_args"]}


def test_teacher_stays_frozen(make_cfg, monkeypatch):
    """After a real run, the module's teacher holds exactly the weights and buffers it started with, and
    still computes what its file does (its BatchNorms folded into the convolutions, up to rounding)."""
    import lightning.pytorch as pl

    from teachers import create_teacher

    cfg = make_cfg("debug=fast")
    seen, fit = [], pl.Trainer.fit

    def spy(trainer, module, **kw):
        seen.append((module, {k: v.clone() for k, v in module.teacher.state_dict().items()}))
        return fit(trainer, module, **kw)

    monkeypatch.setattr(pl.Trainer, "fit", spy)
    train.train(cfg)
    (module, before), = seen
    after = module.teacher.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    teacher = create_teacher("test_resnet", checkpoint_path=cfg.teacher.checkpoint_path)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(module.teacher.cpu()(x), teacher(x), atol=1e-4, rtol=1e-4)

    # In the module: eval mode survives .train(), and the optimizer sees student parameters only.
    module = DistillModule(teacher, students.create_student(3, alpha=0.25, img_size=16), torch.optim.SGD)
    module.train()
    assert not module.teacher.training and module.student.training
    groups = module.configure_optimizers()["optimizer"].param_groups
    optimized = {id(p) for g in groups for p in g["params"]}
    assert optimized == {id(p) for p in module.student.parameters()}
    assert not any(p.requires_grad for p in module.teacher.parameters())


def test_teacher_task_then_distill(make_cfg, make_teacher_cfg, tmp_path):
    result = train_teacher.train(make_teacher_cfg())
    teacher_file = Path(result["teacher_file"])
    assert (teacher_file.parent / "classes.txt").read_text().split() == ["ant", "bee", "cat"]

    summary = train.train(make_cfg(f"teacher.checkpoint_path={teacher_file}", output_dir=tmp_path / "distill_run"))
    assert summary["final"]["val/teacher_top1"] is not None


@pytest.mark.parametrize("override, message", [
    ("student.alpha=-0.5", "student.alpha"),
    ("distill.temperature=0", "distill.temperature"),
    ("data.unlabeled_dir=/nonexistent/folder", "data.unlabeled_dir"),
    ("teacher.checkpoint_path=/nonexistent/teacher.pth", "teacher.checkpoint_path"),
    ("student.alpha=2.5", "student.alpha"),
    ("student.img_size=8", "student.img_size"),
    ("student.name=resnet_9000", "student.name"),
    ("teacher.name=resnet_9000", "teacher.name"),
    ("teacher.num_classes=7", "teacher.num_classes=7"),
    ("data.batch_size=0", "data.batch_size"),
    ("soft_targets.mode=sometimes", "soft_targets"),
    ("distill.teacher_bf16=maybe", "distill.teacher_bf16"),
    ("distill.student_bf16=maybe", "distill.student_bf16"),
    ("data.val_dir=/nonexistent/val", "data.val_dir"),
    ("distill.loss=kld", "distill.loss"),
    ("data.mix.prob=2", "data.mix"),
])
def test_bad_config_is_one_line_error(make_cfg, override, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        train.train(make_cfg(override))


@pytest.mark.parametrize("loss", ["kl_std", "dist", "mse"])
def test_every_loss_with_mixed_views_and_labels_through_the_real_config(make_cfg, folders, loss):
    summary = train.train(make_cfg(f"distill.loss={loss}", "data.mix.prob=0.5", "distill.hard_weight=0.5",
                                   f"data.train_dir={folders['train']}", "soft_targets=cached"))
    assert summary["final"]["val/top1"] is not None and summary["soft_target_cache"]["train"]["views"] >= 1


def test_cli_bad_config_exits_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train.py", "student.alpha=0", f"paths.cache_dir={tmp_path}",
         f"data.unlabeled_dir={tmp_path}", "data.val_dir=null", "teacher.checkpoint_path=null",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_distill_from_teacher_ensemble(make_cfg, teacher_file):
    summary = train.train(make_cfg("teacher=ensemble", f"teacher.members.0.checkpoint_path={teacher_file}",
                                   f"teacher.members.1.checkpoint_path={teacher_file}",
                                   "teacher.members.0.name=test_resnet", "teacher.members.1.name=test_resnet",
                                   "teacher.members.1.img_size=24"))
    assert summary["teacher"].startswith("ensemble(test_resnet, test_resnet)")
    assert summary["final"]["val/agreement"] is not None


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_other_loggers_run_offline(make_cfg, tmp_path, logger, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = ["logger.wandb.sweep_dir=null"] if logger == "wandb" else []  # no Hydra runtime when composed
    train.train(make_cfg(f"logger={logger}", *extra))
    assert any((tmp_path / "run").rglob("events.out.tfevents*" if logger == "tensorboard" else "*.wandb"))


@pytest.mark.parametrize("breakage, expected", [
    ("shuffled_classes", "near chance"),
    ("wrong_normalisation", "far below its top-1 when trained"),
])
def test_broken_teacher_is_named_in_the_log(make_cfg, make_teacher_cfg, tmp_path, caplog, breakage, expected):
    """A teacher trained on the colour-coded folder, then used with a shuffled class list or the wrong
    mean/std: the run says which kind of mistake it probably is."""
    result = train_teacher.train(make_teacher_cfg("trainer.max_epochs=6", "trainer.limit_train_batches=null",
                                                  "trainer.limit_val_batches=null", "finetune.optimizer.lr=0.01"))
    assert result["val/top1"] > 0.9  # the colours are easy: a working teacher is nearly perfect
    teacher_file = Path(result["teacher_file"])
    override = []
    if breakage == "shuffled_classes":
        (teacher_file.parent / "classes.txt").write_text("bee\ncat\nant\n")
        meta = json.loads(teacher_file.with_suffix(".json").read_text())
        meta["label_names"] = ["bee", "cat", "ant"]
        teacher_file.with_suffix(".json").write_text(json.dumps(meta))
    else:
        override = ["teacher.mean=[0.9,0.1,0.9]", "teacher.std=[0.05,0.05,0.05]"]
    with caplog.at_level("WARNING"):
        train.train(make_cfg(f"teacher.checkpoint_path={teacher_file}", *override, "trainer.limit_val_batches=null",
                             output_dir=tmp_path / "distill_run"))
    assert expected in caplog.text


def test_online_teacher_runs_on_training_batches_and_once_on_the_validation_folder(make_cfg, monkeypatch, tmp_path):
    """Online: the teacher runs on every training batch; its validation logits are computed once, on
    disk, and a later run with the same teacher and folder reads them."""
    calls = []
    original = DistillModule.teacher_logits
    monkeypatch.setattr(DistillModule, "teacher_logits", lambda self, x: calls.append(len(x)) or original(self, x))
    args = ("trainer.max_epochs=3", "trainer.limit_train_batches=1", "trainer.limit_val_batches=null")
    first = train.train(make_cfg(*args))
    assert sum(calls) == 3 * 8  # one training batch of 8 per epoch
    assert "train" not in first["soft_target_cache"] and first["soft_target_cache"]["val"]["teacher_images"] == 12
    again = train.train(make_cfg(*args, output_dir=tmp_path / "again"))
    assert again["soft_target_cache"]["val"]["hit"] and again["soft_target_cache"]["val"]["teacher_images"] == 0
    assert again["final"]["val/teacher_top1"] == first["final"]["val/teacher_top1"]


def test_training_loss_reaches_the_loggers_on_their_steps(make_cfg, tmp_path):
    """The loss is logged only on the steps the loggers write (every trainer.log_every_n_steps)."""
    import csv

    train.train(make_cfg("trainer.limit_train_batches=4", "trainer.log_every_n_steps=2"))
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        logged = [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f) if r.get("train/loss")]
    assert [step for step, _ in logged] == [1, 3] and all(loss > 0 for _, loss in logged)


def test_a_finished_job_frees_its_models_and_data(make_cfg, tmp_path):
    """A multirun runs its jobs in one process: a job's teacher, student and datasets must not outlive it
    (they refer to each other through the trainer, so only a collection frees them)."""
    import gc

    from distill.data import ImageFiles

    def alive() -> int:
        return sum(isinstance(o, (DistillModule, ImageFiles)) for o in gc.get_objects())

    gc.collect()
    before = alive()
    gc.disable()  # no automatic collection: what is freed is what train() frees
    try:
        for k in range(2):
            train.train(make_cfg(output_dir=tmp_path / f"job{k}"))
        assert alive() == before
    finally:
        gc.enable()


def test_teacher_file_is_scored_on_its_own_weights(make_teacher_cfg, tmp_path):
    """Validation every 2 epochs, training for 3: the last validation would predate the saved weights, so
    the teacher task validates once more and records that score in the file's sidecar."""
    result = train_teacher.train(make_teacher_cfg("trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2"))
    rows = (tmp_path / "teacher_run" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == [4, 6]  # steps: after epoch 2, then the final weights
    sidecar = json.loads(Path(result["teacher_file"]).with_suffix(".json").read_text())
    assert sidecar["val_top1"] == pytest.approx(result["val/top1"]) and result["val/top1"] is not None


@pytest.mark.parametrize("mode", ["online", "cached"])
def test_a_1000_class_teacher_distils_the_folders_classes(make_cfg, tmp_path, mode):
    """The validation folder's 3 classes are a strict subset of the teacher's 1000 names: the teacher is
    restricted to them, the student has 3 outputs, and its file records which teacher outputs they are."""
    from tests.test_teachers import _thousand_class_teacher

    file = _thousand_class_teacher(tmp_path / "big_teacher")
    summary = train.train(make_cfg(f"teacher.checkpoint_path={file}", f"soft_targets={mode}"))
    meta = json.loads(Path(summary["student_file"]).with_suffix(".json").read_text())
    assert meta["num_classes"] == 3 and meta["teacher_classes"] == [10, 500, 999]
    assert "[3 of 1000 classes]" in summary["teacher"] and summary["final"]["val/teacher_top1"] is not None
    explicit = train.train(make_cfg(f"teacher.checkpoint_path={file}", "teacher.classes=[cat,ant,bee]",
                                    output_dir=tmp_path / "explicit"))
    assert json.loads(Path(explicit["student_file"]).with_suffix(".json").read_text())["teacher_classes"] == [999, 10, 500]


def test_time_budget_shortens_a_teacher_run_through_the_real_config(make_teacher_cfg, tmp_path):
    """callbacks.time_budget.minutes: a run whose steps would not fit ends early, at the step it decided."""
    import torch

    train_teacher.train(make_teacher_cfg(
        "finetune=sgd", "trainer.max_epochs=-1", "trainer.max_steps=40", "trainer.limit_train_batches=null",
        "callbacks.time_budget.minutes=0.0001", "callbacks.time_budget.warmup_steps=1",
        "callbacks.time_budget.measure_steps=2"))
    last = torch.load(tmp_path / "teacher_run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 6  # timed steps 1-3, decided at 3: twice that, the least a shortened run takes


def test_quantization_aware_fine_tune_of_a_run_through_the_real_config(make_cfg, tmp_path):
    """student=qat continues a run's student under fake quantization, on the same teacher and folders,
    and writes a plain student file that `students.export --int8` takes."""
    from students.qat import QATStudent

    train.train(make_cfg(output_dir=tmp_path / "fp32"))
    fp32_file = tmp_path / "fp32" / "student.safetensors"
    summary = train.train(make_cfg("student=qat", f"student.path={fp32_file}", output_dir=tmp_path / "qat"))

    assert 0 <= summary["final"]["val/top1"] <= 1 and summary["alpha"] == 0.25 and summary["img_size"] == 16
    ckpt = torch.load(tmp_path / "qat" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert any("weight_fake_quant" in k for k in ckpt["state_dict"]), "the checkpoint holds the fake-quantized net"
    qat = QATStudent(students.load_student(fp32_file))
    qat.load_state_dict({k[len("student."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("student.")})
    plain = students.load_student(tmp_path / "qat" / "student.safetensors")
    x = torch.randn(3, 3, 16, 16)
    assert torch.allclose(plain(x), qat.to_plain()(x), atol=1e-6)
    assert not torch.allclose(plain(x), students.load_student(fp32_file)(x), atol=1e-4)  # it trained
    with pytest.raises(UserError, match="student.path=.*no student file"):
        train.train(make_cfg("student=qat", f"student.path={tmp_path / 'none' / 'student.safetensors'}"))
