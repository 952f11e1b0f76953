"""The machine and what a model asks of it: process-wide CPU settings that make training steps faster
(every run and the benchmark's bare loop call `fast_cpu_defaults()` before any model work), whether
bf16 is native, and a model's forward mult-adds."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import signal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_BYTES = 1 << 30


def fast_cpu_defaults() -> None:
    # Denormal floats are far slower on x86, and small students' gradients reach them: flushed to zero
    # (BENCHMARKS.md, "Speed"). It is per thread: threads inherit it when they are created, so this runs
    # before any model work creates the intra-op thread pool; and at every run, not once per process,
    # since other libraries (onnxruntime) may switch the thread's mode back. All cheap.
    torch.set_flush_denormal(True)
    keep_freed_memory()
    skip_nvml_probe()


def keep_freed_memory() -> bool:
    """Let glibc keep freed activation memory for the next step instead of returning it to the OS.

    By default glibc serves blocks over a few MB with fresh mmaps and unmaps them on free, so every
    training step page-faults (and zeroes) its activations again (what keeping them gains: BENCHMARKS.md,
    "Speed"). The price: up to KEEP_BYTES of freed memory stays resident. Returns whether it applied
    (glibc only)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    if not ok:
        log.debug("mallopt refused the thresholds; glibc's defaults stay")
    return bool(ok)


def skip_nvml_probe() -> bool:
    """On a machine without CUDA devices, stop torch from probing for NVML at every optimizer step.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 when imported (so that checking for GPUs does not
    initialise CUDA before DataLoader workers fork); torch's optimizers then call torch.cuda.is_available()
    every step, and each call tries to dlopen libnvidia-ml again, uncached when it is missing (its cost:
    BENCHMARKS.md, "Speed"). With no CUDA device there is nothing for the NVML check to protect, so
    torch's own cached count is used. Returns whether it switched."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1" or torch.cuda.is_available():
        return False
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"
    return True


def loader_worker_init(worker_id: int) -> None:
    """Every DataLoader's `worker_init_fn`: a worker ignores SIGTERM and leaves the stop to its parent.

    `timeout`, Slurm and a terminal signal the whole process group. A worker dies of a SIGTERM that its
    parent did not send (torch exits quietly only on the parent's), and the parent then raises "DataLoader
    worker ... killed by signal" from wherever it is, before Lightning can stop at a step boundary and save
    `last.ckpt`. Ignoring it is safe: a worker still exits when its parent asks or is gone (torch's
    watchdog). Lightning seeds workers only when the loader has no `worker_init_fn`, so this does it too."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("PL_SEED_WORKERS") == "1":  # set by seed_everything(workers=True)
        # Imported here: litdata's writer processes import this module (through distill.arrays) and
        # need nothing of Lightning, which costs each of them seconds to import.
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def count_macs(model: nn.Module, img_size: int) -> int:
    """Forward multiply-accumulates for one image (FLOPs / 2, as the paper counts them)."""
    x = torch.zeros(1, 3, img_size, img_size, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


@functools.cache
def bf16_fast(device_type: str) -> bool:
    """Whether bf16 matmuls/convolutions run natively here (CUDA with bf16, or a CPU with AVX512-BF16/AMX)."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return device_type == "cpu" and torch.backends.mkldnn.is_available() and \
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


def bf16_autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on `device` (a no-op when not enabled): the one helper every model's forward uses."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
