"""Messy folders, interrupted runs (kill -9, SIGTERM), numerical faults and several processes (DDP)."""
from __future__ import annotations

import json
import os
import re
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from tests.helpers import DDP, run_cli
from distill.errors import UserError
from distill.data import DistillDataModule



def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb if large)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def messy_folder(root: Path) -> tuple[int, dict[str, int]]:
    """Every bad-file kind, and valid but unusual images; returns (good count, bad counts by reason)."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty_subfolder").mkdir()
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    good = {
        "plain.jpg": rgb, "UPPER.PNG": rgb, "gray.png": rgb.convert("L"), "palette.gif": rgb.convert("P"),
        "alpha.png": rgb.convert("RGBA"), "cmyk.jpg": rgb.convert("CMYK"), "wide.png": rgb.resize((200, 10)),
        "sub/deeper/tall.webp": rgb.resize((10, 120)), "sub/bitmap.BMP": rgb,
        "sixteen.png": Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)),
    }
    for name, img in good.items():
        img.save(root / name)
    exif = rgb.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotated
    rgb.save(root / "rotated.jpg", exif=exif)
    jpeg = (root / "plain.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[: int(len(jpeg) * 0.8)])  # header intact, pixels cut short
    (root / "headless.jpg").write_bytes(jpeg[:40])  # cut inside the header
    (root / "zero.jpg").write_bytes(b"")
    (root / "random.png").write_bytes(os.urandom(300))
    (root / "page.jpeg").write_text("<!doctype html><html>404</html>")
    (root / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    (root / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0Bud1")
    (root / "Thumbs.db").write_bytes(b"\0" * 64)
    os.symlink(root / "gone.jpg", root / "dangling.jpg")
    bad = {"undecodable": 1, "corrupt": 1, "empty_file": 1, "not_an_image": 2, "decompression_bomb": 1,
           "not_an_image_file": 3, "dangling_symlink": 1}
    return len(good) + 1, bad


def test_messy_folder_uses_every_good_image_and_reports_every_bad_one(tmp_path):
    good, bad = messy_folder(tmp_path / "messy")
    log = tmp_path / "skipped.tsv"
    dm = DistillDataModule({"teacher": 16, "student": 16}, unlabeled_dir=str(tmp_path / "messy"), batch_size=4,
                           num_workers=0, skipped_log=str(log))
    assert len(dm.train_set) == good + 1  # the truncated JPEG has a valid header: caught when decoded
    loader = dm._loader(dm.train_set, shuffle=False)
    seen = sum(len(b["label"]) for b in loader)
    assert seen == len(dm.train_set)  # the bad one is replaced by the next image, never a crash
    from distill.folders import skipped_counts

    assert skipped_counts(log) == bad


def test_messy_folder_end_to_end(make_cfg, tmp_path):
    good, bad = messy_folder(tmp_path / "messy")
    summary = train.train(make_cfg(f"data.unlabeled_dir={tmp_path / 'messy'}", "trainer.limit_train_batches=3",
                                   "data.batch_size=4"))
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {k: v for k, v in saved["skipped_files"].items() if k != "undecodable"} == \
        {k: v for k, v in bad.items() if k != "undecodable"}
    assert summary["final"]["val/agreement"] is not None


def test_folder_without_images_is_one_line_error(make_cfg, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="no usable images"):
        train.train(make_cfg(f"data.unlabeled_dir={tmp_path / 'junk'}"))


def test_nan_loss_stops_with_checkpoint_before_fault(make_cfg, tmp_path):
    cfg = make_cfg("trainer.limit_train_batches=4", "+callbacks.poison._target_=tests.helpers.PoisonWeights",
                   "+callbacks.poison.at_step=2")
    with pytest.raises(FloatingPointError, match="step 2"):
        train.train(cfg)
    assert (tmp_path / "run" / "checkpoints" / "before-fault.ckpt").exists()


@pytest.mark.slow
def test_resume_after_kill_9_matches_uninterrupted_run(cli_args, finished_run, tmp_path):
    """36 images / batch 8 = 4 steps an epoch. Die at step 6 (mid epoch 2), then resume=auto continues
    from the end-of-epoch-1 checkpoint in the same run directory. Tolerance: 1e-4 on every final metric."""
    crash = ["+callbacks.crash._target_=tests.helpers.CrashOnce", "+callbacks.crash.at_step=6",
             f"+callbacks.crash.marker={tmp_path / 'crashed'}"]
    killed = run_cli([*cli_args, *crash, f"hydra.run.dir={tmp_path / 'runs' / 'a'}"])
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "runs" / "a" / "summary.json").exists()

    resumed = run_cli([*cli_args, *crash, "resume=auto", f"hydra.run.dir={tmp_path / 'runs' / 'b'}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    want = json.loads((finished_run() / "summary.json").read_text())["final"]
    got = json.loads((tmp_path / "runs" / "a" / "summary.json").read_text())["final"]  # continued in place
    assert got["epoch"] == want["epoch"] == 1 and got["step"] == want["step"] == 8
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key


@pytest.mark.slow
def test_resume_from_a_mid_epoch_checkpoint_redoes_nothing_and_matches(cli_args, finished_run, tmp_path):
    """The interval checkpoint (every step here, every 10 minutes by default) lands mid-epoch: killed -9 at
    step 6, the run continues from step 5 (epoch 1, batch 1 of 4), skips the batch it already trained on,
    and ends with the uninterrupted run's metrics (a run without the interval checkpoint: saving changes
    nothing in training)."""
    every_step = ["callbacks.interval_checkpoint.train_time_interval=null",
                  "+callbacks.interval_checkpoint.every_n_train_steps=1"]
    crash = ["+callbacks.crash._target_=tests.helpers.CrashOnce", "+callbacks.crash.at_step=6",
             f"+callbacks.crash.marker={tmp_path / 'crashed'}"]
    run = tmp_path / "runs" / "a"
    assert run_cli([*cli_args, *every_step, *crash, f"hydra.run.dir={run}"]).returncode == -signal.SIGKILL
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5
    resumed = run_cli([*cli_args, *every_step, *crash, "resume=auto", f"hydra.run.dir={run}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "continuing epoch 1 after its first 1 batches" in (run / "train.log").read_text()
    want = json.loads((finished_run() / "summary.json").read_text())["final"]
    got = json.loads((run / "summary.json").read_text())["final"]
    assert got["step"] == want["step"] == 8
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key


def test_sampler_resumes_mid_epoch_at_the_same_samples():
    from distill.data import EpochSampler

    full = EpochSampler(50, seed=3)
    full.set_epoch(2)
    resumed = EpochSampler(50, seed=3)
    resumed.resume(2, 16)
    resumed.set_epoch(2)
    assert list(resumed) == list(full)[16:]
    resumed.set_epoch(3)
    full.set_epoch(3)
    assert list(resumed) == list(full)  # once only


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_a_resumable_checkpoint(cli_args, tmp_path):
    """SIGTERM ends a run cleanly with a checkpoint to resume from. `timeout` and Slurm signal the whole
    group: the DataLoader workers must outlive the signal, or the run dies with "DataLoader worker ...
    killed by signal" and saves nothing."""
    term = ["+callbacks.term._target_=tests.helpers.CrashOnce", "+callbacks.term.at_step=5",
            "+callbacks.term.sig=SIGTERM", "+callbacks.term.group=true", f"+callbacks.term.marker={tmp_path / 'termed'}"]
    run = tmp_path / "run"
    stopped = run_cli([*cli_args, "data.num_workers=2", *term, f"hydra.run.dir={run}"], start_new_session=True)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "killed by signal" not in stopped.stderr
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] >= 5
    resumed = run_cli([*cli_args, "data.num_workers=2", *term, "resume=auto", f"hydra.run.dir={run}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["final"]["step"] == 8


@pytest.mark.slow
def test_ddp_two_processes_match_one(finished_run):
    """Lightning DDP on CPU (gloo), 2 processes x batch 4 against 1 process x batch 8: the same samples in
    every step (EpochSampler shards one shared order), so only BatchNorm's per-process statistics differ.
    Tolerance: 1/12 on accuracies (one of the 12 validation images), 0.02 on the KL."""
    ddp = finished_run(*DDP)
    one = json.loads((finished_run() / "summary.json").read_text())["final"]
    two = json.loads((ddp / "summary.json").read_text())["final"]
    assert two["step"] == one["step"] == 8  # same number of optimizer steps
    for key in ("val/top1", "val/top5", "val/agreement", "val/teacher_top1"):
        assert two[key] == pytest.approx(one[key], abs=1 / 12 + 1e-6), key
    assert two["val/teacher_top1"] == one["val/teacher_top1"]  # the frozen teacher: exact, every image once
    assert two["val/kl"] == pytest.approx(one["val/kl"], abs=0.02)
    assert len(list(ddp.glob("student*.safetensors"))) == 1
    assert (ddp / "metrics.csv").read_text().count("\n") == 3  # rank 0 alone wrote 2 rows


@pytest.mark.slow
def test_ddp_ranks_compute_half_of_the_soft_target_cache_each(cli_args, tmp_path):
    """`soft_targets=cached` under DDP(2): each rank runs the teacher over its own half of the rows."""
    ddp = run_cli([*cli_args, *DDP, "soft_targets=cached",
                   "soft_targets.views=3", f"hydra.run.dir={tmp_path / 'ddp'}"])
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    logs = (tmp_path / "ddp" / "train.log").read_text() + (tmp_path / "ddp" / "train_ddp_process_1.log").read_text()
    rows = 36 * 3  # images x views
    for rank in (0, 1):
        assert re.search(rf"cache train: built, .* {rows // 2} teacher images now by rank {rank} of 2", logs), logs
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["final"]["step"] == 8


def test_bad_files_in_the_validation_folder_are_reported_and_left_out(folders, tmp_path):
    import shutil

    val = tmp_path / "val"
    shutil.copytree(folders["val"], val)
    (val / "ant" / "empty.jpg").write_bytes(b"")
    (val / "bee" / "page.png").write_text("<html>404</html>")
    log = tmp_path / "skipped.tsv"
    dm = DistillDataModule({"teacher": 16}, unlabeled_dir=str(folders["train"]), val_dir=str(val),
                           class_names=["ant", "bee", "cat"], num_workers=0, skipped_log=str(log))
    from distill.folders import skipped_counts

    assert len(dm.val_set) == 12 and skipped_counts(log) == {"empty_file": 1, "not_an_image": 1}


def test_disk_full_is_one_line_error_and_the_next_run_recovers(make_cfg, tmp_path, monkeypatch):
    """The disk fills up as the student file is written: a one-line error, the checkpoint of the last
    epoch intact, the half-written file gone, and `resume=auto` finishes the run."""
    import errno

    import students.factory

    save_file = students.factory.save_file

    def full(state, path, **kw):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(students.factory, "save_file", full)
    with pytest.raises(UserError, match="disk full while writing .*student.safetensors"):
        train.train(make_cfg("trainer.max_epochs=2", "trainer.limit_train_batches=2"))
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "summary.json").exists()
    assert not list(run.glob("*.safetensors*")) and not list(run.glob(".student*"))
    monkeypatch.setattr(students.factory, "save_file", save_file)
    summary = train.train(make_cfg("trainer.max_epochs=2", "trainer.limit_train_batches=2", "resume=auto"))
    assert summary["final"]["epoch"] == 1 and (run / "student.safetensors").is_file()


def test_disk_full_while_a_cache_is_built_is_one_line_error_not_sigbus(make_cfg, tmp_path, monkeypatch):
    """A memory-mapped cache reserves its blocks before it is filled: the disk filling up is an ENOSPC
    error at that moment (a one-line message, no half-made array left), not a SIGBUS later, and the next
    run builds the cache."""
    import errno
    import os

    fallocate = os.posix_fallocate

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    args = ("soft_targets=cached", "soft_targets.views=2", "trainer.max_epochs=1", "trainer.limit_train_batches=2")
    with pytest.raises(UserError, match=r"disk full while writing .*\.npy"):
        train.train(make_cfg(*args))
    assert not list((tmp_path / "cache").rglob("logits.npy")) and not list((tmp_path / "cache").rglob("*.tmp.npy"))
    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    summary = train.train(make_cfg(*args, "resume=auto"))
    assert summary["final"]["epoch"] == 0 and list((tmp_path / "cache").rglob("logits.npy"))
