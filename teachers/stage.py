"""A recipe's teacher stage: train the teacher once with `train_teacher.py`, then distil from its file.

Configured as `teacher_stage` (conf/teacher_stage/recipe.yaml): every job of a sweep calls it, the
first one trains, later ones (and later sweeps) find the file and go on. The stage is an ordinary run of
the entry point in its own directory (the teacher file's folder), so its log, checkpoints and metrics
are kept, and a stage killed half-way continues from its last checkpoint the next time.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from distill.disk import locked
from distill.errors import UserError

log = logging.getLogger(__name__)


class StageFailed(UserError):
    """The teacher stage's run failed; its own output above says why (train.py reports it in one line)."""


# The file each entry point writes into its run directory.
WRITES = {"train_teacher": "teacher.safetensors", "train": "student.safetensors"}


def ensure_teacher(checkpoint_path: str, overrides: Sequence[str], extra: Sequence[str] = (),
                   entry: str = "train_teacher") -> Path:
    """Return `checkpoint_path`, first training it with `python -m {entry} *overrides *extra` if missing.

    The file must be named as the entry writes it into its run directory (`WRITES`): teacher.safetensors for
    train_teacher, student.safetensors for train (a teacher assistant, teachers.assistant)."""
    path = Path(checkpoint_path).expanduser().resolve()
    if path.is_file():
        return path
    if path.name != WRITES[entry]:
        raise ValueError(f"teacher_stage: checkpoint_path={checkpoint_path} must end in {WRITES[entry]} "
                         f"(the stage's run directory is its folder)")
    run_dir = path.parent
    with locked(run_dir / ".stage.lock"):  # parallel jobs of a sweep: one trains, the others wait for its file
        if path.is_file():
            return path
        command = [sys.executable, "-m", entry, *overrides, *extra, f"hydra.run.dir={run_dir}"]
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            command.append(f"resume={last}")
        log.info("teacher stage: %s", " ".join(command))
        if subprocess.run(command).returncode != 0 or not path.is_file():
            raise StageFailed(f"the teacher stage failed (its log: {run_dir}/{entry}.log); "
                               f"rerun to continue it, or run it alone: {' '.join(command)}")
    return path
