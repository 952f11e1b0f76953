"""A teacher assistant (Mirzadeh et al. 2020): a narrow student learns from a distilled wider one.

With `assistant=A` the run's student learns not from `teacher` but from the student of width A that the
same command distils from it (the run's overrides with student.alpha=A). That student is the finished run
of that command beside this run's directory, such as another job of the same sweep (the CIFAR recipe's
α = 1.0 for its 0.25 with `recipe_assistant='{0.25: 1.0}'`), waited for while it runs. With none there, it
is trained first into this run's `assistant/` folder: an ordinary train.py run, continued from its last
checkpoint if it was killed.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from torch import nn

from distill.disk import locked
from distill.resume import LOCK, command_of, is_finished

from .factory import create_teacher, read_sidecar
from .stage import ensure_teacher

log = logging.getLogger(__name__)
OVERRIDES = Path(".hydra") / "overrides.yaml"


def assistant_command(overrides: Sequence[str], alpha: float) -> list[str]:
    """The command that distils the assistant: `overrides` at width `alpha`, with no assistant of its own."""
    kept = [o for o in overrides if not o.startswith(("student.alpha=", "assistant=", "resume="))]
    return [*kept, f"student.alpha={alpha}"]


def _key(overrides: Sequence[str]) -> list[str]:
    def alpha_as_number(o: str) -> str:  # a sweep's "student.alpha=1" is the assistant's "student.alpha=1.0"
        name, _, value = o.partition("=")
        try:
            return f"{name}={float(value)}" if name == "student.alpha" else o
        except ValueError:
            return o

    return command_of([alpha_as_number(o) for o in overrides if not o.startswith("assistant=")])


def _wait_for(ready: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.2)


def _runs_beside(run_dir: Path) -> list[Path]:
    return [r for r in sorted(run_dir.parent.iterdir()) if r.resolve() != run_dir and (r / OVERRIDES).is_file()]


def find_finished(run_dir: Path, command: Sequence[str], earlier_jobs: int = 0,
                  starting_s: float = 120.0) -> Path | None:
    """The student file of a finished run of `command` beside `run_dir`, after waiting for one still running.

    A sweep's jobs start together, so the assistant's job may not have made its directory (`earlier_jobs`:
    the sweep's jobs numbered before this one), or taken its lock, when this one looks. Each gets
    `starting_s` to (a job that failed before never does)."""
    if not run_dir.parent.is_dir():
        return None
    _wait_for(lambda: len(_runs_beside(run_dir)) >= earlier_jobs, starting_s)
    for run in _runs_beside(run_dir):
        if _key(OmegaConf.load(run / OVERRIDES)) != _key(command):
            continue
        _wait_for(lambda: is_finished(run) or (run / LOCK).is_file(), starting_s)
        if not is_finished(run) and (run / LOCK).is_file():
            log.info("teacher assistant: waiting for %s (its run of the assistant's command) to end", run)
            with locked(run / LOCK):  # held by that run's process until it exits
                pass
        if is_finished(run) and (run / "student.safetensors").is_file():
            return run / "student.safetensors"
    return None


def teacher_assistant(alpha: float, run_dir: str | Path, student_alpha: float) -> nn.Module:
    """The distilled student of width `alpha` as a frozen teacher for this run's narrower student."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"assistant={alpha!r}: give a student width such as 1.0, or null")
    if float(alpha) == float(student_alpha):
        raise ValueError(f"assistant={alpha} is this run's own width; give a wider one or assistant=null")
    if not HydraConfig.initialized():
        raise ValueError("assistant= rebuilds the run's command line: run it through train.py")
    run_dir = Path(run_dir).resolve()
    hydra = HydraConfig.get()
    command = assistant_command(hydra.overrides.task, alpha)
    path = find_finished(run_dir, command, earlier_jobs=int(hydra.job.num) if hydra.mode == RunMode.MULTIRUN else 0)
    if path is None:
        log.info("teacher assistant: no finished run of student.alpha=%s beside this one; training it first", alpha)
        path = ensure_teacher(str(run_dir / "assistant" / "student.safetensors"), command, entry="train")
    log.info("teacher assistant: %s", path)
    return create_teacher(read_sidecar(path)["model_name"], checkpoint_path=str(path))
