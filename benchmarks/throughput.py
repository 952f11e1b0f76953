"""Student training throughput: a bare PyTorch loop (the ceiling) vs train.py cached and online, and the
torchdistill peer; plus a 4-student alpha sweep with and without the soft-target cache.

    python benchmarks/throughput.py                      # all of it (about 30-35 minutes on 2 cores)
    python benchmarks/throughput.py --skip-peer --skip-sweep

Prints a table and ratios and writes benchmarks/results/throughput.json. Timings on a shared 2-core
machine vary by 10-30 % between runs: compare ratios taken in one run, not absolute numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def bare_loop(alpha: float, size: int, batch: int, steps: int, warmup: int = 5, classes: int = 10) -> float:
    """Images/s of the student alone on in-memory tensors: forward, KD loss, backward, AdamW step;
    channels_last, fused AdamW, train.py's process settings (denormals flushed, freed memory kept), bf16
    autocast where train.py's `student_bf16: auto` picks it (the fastest settings measured here for
    MobileNet v1 students)."""
    import students
    from distill.losses import soft_target_loss
    from distill.module import bf16_fast, student_bf16_pays
    from distill.runtime import fast_cpu_defaults

    fast_cpu_defaults()
    torch.manual_seed(0)
    model = students.create_student(classes, alpha=alpha, img_size=size).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    bf16 = bf16_fast("cpu") and student_bf16_pays(model)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    t = torch.randn(batch, classes)

    def loss() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        return soft_target_loss(logits, t, 4.0)

    return images_per_s(loss, opt, batch, steps, warmup)


def images_per_s(loss: Callable[[], torch.Tensor], opt: torch.optim.Optimizer, batch: int, steps: int,
                 warmup: int) -> float:
    """Images/s of training steps (loss(), backward, `opt` step) over `steps`, after `warmup` untimed ones."""
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        value = loss()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch / statistics.mean(times)


def train_py(args: list[str], run_dir: Path) -> dict:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"train.py failed: {proc.stderr[-3000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def ours(mode: str, data: Path, alpha: float, size: int, batch: int, steps: int, workers: int | None, work: Path,
         extra: list[str] = (), warm: bool = False) -> dict:
    """train.py on a real folder (no validation), timed by its Throughput callback, with the default data
    path (equal-size images decoded once into paths.cache_dir/decoded; cached mode renders the student's
    views there too); workers None: our default (rendered views: the main process; otherwise one worker
    per two cores)."""
    common = [f"data.unlabeled_dir={data}", "data.val_dir=null", f"data.batch_size={batch}",
              f"data.num_workers={'null' if workers is None else workers}", "teacher.checkpoint_path=null", "teacher.name=resnet18",
              f"teacher.img_size={size}", "teacher.num_classes=10",
              f"student.alpha={alpha}", f"student.img_size={size}", "trainer.max_epochs=1",
              f"trainer.limit_train_batches={steps + 5}", "callbacks.run_report.latency=false",
              "callbacks.model_checkpoint=null", "callbacks.last_checkpoint=null", "logger=csv", f"paths.cache_dir={work / 'cache'}",
              f"soft_targets={mode}", *(["soft_targets.views=1"] if mode == "cached" else []), *extra]
    run = Path(tempfile.mkdtemp(prefix=f"{mode}-a{alpha}-{size}-", dir=work))  # a fresh run dir per call
    if mode == "cached" or warm:  # warm the caches first: measure training on warm caches
        first = train_py([*common, "trainer.limit_train_batches=1"], run / "warm")
        assert mode != "cached" or first["soft_target_cache"]["train"]["views"] == 1
    summary = train_py(common, run / "timed")
    return summary["throughput"]


def peer(data: Path, size: int, batch: int, steps: int, workers: int) -> dict | None:
    script = SHARED / "peers" / "torchdistill" / "run.sh"
    if not script.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        proc = subprocess.run(["bash", str(script), str(data), str(steps), str(size), str(batch), str(workers), "2",
                               "--channels_last"], env={**os.environ, "TD_JSON": str(out)}, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            print(f"peer failed: {proc.stderr[-1500:]}")
            return None
        return json.loads(out.read_text())


def sweep(data: Path, mode: str, size: int, epochs: int, work: Path) -> dict:
    """A 4-student alpha sweep; wall time and teacher forward passes (images through the teacher)."""
    sweep_dir = work / f"sweep-{mode}"
    args = ["-m", "experiment=alpha_sweep", f"data.unlabeled_dir={data}", "data.val_dir=null",
            "teacher.checkpoint_path=null", "teacher.name=resnet18", f"teacher.img_size={size}",
            "teacher.num_classes=10", f"student.img_size={size}", f"trainer.max_epochs={epochs}",
            "callbacks.run_report.latency=false", "callbacks.model_checkpoint=null", "callbacks.last_checkpoint=null", "logger=csv",
            f"paths.cache_dir={work / 'cache-sweep'}", f"soft_targets={mode}", *(["soft_targets.views=2"] if mode == "cached" else []),
            f"hydra.sweep.dir={sweep_dir}", "data.batch_size=64"]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    wall = time.perf_counter() - start
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    if mode == "cached":  # the first student builds the cache, the others read it
        passes = sum(s["soft_target_cache"]["train"]["teacher_images"] for s in summaries)
    else:  # the teacher sees every training image of every epoch of every student
        passes = sum(epochs * s["train_images"] for s in summaries)
    return {"wall_s": round(wall, 1), "runs": len(summaries), "teacher_images": passes,
            "images": summaries[0]["train_images"], "epochs": epochs}


def memory(small: Path, extra: Path, work: Path) -> dict:
    """Peak RSS of the training process (cached mode, one whole epoch, so every cached row is read) on
    1,000 vs 20,000 images: the cache and the decoded images live on disk, so memory should not grow
    with the folder."""
    files = sorted(small.rglob("*.jpg")) + sorted(extra.rglob("*.jpg"))
    out = {}
    for n in (1000, min(20000, len(files))):
        folder = work / f"mem-{n}"
        folder.mkdir(exist_ok=True)
        for i, f in enumerate(files[:n]):
            (folder / f"{i:05d}.jpg").symlink_to(f)
        stats = ours("cached", folder, 1.0, 32, 64, n, None, work)  # (n steps: more than an epoch has)
        out[n] = stats["peak_rss_mb"]
    out["ratio_large_small"] = round(out[max(out)] / out[1000], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=Path, default=SHARED / "data" / "cifar10" / "train", help="folder for 32 px")
    parser.add_argument("--large", type=Path, default=SHARED / "data" / "imagenette" / "train",
                        help="folder for 128 px")
    parser.add_argument("--sweep-data", type=Path, default=SHARED / "data" / "cifar10" / "test",
                        help="folder for the 4-student sweep timing (3,000 images: labels unused)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150, help="timed steps at 32 px (after 5 untimed)")
    parser.add_argument("--steps-large", type=int, default=50, help="timed steps at 128 px")
    parser.add_argument("--workers", type=int, default=1, help="loader workers of the online runs and the peer")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of bare and cached")
    parser.add_argument("--peer-repeats", type=int, default=3, help="interleaved repeats of the peer and ours")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128], choices=[32, 128])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--skip-rows", action="store_true", help="skip the bare / cached / online table")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="throughput-"))
    try:
        results = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # decoded images, rendered views, caches: gigabytes
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def measure(args: argparse.Namespace, work: Path) -> dict:
    results = {"threads": 2, "batch": args.batch, "steps": {32: args.steps, 128: args.steps_large},
               "workers": args.workers, "repeats": args.repeats, "peer_repeats": args.peer_repeats, "rows": []}
    folders = {32: args.small, 128: args.large}
    for size in [] if args.skip_rows else args.sizes:
        data, steps = folders[size], args.steps if size == 32 else args.steps_large
        for alpha in args.alphas:
            # Interleaved repeats (bare, cached, bare, cached, ...): this machine's speed drifts by 10-30 %
            # within minutes, so each ratio compares measurements taken side by side.
            raw = {"bare": [], "cached": [], "cached_wait": []}
            for _ in range(args.repeats):
                raw["bare"].append(round(bare_loop(alpha, size, args.batch, steps), 1))
                stats = ours("cached", data, alpha, size, args.batch, steps, None, work)
                raw["cached"].append(stats["images_per_s"])
                raw["cached_wait"].append(stats["wait_fraction"])
            online = ours("online", data, alpha, size, args.batch, steps, args.workers, work, warm=True)
            row = {"size": size, "alpha": alpha, "bare": round(statistics.median(raw["bare"]), 1),
                   "cached": round(statistics.median(raw["cached"]), 1),
                   "cached_wait": round(statistics.median(raw["cached_wait"]), 4),
                   "online": online["images_per_s"], "online_wait": online["wait_fraction"], "raw": raw}
            row["cached/bare"] = round(row["cached"] / row["bare"], 3)
            print(json.dumps(row), flush=True)
            results["rows"].append(row)
    if not args.skip_peer:  # same job as the peer: resnet18 teacher -> mobilenetv2_100 student, 1000 classes
        for size in args.sizes:
            data, steps = folders[size], args.steps if size == 32 else args.steps_large
            job = ["student.name=mobilenetv2_100", "teacher.num_classes=1000"]
            # Interleaved, twice (the machine drifts): the peer; ours as a user runs it (equal-size images
            # decoded once; the teacher still runs on every batch's fresh random crops); ours without the
            # decoded-image cache, decoding every epoch as the peer does. Medians: one slow run of either
            # side (the peer's two runs have differed by 9-20 %) should not decide the ratio.
            runs = {"peer": [], "ours_online": [], "ours_online_decoding": []}
            for _ in range(args.peer_repeats):
                theirs = peer(data, size, args.batch, steps, args.workers)
                if theirs:
                    runs["peer"].append(theirs["images_per_s"])
                runs["ours_online"].append(ours("online", data, 1.0, size, args.batch, steps, args.workers, work,
                                                job, warm=True)["images_per_s"])
                runs["ours_online_decoding"].append(ours("online", data, 1.0, size, args.batch, steps, args.workers,
                                                         work, [*job, "data.decoded_cache=null"])["images_per_s"])
            row = {"size": size, **{k: round(statistics.median(v), 2) if v else None for k, v in runs.items()},
                   "runs": runs}
            for key in ("ours_online", "ours_online_decoding"):
                row[f"{key}/peer"] = round(row[key] / row["peer"], 3) if row["peer"] else None
            print(json.dumps(row), flush=True)
            results.setdefault("peer", []).append(row)
    if not args.skip_memory:
        results["memory_mb"] = memory(args.small, args.sweep_data, work)
        print(json.dumps(results["memory_mb"]), flush=True)
    if not args.skip_sweep:
        results["sweep"] = {mode: sweep(args.sweep_data, mode, 32, 2, work) for mode in ("online", "cached")}
        print(json.dumps(results["sweep"]), flush=True)
    return results


def table(results: dict) -> str:
    lines = ["| px | α | bare loop img/s | cached img/s | online img/s | cached/bare | wait (cached) | wait (online) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        lines.append(f"| {r['size']} | {r['alpha']} | {r['bare']} | {r['cached']} | {r['online']} | "
                     f"{r['cached/bare']} | {r['cached_wait']:.1%} | {r['online_wait']:.1%} |")
    for r in results.get("peer", []):
        lines.append(f"\npeer at {r['size']} px: torchdistill {r['peer']} img/s (runs {r['runs']['peer']}); ours online "
                     f"{r['ours_online']} img/s (ratio {r['ours_online/peer']}); without the decoded-image cache "
                     f"{r['ours_online_decoding']} img/s (ratio {r['ours_online_decoding/peer']})")
    if "memory_mb" in results:
        m = results["memory_mb"]
        big = max(k for k in m if isinstance(k, int))
        lines.append(f"peak RSS (cached, 32 px): {m[1000]} MB on 1,000 images, {m[big]} MB on {big:,} "
                     f"(ratio {m['ratio_large_small']})")
    if "sweep" in results:
        for mode, s in results["sweep"].items():
            lines.append(f"sweep ({mode}): {s['wall_s']} s for {s['runs']} students x {s['epochs']} epochs x "
                         f"{s['images']} images; teacher forward images {s['teacher_images']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
