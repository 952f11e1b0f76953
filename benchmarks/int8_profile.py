"""Where INT8 pays: per-layer onnxruntime time of a student's fp32 and INT8 files, depthwise vs pointwise.

    python -m students.export RUN_DIR --int8         # first: student.onnx and student.int8.onnx
    python benchmarks/int8_profile.py RUN_DIR [--batch 1] [--runs 200]

Runs both files with onnxruntime's profiler (2 threads), matches the k-th convolution kernel of the fp32
run (Conv, fused with its ReLU) with the k-th of the INT8 run (QLinearConv: onnxruntime fuses each
QuantizeLinear / DequantizeLinear pair around a Conv into one integer kernel) and with the k-th Conv of the
exported graph (MobileNet v1 is a chain, so the order is the same), and prints per-layer times and the
totals for depthwise (group > 1) and pointwise / full convolutions; writes RUN_DIR/int8_profile.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np


def conv_groups(onnx_path: Path) -> list[tuple[str, int]]:
    """(name, group attribute) of each Conv node, in graph order."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    return [(n.name, next((a.i for a in n.attribute if a.name == "group"), 1)) for n in graph.node if n.op_type == "Conv"]


def kernel_times(onnx_path: Path, size: int, batch: int, runs: int, threads: int = 2) -> dict[tuple, float]:
    """(op, node name) -> mean kernel time (ms) over `runs` inferences, in execution order."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
        for _ in range(runs):
            session.run(None, {"input": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    times = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[(e["args"].get("op_name"), e["name"][: -len("_kernel_time")])] += e["dur"] / 1000 / runs
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    size = json.loads((args.run / "student.json").read_text())["img_size"]
    convs = conv_groups(args.run / "student.onnx")
    fp32 = kernel_times(args.run / "student.onnx", size, args.batch, args.runs)
    int8 = kernel_times(args.run / "student.int8.onnx", size, args.batch, args.runs)
    fp32_convs = [ms for (op, _), ms in fp32.items() if op == "Conv"]
    int8_convs = [ms for (op, _), ms in int8.items() if op in ("QLinearConv", "Conv")]
    if not len(convs) == len(fp32_convs) == len(int8_convs):
        raise SystemExit(f"cannot match the layers: {len(convs)} convolutions in the graph, {len(fp32_convs)} "
                         f"fp32 and {len(int8_convs)} INT8 kernels")
    rows = []
    print(f"{'layer':16} {'kind':10} {'fp32 ms':>8} {'INT8 ms':>8} {'ratio':>6}")
    for (name, group), f, q in zip(convs, fp32_convs, int8_convs):
        rows.append({"layer": name, "kind": "depthwise" if group > 1 else "full/1x1", "fp32": f, "int8": q})
        print(f"{name:16} {rows[-1]['kind']:10} {f:8.4f} {q:8.4f} {q / f:6.2f}")
    totals = {}
    for kind in ("depthwise", "full/1x1"):
        f, q = (sum(r[k] for r in rows if r["kind"] == kind) for k in ("fp32", "int8"))
        totals[kind] = {"fp32_ms": round(f, 4), "int8_ms": round(q, 4), "ratio": round(q / f, 3) if f else None}
    whole = {k: round(sum(v.values()), 4) for k, v in (("fp32_ms", fp32), ("int8_ms", int8))}
    print(json.dumps({"batch": args.batch, "totals": totals, "all_kernels": whole}))
    (args.run / "int8_profile.json").write_text(json.dumps({"batch": args.batch, "totals": totals,
                                                            "all_kernels": whole, "layers": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
