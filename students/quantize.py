"""INT8 students for CPUs: onnxruntime's post-training static quantization of the exported ONNX file, then
checked against the fp32 file on labeled images, never assumed.

    python -m students.export RUN_DIR --int8

QDQ format, int8 weights per output channel, uint8 activations whose ranges are calibrated on a few hundred
of the run's unlabeled images, preprocessed exactly as the student sees them at evaluation (its centre crop,
resolution, mean and std). onnxruntime fuses each QuantizeLinear / DequantizeLinear pair around a Conv into
one integer convolution (VNNI on this project's CPUs).
"""
from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from omegaconf import OmegaConf
from torch import nn
from tqdm.auto import tqdm

from distill.entry import register_resolvers
from distill.folders import labeled_files, scan_images
from distill.normalize import Normalize

from .evaluate import eval_loader
from .onnxfile import slim

METHODS = ("minmax", "percentile", "entropy")


class QuantizationLoss(RuntimeError):
    """The INT8 file lost more top-1 than allowed; the message says by how much and what to try."""


def student_inputs(model: nn.Module, files: Sequence[Path], batch_size: int = 64) -> Iterator[np.ndarray]:
    """float32 NCHW batches of `files` as `model` (a loaded student) sees them at evaluation."""
    normalize = Normalize(model)
    for batch in eval_loader(model, files, batch_size=batch_size):
        yield normalize(batch["student"]).numpy()


def calibration_sample(files: Sequence[Path], n: int, seed: int = 0) -> list[Path]:
    """`n` of `files`, a seeded draw (the folder's order is often by class)."""
    files = sorted(files)
    return sorted(random.Random(seed).sample(files, min(n, len(files))))


