"""What a student costs: parameters, forward mult-adds (torch's FlopCounterMode) and CPU latency.

`python -m students.cost --alphas 1.0 0.75 0.5 0.25 --sizes 224 192 160 128` prints the alpha x rho
grid in the layout of the MobileNets paper's Tables 6/7.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from distill.runtime import count_macs  # (re-exported: students.cost is where users look for it)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
@torch.no_grad()
def measure_latency(model: nn.Module, img_size: int, batch_size: int = 1, repeats: int = 10, warmup: int = 2) -> float:
    """Median CPU wall time in milliseconds of one eval forward pass (channels_last, fp32)."""
    was_training = model.training
    model = model.eval()
    x = torch.randn(batch_size, 3, img_size, img_size).contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        model(x)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    model.train(was_training)
    return 1000 * statistics.median(times)


def cost_report(model: nn.Module, img_size: int, latency: bool = True, repeats: int = 10) -> dict:
    """Params, mult-adds and (optionally) CPU latency at batch 1 and 32, with the thread count used."""
    report = {"params": count_params(model), "macs": count_macs(model, img_size), "img_size": img_size}
    if latency:
        model = copy.deepcopy(model).cpu().to(memory_format=torch.channels_last)
        report.update(
            latency_ms_b1=round(measure_latency(model, img_size, 1, repeats), 3),
            latency_ms_b32=round(measure_latency(model, img_size, 32, max(3, repeats // 3)), 3),
            threads=torch.get_num_threads(),
        )
    return report


def grid(alphas: list[float], sizes: list[int], num_classes: int = 1000, shallow: bool = False,
         latency: bool = False) -> list[dict]:
    """One cost row per (alpha, resolution) of the paper's MobileNet v1, built as train.py builds it for
    that resolution (below 96 px: the stride-1 small-input stem)."""
    from .factory import create_student

    rows = []
    for alpha in alphas:
        for size in sizes:
            model = create_student(num_classes, alpha=alpha, img_size=size, shallow=shallow)
            rows.append({"alpha": alpha, **cost_report(model, size, latency=latency)})
    return rows


def format_grid(rows: list[dict]) -> str:
    """Markdown table in the paper's layout: model, million mult-adds, million parameters."""
    latency = "latency_ms_b1" in rows[0]
    head = "| Model | Million Mult-Adds | Million Parameters |" + (" ms (b1) | ms (b32) |" if latency else "")
    lines = [head, "|---|---:|---:|" + ("---:|---:|" if latency else "")]
    for r in rows:
        line = f"| {r['alpha']:.2f} MobileNet-{r['img_size']} | {r['macs'] / 1e6:.1f} | {r['params'] / 1e6:.3f} |"
        if latency:
            line += f" {r['latency_ms_b1']:.2f} | {r['latency_ms_b32']:.1f} |"
        lines.append(line)
    if latency:
        lines.append(f"\nCPU latency: median of repeats, {rows[0]['threads']} threads, fp32, channels_last.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 192, 160, 128])
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--shallow", action="store_true", help="the paper's shallow MobileNet (Table 5)")
    parser.add_argument("--latency", action="store_true", help="also time batch 1 and 32 on this CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for --latency")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(format_grid(grid(args.alphas, args.sizes, args.num_classes, args.shallow, args.latency)))


if __name__ == "__main__":
    main()
