"""Export a distilled student for deployment: BN folded, TorchScript + ONNX, each checked, plus a model card.

    python -m students.export RUN_DIR            # or a path to student.safetensors
    python -m students.export RUN_DIR --int8     # also student.int8.onnx, checked on the run's folders
    python -m students.export SWEEP_DIR --int8   # every run of a sweep, then its report with INT8 columns
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

from distill.disk import write_json
from distill.fold import split_norm_act

from .cost import cost_report
from .factory import load_student
from .onnxfile import slim
from .quantize import METHODS, QuantizationLoss, check, export_int8

TOLERANCE = 1e-4


def fused_copy(model: nn.Module) -> nn.Module:
    """Fold every conv -> BatchNorm pair into the conv (both are linear at inference): w' = w*g/s, b' = (b-mu)*g/s+beta.
    timm's students (BatchNormAct2d) are split first, so their norms fold too."""
    model = copy.deepcopy(model).eval()
    split_norm_act(model)
    folded = fuse(model, inplace=True)
    remaining = [n for n in folded.graph.nodes if n.target is F.batch_norm] + \
        [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if remaining:
        raise ValueError(f"{len(remaining)} BatchNorm layers could not be folded (not preceded by a conv)")
    return folded


def _max_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    return float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max())


@torch.no_grad()
def export_student(student_file: Path, out_dir: Path, batch_size: int = 4, seed: int = 0, int8: dict | None = None) -> dict:
    """Write student_folded.pt (TorchScript), student.onnx and MODEL_CARD.md; return the parity report.

    With `int8` (`quantize.export_int8`'s keyword arguments), also student.int8.onnx and its report
    (`quantize.check` is left to the caller)."""
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
    slim(onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    report["onnx"] = _max_diff(eager, session.run(None, {"input": x.numpy()})[0])

    failed = {k: v for k, v in report.items() if v >= TOLERANCE}
    if failed:
        raise RuntimeError(f"export parity failed (max abs diff >= {TOLERANCE}): {failed}")
    cost = cost_report(model, size)
    files = [str(ts_path), str(onnx_path)]
    int8_report = export_int8(model, student_file, onnx_path, out_dir, **int8) if int8 is not None else None
    if int8_report:
        files.append(int8_report["int8_file"])
        write_json(out_dir / "int8.json", int8_report)  # (read by the sweep report: python -m distill.report)
    _write_card(out_dir / "MODEL_CARD.md", meta, cost, report, student_file, int8_report)
    return {"max_abs_diff": report, "cost": cost, "files": files, **({"int8": int8_report} if int8_report else {})}


def _write_card(path: Path, meta: dict, cost: dict, parity: dict, student_file: Path, int8: dict | None) -> None:
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
    if int8:
        lines += ["", "## INT8 (`student.int8.onnx`: onnxruntime static quantization, QDQ, per-channel int8 weights)", "",
                  *int8_lines(int8)]
    path.write_text("\n".join(lines) + "\n")


def int8_lines(r: dict) -> list[str]:
    """The INT8 report as the model card's and the console's lines."""
    top1 = (f"top-1 fp32 {r['top1_fp32']:.2f} % / INT8 {r['top1_int8']:.2f} % on {r['images']:,} images of "
            f"{r['folder']}" if "top1_int8" in r else f"no labels: {r['images']:,} images of {r['folder']}")
    teacher = (f"; with the teacher: fp32 {r['agreement_teacher_fp32']:.2f} %, INT8 {r['agreement_teacher_int8']:.2f} %"
               if "agreement_teacher_int8" in r else "")
    return [f"- {top1}",
            f"- agreement INT8 vs fp32 {r['agreement_fp32_int8']:.2f} %{teacher}; mean |logit change| "
            f"{r['logit_error']:.3f} of the fp32 logits' std",
            f"- onnxruntime latency ({r['threads']} threads, median): batch 1 fp32 {r['latency_ms_b1_fp32']:.3f} ms, "
            f"INT8 {r['latency_ms_b1_int8']:.3f} ms ({r['latency_ms_b1_int8'] / r['latency_ms_b1_fp32']:.2f}x); batch 32 "
            f"fp32 {r['latency_ms_b32_fp32']:.2f} ms, INT8 {r['latency_ms_b32_int8']:.2f} ms "
            f"({r['latency_ms_b32_int8'] / r['latency_ms_b32_fp32']:.2f}x)",
            f"- file: fp32 {r['bytes_fp32'] / 1e6:.2f} MB, INT8 {r['bytes_int8'] / 1e6:.2f} MB "
            f"({r['bytes_int8'] / r['bytes_fp32']:.2f}x)",
            f"- calibration: {r['calibration']['images']} images of {r['calibration']['folder']}, "
            f"{r['calibration']['method']}, {r['calibration'].get('weight_bits', 8)}-bit weights"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a run directory, a student .safetensors file, or a sweep directory")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: beside the student file)")
    parser.add_argument("--int8", action="store_true", help="also write student.int8.onnx (static INT8) and check it")
    parser.add_argument("--calibration-dir", default=None, help="INT8 calibration images (default: the run's data.unlabeled_dir)")
    parser.add_argument("--calibration-images", type=int, default=300)
    parser.add_argument("--calibrate", choices=METHODS, default="minmax", help="activation-range calibration")
    parser.add_argument("--val-dir", default=None, help="labeled folder for the INT8 check (default: the run's data.val_dir)")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit INT8 weights: for CPUs without VNNI "
                        "(AVX2 only), whose integer kernels saturate on full-range weights")
    parser.add_argument("--max-drop", type=float, default=1.0, help="INT8 top-1 points allowed under fp32")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads for the latency figures")
    args = parser.parse_args(argv)
    # A sweep's runs, or a slimmable run's widths (each a plain student), are exported one by one.
    widths = args.path / "widths" if (args.path / "widths").is_dir() else None
    sweep = args.path.is_dir() and (widths is not None or not (args.path / "student.safetensors").exists())
    student_files = sorted((widths or args.path).glob("*/student.safetensors")) if sweep else \
        [args.path / "student.safetensors" if args.path.is_dir() else args.path]
    missing = [f for f in student_files if not f.with_suffix(".json").exists()]
    if not student_files or missing:
        print(f"error: no student file at {missing[0] if missing else args.path} (expected student.safetensors + "
              f"student.json, or a sweep directory of runs)", file=sys.stderr)
        return 2
    int8 = dict(calibration_dir=args.calibration_dir, val_dir=args.val_dir, calibration_images=args.calibration_images,
                method=args.calibrate, threads=args.threads, reduce_range=args.reduce_range) if args.int8 else None
    status = 0
    for student_file in student_files:
        out_dir = args.out / student_file.parent.name if args.out and sweep else args.out or student_file.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = export_student(student_file, out_dir, int8=int8)
        except ValueError as err:
            print(f"error: {student_file}: {err}", file=sys.stderr)
            return 2
        print(json.dumps(result, indent=2) if not sweep else f"{student_file.parent}: {', '.join(result['files'])}")
        if args.int8:
            print("\n".join(int8_lines(result["int8"])))
            try:
                check(result["int8"], args.max_drop, student_file)
            except QuantizationLoss as err:
                print(f"error: {student_file.parent}: {err}", file=sys.stderr)
                status = 1
    if sweep and args.int8 and not args.out:
        from distill.report import build_report

        build_report(args.path)  # the shrinking report gains the INT8 columns
        print(f"sweep report with INT8 columns: {args.path / 'sweep.md'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
