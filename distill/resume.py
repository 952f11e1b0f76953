"""Which run to continue: `resume=PATH.ckpt`, or with `resume=auto` the interrupted run of the same command.

A run directory is *finished* once its `summary.json` exists (train.py writes it last, after the student
or teacher file), and *busy* while a process holds its `.run.lock`. `resume=auto` continues a directory
that is neither: first the current one, then the newest sibling run of the same command (same
overrides), and otherwise starts fresh. A finished run is never reopened, and two processes never write
into one directory: the lock goes with the process, so a run killed with -9 frees its directory.
"""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Sequence

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

LOCK = ".run.lock"


def is_finished(run: Path) -> bool:
    return (run / "summary.json").is_file()


def claim(run: Path) -> IO | None:
    """An exclusive lock on `run` for as long as the returned file stays open; None if another process
    holds it. Ranks other than 0 of a multi-process run share rank 0's directory and take no lock."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) != 0:
        return open(os.devnull, "w")
    run.mkdir(parents=True, exist_ok=True)
    handle = open(run / LOCK, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def command_of(overrides: Sequence[str]) -> list[str]:
    """What makes two runs "the same command": their overrides, less resume= and hydra.* ones."""
    return sorted(o for o in overrides if not o.startswith(("resume=", "hydra.")))


def find_checkpoint(resume: str | None, output_dir: Path, overrides: Sequence[str]) -> tuple[str | None, Path, IO]:
    """(checkpoint to continue from or None, the run directory to write to, its lock).

    Raises FileNotFoundError for a `resume=PATH` that does not exist, and ValueError when the output
    directory is held by another running process."""
    output_dir = Path(output_dir).resolve()
    if resume and resume != "auto" and not Path(resume).is_file():
        raise FileNotFoundError(f"resume={resume} does not exist (use resume=auto or a .ckpt path)")
    if resume == "auto":
        for run in _candidates(output_dir, command_of(overrides)):
            if (lock := claim(run)) is not None:
                last = run / "checkpoints" / "last.ckpt"
                log.info("resume=auto: continuing %s from %s", run, last)
                return str(last), run, lock
            log.info("resume=auto: %s is in use by another process; not touching it", run)
        log.info("resume=auto: no interrupted run of this command; starting fresh")
    lock = claim(output_dir)
    if lock is None:
        raise ValueError(f"{output_dir} is in use by another running process; give another hydra.run.dir")
    return (str(resume) if resume and resume != "auto" else None), output_dir, lock


def _candidates(current: Path, command: list[str]) -> list[Path]:
    """Unfinished runs with a last.ckpt: the current directory first, then same-command siblings, newest first."""
    def resumable(run: Path) -> bool:
        return (run / "checkpoints" / "last.ckpt").is_file() and not is_finished(run)

    found = [current] if resumable(current) else []
    if current.parent.is_dir():
        for run in sorted(current.parent.iterdir(), reverse=True):
            overrides = run / ".hydra" / "overrides.yaml"
            if run.resolve() != current and resumable(run) and overrides.is_file() \
                    and command_of(OmegaConf.load(overrides)) == command:
                found.append(run)
    return found


def continue_run(cfg: DictConfig) -> tuple[str | None, IO]:
    """The checkpoint to continue from (distill.resume); a continued run's directory becomes this run's
    output directory, so checkpoints, metrics, the W&B run id and the student file all continue there.
    Returns it with the directory's lock, held until the run ends."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    checkpoint, run_dir, lock = find_checkpoint(cfg.get("resume"), Path(cfg.paths.output_dir), overrides)
    if run_dir != Path(cfg.paths.output_dir).resolve():
        OmegaConf.update(cfg, "paths.output_dir", str(run_dir))
    return checkpoint, lock
