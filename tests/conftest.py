"""Shared fixtures: tiny generated image folders, a tiny saved teacher, and the real config composed."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)

import students  # noqa: E402,F401  (registers mobilenet_v1* in timm)
from teachers import for_classes, save_teacher  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
CLASSES = ["ant", "bee", "cat"]
COLOURS = {"ant": (200, 30, 30), "bee": (30, 200, 30), "cat": (30, 30, 200)}


def write_images(root: Path, per_class: int, size: int = 24, seed: int = 0) -> Path:
    """An ImageFolder tree whose classes differ by colour, so a teacher can actually be right."""
    rng = random.Random(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = tuple(min(255, max(0, c + rng.randint(-40, 40))) for c in COLOURS[name])
            img = Image.new("RGB", (size + rng.randint(0, 8), size), colour)
            img.putpixel((rng.randrange(size), rng.randrange(size)), (255, 255, 255))
            img.save(root / name / (f"{i:03d}.png" if i % 2 else f"{i:03d}.JPG"))
    return root


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {"train": write_images(root / "train", 12), "val": write_images(root / "val", 4, seed=1)}


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory) -> Path:
    """A random-weight timm `test_resnet` teacher for CLASSES at 16 px, saved the way train_teacher.py saves."""
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=len(CLASSES),
                              pretrained_cfg_overlay=dict(input_size=(3, 16, 16)))
    return save_teacher(for_classes(model, CLASSES), tmp_path_factory.mktemp("teacher") / "teacher", "test_resnet")


def compose_cfg(overrides: list[str], config_name: str = "train"):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.fixture
def make_cfg(tmp_path, folders, teacher_file):
    """The real config for a few-step run on the tiny folders and teacher, plus any overrides."""

    def make(*overrides: str, output_dir: Path | None = None):
        own_teacher = any(o.startswith("teacher=") for o in overrides)
        teacher = [] if own_teacher else ["teacher.name=test_resnet", f"teacher.checkpoint_path={teacher_file}"]
        return compose_cfg([
            f"paths.output_dir={output_dir or tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
            f"data.unlabeled_dir={folders['train']}", f"data.val_dir={folders['val']}", *teacher,
            "student.alpha=0.25", "student.img_size=16", "debug=fast", "logger=csv", *overrides,
        ])

    return make


@pytest.fixture
def make_teacher_cfg(tmp_path, folders):
    """train_teacher.py's real config for a few-step run of a `test_resnet` teacher on the tiny folders."""

    def make(*overrides: str, output_dir: Path | None = None):
        return compose_cfg([
            f"paths.output_dir={output_dir or tmp_path / 'teacher_run'}", f"paths.cache_dir={tmp_path / 'cache'}",
            f"data.train_dir={folders['train']}", f"data.val_dir={folders['val']}", "teacher.name=test_resnet",
            "teacher.img_size=16", "debug=fast", "logger=csv", *overrides,
        ], config_name="train_teacher")

    return make


def _cli_args(folders, teacher_file, cache_dir: Path) -> list[str]:
    return [f"paths.cache_dir={cache_dir}", f"data.unlabeled_dir={folders['train']}",
            f"data.val_dir={folders['val']}", "teacher.name=test_resnet", f"teacher.checkpoint_path={teacher_file}",
            "student.alpha=0.25", "student.img_size=16", "data.batch_size=8", "data.num_workers=0",
            "trainer.max_epochs=2", "callbacks.run_report.latency=false", "logger=csv"]


@pytest.fixture
def cli_args(folders, teacher_file, tmp_path) -> list[str]:
    """Command-line overrides for a tiny 2-epoch run of train.py in a subprocess."""
    return _cli_args(folders, teacher_file, tmp_path / "cache")


@pytest.fixture(scope="session")
def finished_run(folders, teacher_file, tmp_path_factory):
    """`finished_run(*overrides)`: the directory of an uninterrupted `cli_args` run with those overrides, run
    once per session: the reference that resume, DDP and streaming tests compare with (most of a run's
    time is its process importing torch, timm and Lightning)."""
    root, runs = tmp_path_factory.mktemp("finished"), {}

    def run(*overrides: str) -> Path:
        if overrides not in runs:
            out = root / f"run{len(runs)}"
            done = run_cli([*_cli_args(folders, teacher_file, root / "cache"), *overrides, f"hydra.run.dir={out}"])
            assert done.returncode == 0, done.stderr[-2000:]
            runs[overrides] = out
        return runs[overrides]

    return run
