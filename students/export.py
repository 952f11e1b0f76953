"""Export a distilled student for deployment: BN folded, TorchScript + ONNX, each checked, plus a model card.

    python -m students.export RUN_DIR            # or a path to student.safetensors
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

from .cost import cost_report
from .factory import load_student

TOLERANCE = 1e-4


def fused_copy(model: nn.Module) -> nn.Module:
    """Fold every conv -> BatchNorm pair into the conv (both are linear at inference): w' = w*g/s, b' = (b-mu)*g/s+beta."""
    folded = fuse(model.eval())
    remaining = [n for n in folded.graph.nodes if n.target is F.batch_norm] + \
        [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if remaining:
        raise RuntimeError(f"{len(remaining)} BatchNorm layers could not be folded (not preceded by a conv)")
    return folded


def _max_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    return float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max())


@torch.no_grad()
def export_student(student_file: Path, out_dir: Path, batch_size: int = 4, seed: int = 0) -> dict:
    """Write student_folded.pt (TorchScript), student.onnx and MODEL_CARD.md; return the parity report."""
    import onnxruntime as ort

    model = load_student(student_file)
    meta = json.loads(student_file.with_suffix(".json").read_text())
    size = meta["img_size"]
    x = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(seed))
    eager = model(x)

    folded = fused_copy(model)
    report = {"folded": _max_diff(eager, folded(x))}

    ts_path = out_dir / "student.torchscript.pt"
    torch.jit.save(torch.jit.trace(folded, x), str(ts_path))
    report["torchscript"] = _max_diff(eager, torch.jit.load(str(ts_path))(x))

    onnx_path = out_dir / "student.onnx"
    torch.onnx.export(folded, (x,), str(onnx_path), input_names=["input"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    report["onnx"] = _max_diff(eager, session.run(None, {"input": x.numpy()})[0])

    failed = {k: v for k, v in report.items() if v >= TOLERANCE}
    if failed:
        raise RuntimeError(f"export parity failed (max abs diff >= {TOLERANCE}): {failed}")
    cost = cost_report(model, size)
    _write_card(out_dir / "MODEL_CARD.md", meta, cost, report, student_file)
    return {"max_abs_diff": report, "cost": cost, "files": [str(ts_path), str(onnx_path)]}


def _write_card(path: Path, meta: dict, cost: dict, parity: dict, student_file: Path) -> None:
    summary_file = student_file.parent / "summary.json"
    metrics = json.loads(summary_file.read_text()).get("final", {}) if summary_file.exists() else {}
    args = ", ".join(f"{k}={v}" for k, v in meta["model_args"].items())
    lines = [
        f"# Student: {meta['model_name']}",
        "",
        f"- Architecture: `{meta['model_name']}` ({args}), {meta['num_classes']} classes",
        f"- Width multiplier alpha: {meta['model_args'].get('alpha', 'n/a (in the name)')}",
        f"- Input: {meta['img_size']} px RGB, mean {meta['mean']}, std {meta['std']}",
        f"- Params: {cost['params'] / 1e6:.3f} M; mult-adds: {cost['macs'] / 1e6:.2f} M",
        f"- CPU latency ({cost['threads']} threads, median): batch 1 {cost['latency_ms_b1']:.2f} ms, "
        f"batch 32 {cost['latency_ms_b32']:.1f} ms",
        f"- Teacher: {meta.get('teacher', 'unknown')}",
        "- Metrics: " + (", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)) or "none"),
        f"- Exported: {dt.date.today().isoformat()}; BatchNorm folded; max |diff| vs eager: "
        + ", ".join(f"{k} {v:.1e}" for k, v in parity.items()),
        "",
        "Files: `student.safetensors` + `student.json` (timm, after `import students`), "
        "`student.torchscript.pt`, `student.onnx` (input `input`, output `logits`, dynamic batch).",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a run directory or a student .safetensors file")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: beside the student file)")
    args = parser.parse_args(argv)
    student_file = args.path / "student.safetensors" if args.path.is_dir() else args.path
    if not student_file.with_suffix(".json").exists():
        print(f"error: no student file at {student_file} (expected student.safetensors + student.json)",
              file=sys.stderr)
        return 2
    out_dir = args.out or student_file.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    result = export_student(student_file, out_dir)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
