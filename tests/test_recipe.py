"""The recipe's pieces: the label budget, the label-only baseline, and the teacher stage run from the config."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import train
from distill.errors import UserError, user_errors
from distill.data import DistillDataModule
from distill.folders import label_subset
from distill.module import DistillModule
from tests.helpers import run_cli


def test_label_subset_takes_the_same_share_of_every_class():
    files = [Path(f"{c}/{i:04d}.jpg") for c in "abc" for i in range(30)]
    labels = [i // 30 for i in range(90)]
    kept, kept_labels = label_subset(files, labels, 1 / 3)
    assert [kept_labels.count(c) for c in range(3)] == [10, 10, 10]
    assert all(f.parent.name == "abc"[label] for f, label in zip(kept, kept_labels))
    assert label_subset(files, labels, 1 / 3) == (kept, kept_labels)  # a function of the files alone
    assert kept != files[:10] + files[30:40] + files[60:70]  # drawn, not the first names of each class
    assert label_subset(files, labels, 1.0) == (files, labels)
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="label_fraction"):
            label_subset(files, labels, bad)


def test_label_fraction_limits_the_labeled_training_set(folders):
    dm = DistillDataModule({"teacher": 16, "student": 16}, train_dir=str(folders["train"]), label_fraction=0.5,
                           class_names=["ant", "bee", "cat"], num_workers=0)
    assert len(dm.train_set) == 18 and sorted(dm.train_set.labels) == [0] * 6 + [1] * 6 + [2] * 6


@pytest.mark.parametrize("mode", ["online", "cached"])
def test_label_only_baseline_never_shows_the_teacher_a_training_image(make_cfg, monkeypatch, mode):
    calls = []
    original = DistillModule.teacher_logits
    monkeypatch.setattr(DistillModule, "teacher_logits", lambda self, x: calls.append(len(x)) or original(self, x))
    summary = train.train(make_cfg("supervision=labels", f"soft_targets={mode}", "trainer.max_epochs=2",
                                   "trainer.limit_val_batches=null"))
    assert calls == []  # never a training batch
    assert "train" not in summary["soft_target_cache"] and summary["soft_target_cache"]["val"]["teacher_images"] == 12
    assert summary["train_images"] == 36  # the unlabeled folder's own class folders, as labels
    assert summary["final"]["val/agreement"] is not None and summary["final"]["val/teacher_top1"] is not None


def test_label_budget_keeps_the_unlabeled_images_when_asked(folders):
    common = dict(train_dir=str(folders["train"]), label_fraction=0.5, class_names=["ant", "bee", "cat"], num_workers=0)
    budget = DistillDataModule({"teacher": 16, "student": 16}, **common).train_set
    dm = DistillDataModule({"teacher": 16, "student": 16}, keep_unlabeled=True, **common)
    assert len(dm.train_set) == 36 and dm.train_set.labels.count(-1) == 18
    assert {f: y for f, y in zip(dm.train_set.files, dm.train_set.labels) if y >= 0} == dict(
        zip(budget.files, budget.labels))  # the same labeled half as the teacher stage and the twin


def test_teacher_and_labels_use_both_terms_on_every_image(make_cfg, monkeypatch):
    seen = []
    original = DistillModule.loss
    monkeypatch.setattr(DistillModule, "loss", lambda self, batch, s, t: seen.append(
        (t is not None, batch["label"].tolist())) or original(self, batch, s, t))
    summary = train.train(make_cfg("supervision=both", "data.label_fraction=0.5", "trainer.limit_train_batches=null"))
    assert summary["train_images"] == 36 and summary["trained_on"] == "teacher"
    labels = [y for _, batch in seen for y in batch]
    assert all(with_teacher for with_teacher, _ in seen) and len(labels) == 32  # 4 full batches of 8 (drop_last)
    assert set(labels) == {-1, 0, 1, 2} and 14 <= labels.count(-1) <= 18  # 18 of the 36 carry no label
    with pytest.raises(UserError, match="keep_unlabeled"):
        train.train(make_cfg("supervision=both", "data.label_fraction=0.5", "distill.soft_weight=0"))


def test_label_only_without_labels_is_a_user_error(make_cfg):
    with pytest.raises(UserError, match="data.train_dir"):
        train.train(make_cfg("distill.soft_weight=0", "distill.hard_weight=1"))
    with pytest.raises(UserError, match="not both 0"):
        train.train(make_cfg("distill.soft_weight=0"))


@pytest.mark.slow
def test_recipe_trains_its_teacher_once_then_distils(folders, tmp_path):
    """experiment=cifar10_recipe on the tiny folders: the first job runs the teacher stage (train_teacher.py on
    half the labels), distils from the file it wrote; the label-only twin reuses that teacher."""
    cache = tmp_path / "cache"
    common = ["experiment=cifar10_recipe", f"data.unlabeled_dir={folders['train']}", f"data.val_dir={folders['val']}",
              f"paths.cache_dir={cache}", "teacher.name=test_resnet", "teacher_stage.extra=['trainer.max_steps=3']",
              "student.alpha=0.25", "student.img_size=16", "data.label_fraction=0.5", "data.batch_size=8",
              "data.num_workers=0", "trainer.max_epochs=1", "soft_targets.views=1", "callbacks.run_report.latency=false"]
    first = run_cli([*common, f"hydra.run.dir={tmp_path / 'distilled'}"])
    assert first.returncode == 0, first.stderr[-3000:]
    teacher_file = cache / "recipes/cifar10/cifar10_teacher-test_resnet-labels0.5/teacher.safetensors"
    stage = json.loads((teacher_file.parent / "summary.json").read_text())
    assert stage["teacher"].startswith("test_resnet")
    sidecar = json.loads(teacher_file.with_suffix(".json").read_text())
    assert sidecar["img_size"] == 64  # the teacher at 64 px, the student at 16
    assert "- jobs_at_once=1\n" in (teacher_file.parent / ".hydra" / "overrides.yaml").read_text()
    summary = json.loads((tmp_path / "distilled" / "summary.json").read_text())
    assert summary["train_images"] == 36 and summary["img_size"] == 16
    assert summary["soft_target_cache"]["train"]["teacher_images"] == 36

    mtime = teacher_file.stat().st_mtime_ns
    twin = run_cli([*common, "supervision=labels", f"hydra.run.dir={tmp_path / 'labels'}"])
    assert twin.returncode == 0, twin.stderr[-3000:]
    assert teacher_file.stat().st_mtime_ns == mtime and "teacher stage" not in twin.stderr + twin.stdout
    summary = json.loads((tmp_path / "labels" / "summary.json").read_text())
    assert summary["train_images"] == 18  # the labeled half only


@pytest.mark.slow
def test_recipe_multirun_trains_two_jobs_at_a_time_on_half_the_cores(folders, tmp_path):
    """`python train.py -m experiment=cifar10_recipe` on the tiny folders, two label budgets: the two jobs,
    teacher stages included, run at the same time, each with half the cores, and the sweep's report lists both."""
    from joblib import cpu_count

    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "experiment=cifar10_recipe", f"data.unlabeled_dir={folders['train']}",
                      f"data.val_dir={folders['val']}", f"paths.cache_dir={tmp_path / 'cache'}",
                      "teacher.name=test_resnet", "teacher_stage.extra=['trainer.max_steps=3']", "student.alpha=0.25",
                      "student.img_size=16", "data.label_fraction=0.5,1.0", "data.batch_size=8", "data.num_workers=1",
                      "trainer.max_epochs=1", "soft_targets.views=1", "callbacks.run_report.latency=false",
                      f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 0, result.stderr[-3000:]
    spans = []
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["throughput"]["threads"] == max(1, cpu_count() // 2)
        started = (sweep / job / ".hydra" / "config.yaml").stat().st_mtime
        spans.append((started, (sweep / job / "summary.json").stat().st_mtime))
    (start0, end0), (start1, end1) = spans
    assert start1 < end0 and start0 < end1  # side by side, not one after the other
    for budget in ("0.5", "1.0"):
        stage = tmp_path / f"cache/recipes/cifar10/cifar10_teacher-test_resnet-labels{budget}"
        assert (stage / "teacher.safetensors").is_file()
        # each stage ran on half the cores, so with twice its time budget
        assert "- jobs_at_once=2\n" in (stage / ".hydra" / "overrides.yaml").read_text()
    assert "| 0.25 |" in (sweep / "sweep.md").read_text()


def test_evaluate_a_saved_student_matches_the_run(make_cfg, folders, tmp_path, capsys):
    """`python -m students.evaluate` needs only the student file: same top-1 as the run's last validation."""
    from students.evaluate import evaluate, main

    summary = train.train(make_cfg("trainer.max_epochs=2", "trainer.limit_val_batches=null",
                                   "data.eval_crop_pct=0.875", output_dir=tmp_path / "run"))
    result = evaluate(tmp_path / "run", folders["val"], num_workers=0)
    assert result["images"] == 12 and set(result["per_class"]) == {"ant", "bee", "cat"}
    assert result["top1"] == pytest.approx(summary["final"]["val/top1"], abs=1e-6)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere"), str(folders["val"])])
    assert exit_info.value.code == 2 and "no student file" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", ["cifar10_recipe", "imagenette_recipe"])
def test_recipes_compose_with_one_teacher_per_label_budget(recipe, tmp_path):
    from omegaconf import OmegaConf

    from tests.conftest import compose_cfg

    def stage(*overrides):
        cfg = compose_cfg([f"experiment={recipe}", f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}",
                           *overrides])
        return cfg, OmegaConf.to_container(cfg.teacher_stage, resolve=True)

    full_cfg, full = stage()
    budget_cfg, budget = stage("data.label_fraction=0.3333", "supervision=labels")
    assert full["checkpoint_path"] == full_cfg.teacher.checkpoint_path != budget["checkpoint_path"]
    assert "data.label_fraction=0.3333" in budget["overrides"] and "data.label_fraction=1.0" in full["overrides"]
    assert full_cfg.distill.soft_weight == 1 and full_cfg.data.train_dir is None  # distilled: no labels
    assert budget_cfg.distill.soft_weight == 0 and budget_cfg.data.train_dir == budget_cfg.data.unlabeled_dir
    assert full_cfg.soft_targets.mode == "cached" and full_cfg.soft_targets.views == 8
    assert full_cfg.soft_targets.view_mean == (0.5 if recipe == "cifar10_recipe" else 0)  # measured on CIFAR only


