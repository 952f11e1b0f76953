"""Two training jobs side by side, each on half the cores, against one job on all of them: what a sweep
gains from `hydra/launcher=joblib hydra.launcher.n_jobs=2` (the CIFAR recipe's default) on this machine.

    python benchmarks/side_by_side.py                          # the CIFAR recipe: students at 32 px, its teacher
    python benchmarks/side_by_side.py --size 128 --teacher-size 128 --teacher-batch 64   # Imagenette's sizes

Each case times `--steps` training steps (after a warm-up) of one process with every core, then of two
processes at once with half the cores each (as joblib gives its workers), and prints the images/s of
both and their ratio (>1: side by side trains more images). Students: `throughput.bare_loop` (train.py's
step and process settings); the teacher: the stage's SGD step on timm resnet18, bf16 where it is native.
Writes benchmarks/results/side_by_side.json. Compare the ratios, not absolute numbers, between machines.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def teacher_step(size: int, batch: int, steps: int, warmup: int = 3, classes: int = 10) -> float:
    """Images/s of the teacher stage's training step: timm resnet18, SGD + Nesterov, channels_last."""
    import timm
    from throughput import images_per_s

    from distill.runtime import bf16_fast, fast_cpu_defaults

    fast_cpu_defaults()
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=classes).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))
    bf16 = bf16_fast("cpu")

    def loss() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return torch.nn.functional.cross_entropy(model(x), y)

    return images_per_s(loss, opt, batch, steps, warmup)


def worker(case: str, size: int, batch: int, steps: int) -> None:
    """One process's measurement, printed as JSON (run by `launch`)."""
    if case == "teacher":
        images_per_s = teacher_step(size, batch, steps)
    else:
        from throughput import bare_loop

        images_per_s = bare_loop(float(case), size, batch, steps)
    print(json.dumps({"images_per_s": images_per_s, "threads": torch.get_num_threads()}))


def launch(processes: int, threads: int, case: str, size: int, batch: int, steps: int) -> list[dict]:
    """`processes` workers at once, `threads` torch threads each; their results."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--worker", case, str(size), str(batch), str(steps)]
    running = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    results = []
    for proc in running:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--size", type=int, default=32, help="the students' resolution")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--teacher-size", type=int, default=64)
    parser.add_argument("--teacher-batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per student process (teacher: a quarter)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/side_by_side.json")
    args = parser.parse_args(argv)

    cores = len(os.sched_getaffinity(0))
    cases = [(f"{a:g}", args.size, args.batch, args.steps) for a in args.alphas]
    cases.append(("teacher", args.teacher_size, args.teacher_batch, max(4, args.steps // 4)))
    rows = []
    print(f"| model | px | batch | one job, {cores} threads: images/s | two jobs, {max(1, cores // 2)} each: "
          f"images/s in all | ratio |\n|---|---:|---:|---:|---:|---:|")
    for case, size, batch, steps in cases:
        alone = launch(1, cores, case, size, batch, steps)[0]["images_per_s"]
        both = sum(r["images_per_s"] for r in launch(2, max(1, cores // 2), case, size, batch, steps))
        rows.append({"model": case if case == "teacher" else f"mobilenet_v1 alpha={case}", "img_size": size,
                     "batch": batch, "cores": cores, "one_job": round(alone, 1), "two_jobs": round(both, 1),
                     "ratio": round(both / alone, 3)})
        r = rows[-1]
        print(f"| {r['model']} | {size} | {batch} | {r['one_job']} | {r['two_jobs']} | {r['ratio']:.2f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu_threads": cores, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], *map(int, sys.argv[3:6]))
    else:
        main()
