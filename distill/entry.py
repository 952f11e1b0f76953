"""What the two entry points (train.py, train_teacher.py) share: the trainer from config, the run around a
job (process settings, first-use preparations, resume, disk-full) and one-line errors with exit codes."""
from __future__ import annotations

import errno
import gc
import logging
import multiprocessing
import os
import sys
from typing import Callable

import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from joblib import effective_n_jobs
from omegaconf import DictConfig, OmegaConf

from .console import quiet
from .errors import UserError, user_errors
from .resume import continue_run
from .runtime import bf16_fast, fast_cpu_defaults

log = logging.getLogger("train")
Job = Callable[[DictConfig, "str | None"], dict]


def pick(table: DictConfig, key, *default):
    """`${pick:${table},${key}}`: a config value chosen by another one, e.g. a recipe's epochs per alpha;
    `${pick:${table},${key},null}` gives null for a key the table lacks."""
    if key not in table:
        if default:
            return default[0]
        raise ValueError(f"no entry for {key!r} in {OmegaConf.to_container(table)}")
    return table[key]


def fast_precision(accelerator: str = "auto") -> str:
    """`${fast_precision:${trainer.accelerator}}`: Lightning's "bf16-mixed" where bf16 runs natively on the
    device the trainer picks, else "32-true". Emulated bf16 (a CPU without AVX512-BF16 or AMX) trains a
    resnet18 about 14x slower than fp32 (BENCHMARKS.md, "Teacher stage")."""
    if accelerator in ("gpu", "auto"):
        accelerator = "cuda" if accelerator == "gpu" or torch.cuda.is_available() else "cpu"
    return "bf16-mixed" if accelerator in ("cpu", "cuda") and bf16_fast(accelerator) else "32-true"


def jobs_at_once() -> int:
    """`${jobs_at_once:}`: how many jobs of this multirun share the machine side by side, each on its share of
    the cores (`hydra/launcher=joblib`'s `n_jobs`, counted as joblib counts -1 and -2); 1 in a single run,
    under a launcher that runs one job at a time, and where no Hydra run is set up."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return 1
    n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=None)
    return 1 if n_jobs is None else effective_n_jobs(n_jobs)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("pick", pick, replace=True)
    OmegaConf.register_new_resolver("fast_precision", fast_precision, replace=True)
    OmegaConf.register_new_resolver("jobs_at_once", jobs_at_once, replace=True)


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer


def run(cfg: DictConfig, job: Job) -> dict:
    """`job(cfg, checkpoint)` with the process set up, the demo / a recipe's teacher built if the config
    reads them, and the run continued (`resume`) under its directory's lock."""
    fast_cpu_defaults()  # denormals flushed to zero, freed activation memory kept for the next step
    if multiprocessing.get_start_method(allow_none=True) == "loky":
        # A job of hydra/launcher=joblib runs in a loky worker, whose start method DataLoader workers can't use.
        multiprocessing.set_start_method(None, force=True)
    quiet()  # Lightning's tips and the warnings expected here, by name
    pl.seed_everything(cfg.seed, workers=True)
    try:
        with user_errors():
            for first_use in ("demo", "teacher_stage"):  # each builds its files only if they are missing
                if cfg.get(first_use):
                    instantiate(cfg[first_use])
            checkpoint, lock = continue_run(cfg)
        with lock:
            return job(cfg, checkpoint)
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


def exit_on_error(train: Callable[[DictConfig], dict], cfg: DictConfig) -> dict | None:
    """`train(cfg)`, with a bad input or config (UserError) or a diverged run as one line on stderr and exit
    code 2 or 3 instead of a traceback (HYDRA_FULL_ERROR=1 shows it). In a multirun the sweep goes on."""
    try:
        return train(cfg)
    except (UserError, FloatingPointError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return None  # its report lists this job as failed
        sys.exit(2 if isinstance(err, UserError) else 3)