@pytest.mark.parametrize("recipe, jobs, budgets, supervision, sizes", [
    ("cifar10_recipe", 8, {"1.0", "0.3333"}, {"teacher"}, {"32"}),
    ("imagenette_recipe", 8, {"1.0", "0.3333"}, {"teacher"}, {"128"}),
    ("imagenette_rho", 8, {"1.0"}, {"teacher"}, {"160", "96"}),  # distilled students only, the full teacher
])
def test_recipe_multiruns_sweep_what_they_document(recipe, jobs, budgets, supervision, sizes):
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={recipe}"], return_hydra_config=True)
    axes = {key: set(str(value).split(",")) for key, value in cfg.hydra.sweeper.params.items()}
    assert axes["data.label_fraction"] == budgets and axes["supervision"] == supervision
    assert axes.get("student.img_size", {str(cfg.student.img_size)}) == sizes  # (cifar: fixed by the recipe)
    assert axes["student.alpha"] == {"1.0", "0.75", "0.5", "0.25"}
    assert math.prod(len(values) for values in axes.values()) == jobs


@pytest.mark.parametrize("recipe", ["cifar10_recipe", "imagenette_recipe"])
def test_recipes_run_one_widths_two_label_budgets_side_by_side(recipe, tmp_path):
    """Two jobs at a time, and the sweep's order pairs the two label budgets of one width: their teacher
    stages start together, and each pair does about the same work. Each stage, on half the cores, gets the
    two stages' time: twice the stage's own budget, as many times as the launcher runs jobs at once."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from tests.conftest import CONF_DIR, compose_cfg

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={recipe}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]
    pairs = [jobs[i:i + 2] for i in range(0, len(jobs), 2)]
    assert [{o for o in job if o.startswith("data.label_fraction")} for job in pairs[0]] == [
        {"data.label_fraction=1.0"}, {"data.label_fraction=0.3333"}]
    assert all({o for o in a if o.startswith("student.alpha")} == {o for o in b if o.startswith("student.alpha")}
               for a, b in pairs)

    recipe_cfg = compose_cfg([f"experiment={recipe}", f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}"])
    previous = HydraConfig.instance().cfg
    try:
        for mode, n_jobs, at_once in ((RunMode.MULTIRUN, 2, 2), (RunMode.MULTIRUN, 1, 1), (RunMode.RUN, 2, 1)):
            job_cfg = cfg.copy()
            with open_dict(job_cfg):
                job_cfg.hydra.mode, job_cfg.hydra.launcher.n_jobs = mode, n_jobs
            HydraConfig.instance().set_config(job_cfg)  # as in a job of `python train.py -m experiment=...`
            assert f"jobs_at_once={at_once}" in list(recipe_cfg.teacher_stage.overrides)
        HydraConfig.instance().cfg = None
        assert "jobs_at_once=1" in list(recipe_cfg.teacher_stage.overrides)  # no Hydra run
    finally:
        HydraConfig.instance().cfg = previous

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        stage = compose(config_name="train_teacher", overrides=[f"experiment={cfg.recipe_teacher}"])
        side_by_side = compose(config_name="train_teacher", overrides=[
            f"experiment={cfg.recipe_teacher}", "jobs_at_once=2"])
        # a user's stage experiment without a time budget still takes the stage's override
        unbudgeted = compose(config_name="train_teacher", overrides=[
            f"experiment={cfg.recipe_teacher}", "callbacks.time_budget=null", "jobs_at_once=2"])
    assert instantiate(side_by_side.callbacks.time_budget).minutes == 2 * stage.callbacks.time_budget.minutes
    assert instantiate(stage.callbacks.time_budget).minutes == stage.callbacks.time_budget.minutes
    assert unbudgeted.callbacks.time_budget is None and unbudgeted.jobs_at_once == 2


@pytest.mark.parametrize("recipe, epochs", [("cifar10_recipe", [22, 28, 50, 68]),
                                            ("imagenette_recipe", [64, 24, 32, 160]),
                                            ("imagenette_rho", [16, 24, 32, 80])])
def test_recipes_take_epochs_per_width_from_their_table(recipe, epochs, tmp_path):
    """Epochs per alpha come from the recipe's table; a width the table lacks is a one-line error naming
    the key to set instead."""
    from tests.conftest import compose_cfg

    def cfg(alpha):
        return compose_cfg([f"experiment={recipe}", f"student.alpha={alpha}", f"paths.output_dir={tmp_path}",
                            f"paths.cache_dir={tmp_path}"])

    assert [cfg(a).trainer.max_epochs for a in (1.0, 0.75, 0.5, 0.25)] == epochs
    assert compose_cfg([f"experiment={recipe}", "student.alpha=0.3", "trainer.max_epochs=5",
                        f"paths.output_dir={tmp_path}"]).trainer.max_epochs == 5
    with pytest.raises(UserError, match=r"trainer.max_epochs: .*no entry for 0.3"):
        with user_errors():
            cfg(0.3).trainer.max_epochs


def test_teacher_stage_resumes_a_killed_stage_and_reports_a_failed_one(tmp_path, monkeypatch):
    import subprocess

    from teachers.stage import ensure_teacher

    target = tmp_path / "stage" / "teacher.safetensors"
    (target.parent / "checkpoints").mkdir(parents=True)
    (target.parent / "checkpoints" / "last.ckpt").write_bytes(b"")  # what a killed stage leaves
    commands = []

    def fake_run(command, **kw):
        commands.append(command)
        if len(commands) == 2:
            target.write_bytes(b"weights")
        return subprocess.CompletedProcess(command, 0 if len(commands) == 2 else 1)

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(UserError, match="the teacher stage failed"):
        ensure_teacher(str(target), ["teacher.name=resnet18"])
    assert ensure_teacher(str(target), ["teacher.name=resnet18"]) == target
    assert ensure_teacher(str(target), ["teacher.name=resnet18"]) == target  # present: no third run
    assert len(commands) == 2
    assert commands[1][-2:] == [f"hydra.run.dir={target.parent}", f"resume={target.parent / 'checkpoints' / 'last.ckpt'}"]
    assert commands[1][2:4] == ["train_teacher", "teacher.name=resnet18"]
    with pytest.raises(ValueError, match="teacher.safetensors"):
        ensure_teacher(str(tmp_path / "elsewhere" / "model.pth"), [])
