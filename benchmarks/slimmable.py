"""A slimmable student's training step at each width against the plain MobileNet v1 at that width, and the
sandwich step against alpha 1.0 alone (one process, so the figures are ratios of one run).

    python benchmarks/slimmable.py [--size 32 --batch 64 --steps 15]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import students  # noqa: E402,F401  (registers the models with timm)


def step_ms(model, x: torch.Tensor, steps: int, widths=None) -> float:
    """Forward + backward of a squared-logit loss (the optimizer's work is the same for both nets)."""
    model.train().to(memory_format=torch.channels_last)
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        loss = 0.0
        for width in widths or [None]:
            if width is not None:
                model.at_width(width)
            loss = loss + model(x).float().square().mean()
        loss.backward()
    return (time.perf_counter() - start) / steps * 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    stem = 1 if args.size < 96 else 2
    slim = timm.create_model("slimmable_mobilenet_v1", num_classes=10, stem_stride=stem)
    print(f"training step, batch {args.batch} at {args.size} px (ms)\n{'alpha':>6} {'plain':>8} {'slimmable':>10}")
    plain_ms = {}
    for alpha in (1.0, 0.75, 0.5, 0.25):
        plain = timm.create_model("mobilenet_v1", alpha=alpha, num_classes=10, stem_stride=stem)
        plain_ms[alpha] = step_ms(plain, x, args.steps)
        print(f"{alpha:6.2f} {plain_ms[alpha]:8.1f} {step_ms(slim, x, args.steps, [alpha]):10.1f}")
    sandwich = step_ms(slim, x, args.steps, [1.0, 0.75, 0.5, 0.25])  # the sandwich's mean random widths
    print(f"sandwich (1.0, 0.75, 0.5, 0.25): {sandwich:.1f} ms = {sandwich / plain_ms[1.0]:.2f}x alpha 1.0 alone")


if __name__ == "__main__":
    main()
