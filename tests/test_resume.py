"""resume=auto: which run it continues, and which it never touches (distill.resume)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

import train
from distill.resume import claim, find_checkpoint
from tests.helpers import run_cli

COMMAND = ["student.alpha=0.5", "trainer.max_epochs=3"]


def fake_run(root: Path, name: str, overrides=COMMAND, checkpoint=True, finished=False) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    if checkpoint:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"ckpt")
    if finished:
        (run / "summary.json").write_text("{}")
    return run


def test_auto_prefers_the_current_unfinished_run_and_never_a_finished_one(tmp_path):
    fake_run(tmp_path, "a", finished=True)
    b = fake_run(tmp_path, "b")
    fake_run(tmp_path, "c", finished=True)
    checkpoint, run, lock = find_checkpoint("auto", b, [*COMMAND, "resume=auto", "hydra.run.dir=x"])
    assert (checkpoint, run) == (str(b / "checkpoints" / "last.ckpt"), b.resolve())
    lock.close()


def test_auto_continues_an_interrupted_sibling_of_the_same_command_only(tmp_path):
    old = fake_run(tmp_path, "2026-01-01_00-00-00")
    fake_run(tmp_path, "2026-01-02_00-00-00", finished=True)  # newer, but finished
    fake_run(tmp_path, "2026-01-03_00-00-00", overrides=["student.alpha=0.25"])  # another command
    current = tmp_path / "2026-01-04_00-00-00"
    checkpoint, run, lock = find_checkpoint("auto", current, [*COMMAND, "resume=auto"])
    assert run == old.resolve() and checkpoint == str(old / "checkpoints" / "last.ckpt")
    lock.close()


def test_auto_starts_fresh_when_nothing_is_resumable(tmp_path):
    fake_run(tmp_path, "a", finished=True)
    fake_run(tmp_path, "b", checkpoint=False)
    checkpoint, run, lock = find_checkpoint("auto", tmp_path / "new", COMMAND)
    assert checkpoint is None and run == (tmp_path / "new").resolve()
    lock.close()


def test_a_run_in_progress_is_never_shared(tmp_path):
    """Two resume=auto runs at once: the first holds the interrupted run; the second starts fresh in its own
    directory, or, given the same directory, stops with a one-line error instead of writing beside it."""
    b = fake_run(tmp_path, "b")
    _, first_run, first_lock = find_checkpoint("auto", tmp_path / "first", COMMAND)
    assert first_run == b.resolve()
    checkpoint, second_run, second_lock = find_checkpoint("auto", tmp_path / "second", COMMAND)
    assert checkpoint is None and second_run == (tmp_path / "second").resolve()
    with pytest.raises(ValueError, match="in use by another running process"):
        find_checkpoint("auto", b, COMMAND)
    first_lock.close()  # the first run ends (or is killed: the kernel drops its lock)
    assert claim(b) is not None
    second_lock.close()


def test_resume_path_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume="):
        find_checkpoint(str(tmp_path / "nope.ckpt"), tmp_path / "run", COMMAND)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".run.lock"}


@pytest.mark.slow
def test_given_output_dir_is_continued_and_a_finished_run_untouched(cli_args, tmp_path):
    """The bug report's three steps: `a` runs to the end; `b`, the same command, is killed -9 after its first
    last.ckpt; `resume=auto hydra.run.dir=b` finishes `b` and leaves every file of `a` as it was."""
    def cli(*args):
        return run_cli([*cli_args, *args])

    a, b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    assert cli(f"hydra.run.dir={a}").returncode == 0
    before = _digest(a)
    crash = ["+callbacks.crash._target_=tests.helpers.CrashOnce", "+callbacks.crash.at_step=6",
             f"+callbacks.crash.marker={tmp_path / 'crashed'}"]
    assert cli(*crash, f"hydra.run.dir={b}").returncode == -9
    assert (b / "checkpoints" / "last.ckpt").is_file() and not (b / "summary.json").exists()
    resumed = cli(*crash, "resume=auto", f"hydra.run.dir={b}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((b / "summary.json").read_text())["final"]["epoch"] == 1
    assert (b / "student.safetensors").is_file()
    assert _digest(a) == before


def test_last_checkpoint_is_written_every_epoch_whatever_the_monitored_metric(make_cfg, tmp_path):
    """Lightning refreshes a monitored ModelCheckpoint's last.ckpt only when its metric improves, so a run
    whose metric stalled resumed from its last improvement. Here the best-model callback can never improve
    after epoch 0 (a running maximum watched for a minimum); last.ckpt still holds the final step."""
    import torch

    summary = train.train(make_cfg("trainer.max_epochs=3", "callbacks.model_checkpoint.monitor=val/top1_best",
                                   "callbacks.model_checkpoint.mode=min"))
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["global_step"] == summary["final"]["step"] == 6 and last["epoch"] == 2