def quantize(model: nn.Module, fp32_onnx: Path, int8_onnx: Path, calibration_files: Sequence[Path],
             method: str = "minmax", reduce_range: bool = False) -> Path:
    """Write `int8_onnx`: `fp32_onnx` statically quantized (QDQ, per-channel int8 weights, uint8
    activations), activation ranges calibrated on `calibration_files` by `method` (minmax | percentile |
    entropy: onnxruntime's calibrators). `reduce_range`: 7-bit weights, for CPUs without VNNI, whose
    uint8 x int8 kernels add products in pairs into int16 and saturate on full-range weights."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    if method not in METHODS:
        raise ValueError(f"--calibrate {method!r}: choose one of {', '.join(METHODS)}")

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = student_inputs(model, calibration_files, batch_size=32)

        def get_next(self) -> dict | None:
            x = next(self.batches, None)
            return None if x is None else {"input": x}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"  # shapes inferred, graph optimised: what the quantizer expects
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        # Biases stay float in the file (QuantizeBias off): onnxruntime quantizes them to int32 when it loads
        # the graph and fuses the same integer convolutions, where a stored int32 bias costs its scale and
        # zero point too, 12 bytes per output channel against 4 (BENCHMARKS.md, "INT8 students").
        quantize_static(str(prepared), str(int8_onnx), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        extra_options={"QuantizeBias": False},
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method])
    return slim(int8_onnx, short_names=True)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare(model: nn.Module, fp32_onnx: Path, int8_onnx: Path, files: Sequence[Path], labels: Sequence[int] | None,
            teacher_logits: np.ndarray | None = None, threads: int = 2) -> dict:
    """Top-1 of both files on labeled `files`, their agreement with each other and, given the teacher's
    logits for the same files in the same order, with the teacher; in percent."""
    fp32, int8 = _session(fp32_onnx, threads), _session(int8_onnx, threads)
    logits = {"fp32": [], "int8": []}
    for x in tqdm(student_inputs(model, files), desc="fp32 vs int8", unit="batch", total=-(-len(files) // 64)):
        logits["fp32"].append(fp32.run(None, {"input": x})[0])
        logits["int8"].append(int8.run(None, {"input": x})[0])
    logits = {k: np.concatenate(v) for k, v in logits.items()}
    preds = {k: v.argmax(1) for k, v in logits.items()}
    pct = lambda a, b: round(100 * float((a == b).mean()), 2)  # noqa: E731
    # how far INT8 moved the logits, relative to their spread: 0 is exact
    error = float(np.abs(logits["int8"] - logits["fp32"]).mean() / (logits["fp32"].std() + 1e-12))
    report = {"images": len(files), "agreement_fp32_int8": pct(preds["fp32"], preds["int8"]),
              "logit_error": round(error, 4)}
    if labels is not None:
        truth = np.asarray(labels)
        report.update(top1_fp32=pct(preds["fp32"], truth), top1_int8=pct(preds["int8"], truth))
    if teacher_logits is not None:
        teacher = teacher_logits.argmax(1)
        report.update(agreement_teacher_fp32=pct(preds["fp32"], teacher), agreement_teacher_int8=pct(preds["int8"], teacher))
    return report


def latencies_ms(paths: Sequence[Path], img_size: int, batch_size: int, threads: int = 2,
                 seconds: float = 3.0) -> list[float]:
    """Median wall time (ms) of one `batch_size` inference of each file in onnxruntime on `threads`
    threads, the files run in turn (interleaved, so that the machine's drift is shared by all)."""
    sessions = [_session(p, threads) for p in paths]
    x = np.random.default_rng(0).standard_normal((batch_size, 3, img_size, img_size), dtype=np.float32)
    for session in sessions:
        for _ in range(3):
            session.run(None, {"input": x})
    times, start = [[] for _ in sessions], time.perf_counter()
    while len(times[0]) < 5 or (time.perf_counter() - start < seconds and len(times[0]) < 500):
        for session, t in zip(sessions, times):
            t0 = time.perf_counter()
            session.run(None, {"input": x})
            t.append(time.perf_counter() - t0)
    return [round(1000 * statistics.median(t), 3) for t in times]


def check(report: dict, max_drop: float, student_file: Path | str = "RUN/student.safetensors") -> None:
    """Raise QuantizationLoss when INT8 lost more than `max_drop` top-1 points."""
    if "top1_int8" in report and report["top1_fp32"] - report["top1_int8"] > max_drop:
        raise QuantizationLoss(
            f"INT8 top-1 {report['top1_int8']:.2f} % is {report['top1_fp32'] - report['top1_int8']:.2f} points under "
            f"fp32's {report['top1_fp32']:.2f} % (allowed: --max-drop {max_drop:g}); try another calibration "
            f"(--calibrate percentile or entropy), more images (--calibration-images), 7-bit weights on a CPU "
            f"without VNNI (--reduce-range), or a quantization-aware "
            f"fine-tune: python train.py <the run's overrides> student=qat student.path={student_file}")


def run_dir(student_file: Path) -> Path:
    """The run that wrote `student_file` (a slimmable run writes its widths to RUN/widths/<alpha>/)."""
    parent = student_file.parent
    return parent.parent.parent if parent.parent.name == "widths" else parent


def run_folders(student_file: Path) -> tuple[str | None, str | None]:
    """The (unlabeled, validation) folders of the run that wrote `student_file`, from its Hydra config."""
    run = run_dir(student_file) / ".hydra"
    if not (run / "config.yaml").is_file():
        return None, None
    register_resolvers()
    cfg = OmegaConf.load(run / "config.yaml")
    cwd = Path(OmegaConf.load(run / "hydra.yaml").hydra.runtime.cwd) if (run / "hydra.yaml").is_file() else Path.cwd()
    found = [OmegaConf.select(cfg, key, default=None) for key in ("data.unlabeled_dir", "data.val_dir")]
    return tuple(os.path.normpath(cwd / f) if f else None for f in found)


def teacher_val_logits(student_file: Path, images: int, classes: int) -> np.ndarray | None:
    """The run's cached teacher logits for its validation images (N x C), when they are on disk in full."""
    summary = run_dir(student_file) / "summary.json"
    cache = json.loads(summary.read_text()).get("soft_target_cache", {}).get("val") if summary.is_file() else None
    if not cache or not Path(cache["path"]).is_file():
        return None
    logits = np.load(cache["path"], mmap_mode="r")
    logits = logits.reshape(-1, *logits.shape[-2:])[0]
    return np.asarray(logits, dtype=np.float32) if logits.shape == (images, classes) else None


def export_int8(model: nn.Module, student_file: Path, fp32_onnx: Path, out_dir: Path, calibration_dir: str | None = None,
                val_dir: str | None = None, calibration_images: int = 300, method: str = "minmax",
                threads: int = 2, reduce_range: bool = False) -> dict:
    """Write `student.int8.onnx` beside `fp32_onnx` and return its report: top-1 of both files on the
    validation folder (the run's, by default), their agreement (and with the teacher), latency, size."""
    run_unlabeled, run_val = run_folders(student_file)
    calibration_dir, val_dir = calibration_dir or run_unlabeled, val_dir or run_val
    if not calibration_dir or not Path(calibration_dir).is_dir():
        raise ValueError(f"no calibration folder (the run's data.unlabeled_dir: {run_unlabeled}); "
                         f"give --calibration-dir FOLDER")
    files = scan_images(calibration_dir).files
    if not files:
        raise ValueError(f"--calibration-dir {calibration_dir}: no images")
    calibration = calibration_sample(files, calibration_images)
    int8_onnx = quantize(model, fp32_onnx, out_dir / "student.int8.onnx", calibration, method, reduce_range)
    if val_dir and Path(val_dir).is_dir():
        val_files, labels, _ = labeled_files(val_dir, model.pretrained_cfg.get("label_names"), "--val-dir",
                                             model.num_classes)
        teacher = teacher_val_logits(student_file, len(val_files), model.num_classes)
        report = {**compare(model, fp32_onnx, int8_onnx, val_files, labels, teacher, threads), "folder": str(val_dir)}
    else:  # no labels: agreement on the calibration folder's other images
        rest = sorted(set(files) - set(calibration))[:3000] or files
        report = {**compare(model, fp32_onnx, int8_onnx, rest, None, None, threads), "folder": str(calibration_dir)}
    size = model.pretrained_cfg["input_size"][-1]
    report.update(calibration={"folder": str(calibration_dir), "images": len(calibration), "method": method,
                               "weight_bits": 7 if reduce_range else 8},
                  threads=threads)
    for batch in (1, 32):
        report[f"latency_ms_b{batch}_fp32"], report[f"latency_ms_b{batch}_int8"] = \
            latencies_ms([fp32_onnx, int8_onnx], size, batch, threads)
    report.update(bytes_fp32=fp32_onnx.stat().st_size, bytes_int8=int8_onnx.stat().st_size)
    report["int8_file"] = str(int8_onnx)
    return report
