"""What padding first saves: students built by `create_student` for their input size, whose depthwise convs on
maps smaller than the kernel pad in a layer of their own (`mobilenet_v1`) or by a pre-hook (timm's students),
against the same nets padding inside the conv (built as timm builds them), in the bare training step of
`throughput.bare_loop`.

    python benchmarks/pad_first.py            # 32 px (the CIFAR recipe's size), 1 and 2 threads

Both variants compute the same numbers (tests/test_students.py); at 32 px `mobilenet_v1` (small-input stem)
has one such conv, the last block's on a 2x2 map, `mobilenetv2_050` 10 and `mobilenetv3_small_100` 7. Repeats
interleave the variants, so the ratio (the padded conv's step time / padding first's) holds on a machine
whose speed drifts; compare ratios, not times. Writes benchmarks/results/pad_first.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import timm
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step_ms(model: torch.nn.Module, size: int, batch: int, steps: int, warmup: int = 5) -> float:
    """Mean ms of train.py's student step (channels_last, KD loss, fused AdamW) over `steps`."""
    from throughput import images_per_s

    from distill.losses import soft_target_loss

    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    t = torch.randn(batch, model.num_classes)
    return 1000 * batch / images_per_s(lambda: soft_target_loss(model(x), t, 4.0), opt, batch, steps, warmup)


def main() -> None:
    import students
    from distill.runtime import fast_cpu_defaults

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--students", nargs="+", help="NAME or mobilenet_v1:ALPHA",
                        default=["mobilenet_v1:1.0", "mobilenet_v1:0.5", "mobilenet_v1:0.25", "mobilenetv2_050",
                                 "mobilenetv3_small_100"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pad_first.json")
    args = parser.parse_args()
    fast_cpu_defaults()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for student in args.students:
            name, _, alpha = student.partition(":")
            torch.manual_seed(0)
            first = students.create_student(10, name=name, alpha=float(alpha or 1.0), img_size=args.size)
            inside = timm.create_model(name, num_classes=10,
                                       **{k: v for k, v in first.model_args.items() if k != "img_size"})
            inside.load_state_dict(first.state_dict())
            times = {"pad_first": [], "padded_conv": []}
            for _ in range(args.repeats):
                times["pad_first"].append(step_ms(first, args.size, args.batch, args.steps))
                times["padded_conv"].append(step_ms(inside, args.size, args.batch, args.steps))
            ratio = statistics.median(p / f for p, f in zip(times["padded_conv"], times["pad_first"]))
            rows.append(dict(threads=threads, student=student, size=args.size, batch=args.batch, ratio=ratio,
                             **{k: [round(v, 1) for v in vs] for k, vs in times.items()}))
            print(f"threads {threads}  {student:<22} step ms: pad first {min(times['pad_first']):6.1f}  "
                  f"padded conv {min(times['padded_conv']):6.1f}  ratio {ratio:.2f}x", flush=True)
    args.out.write_text(json.dumps(dict(cpu=torch.backends.cpu.get_cpu_capability(), torch=torch.__version__,
                                        rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
