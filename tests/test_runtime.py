"""Process settings for fast CPU steps (distill.runtime)."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill.runtime import fast_cpu_defaults, skip_nvml_probe

ROOT = Path(__file__).resolve().parents[1]
SETTLE, COUNTED = 12, 8  # steps: the heap grows for the first few (up to 7 here) until freed blocks fit the next
STEP = f"""
import ctypes, resource, sys, torch
from distill.runtime import keep_freed_memory
# Counted in 4 KiB pages: where transparent huge pages are "always", a fresh mmap faults in 2 MiB at a time
# and glibc's defaults would look up to 512x cheaper than they are.
if ctypes.CDLL(None).prctl(41, 1, 0, 0, 0) != 0:  # PR_SET_THP_DISABLE, this process only
    sys.exit("no PR_SET_THP_DISABLE")
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for i in range({SETTLE + COUNTED}):  # a step's activations, freed, then the next steps' of the same size
    if i == {SETTLE}:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    activations = torch.empty(16 << 20).fill_(1.0)  # 64 MiB: above glibc's largest default mmap threshold
    del activations
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = (64 << 20) // 4096


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", STEP, mode], cwd=ROOT, capture_output=True, text=True)
    if out.returncode and "PR_SET_THP_DISABLE" in out.stderr:
        pytest.skip("this kernel cannot turn transparent huge pages off for one process")
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in():
    # glibc's defaults hand a block this large back to the OS when it is freed, so the next step
    # faults in (and zeroes) every page again; with freed memory kept, each step reuses the last one's pages.
    default, kept = _page_faults("default"), _page_faults("keep")
    assert default > 0.9 * COUNTED * PAGES, (default, kept)  # every step
    assert kept < PAGES, (default, kept)  # not one step's worth over all of them


def test_denormals_are_flushed():
    torch.set_flush_denormal(False)  # as onnxruntime (the export tests) or a fresh thread may leave it
    fast_cpu_defaults()
    tiny = torch.tensor([1e-39])  # below float32's smallest normal number (1.2e-38)
    assert (tiny * 1.0).item() == 0.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the NVML check is kept where CUDA devices exist")
def test_optimizer_steps_do_not_probe_for_nvml_without_cuda(monkeypatch):
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # what importing Lightning sets
    probes = []
    real_probe = torch.cuda._raw_device_count_nvml
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: probes.append(1) or real_probe())
    model = torch.nn.Linear(4, 2)
    model(torch.randn(3, 4)).sum().backward()
    opt = torch.optim.AdamW(model.parameters(), fused=True)

    opt.step()
    if not probes:
        pytest.skip("this torch's optimizer does not check for CUDA at each step")
    assert skip_nvml_probe()
    probes.clear()
    for _ in range(3):
        opt.step()
    assert not probes
