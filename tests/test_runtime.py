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
STEPS = """
import resource, sys, torch
import students
from distill.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(1)
model = students.create_student(10, alpha=0.5, img_size=64).to(memory_format=torch.channels_last)
x = torch.randn(32, 3, 64, 64).contiguous(memory_format=torch.channels_last)
for i in range(13):
    if i == 3:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(x).sum().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in():
    # 10 forward/backward passes of a small student: ~250,000 page faults with glibc's defaults (each
    # activation a fresh mmap), ~4,000 with freed memory kept.
    default, kept = _page_faults("default"), _page_faults("keep")
    assert kept < default / 10, (default, kept)


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
