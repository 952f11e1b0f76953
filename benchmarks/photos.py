"""Multi-megapixel photo folders against their pre-resized copy: images/s and peak RSS of train.py.

    python benchmarks/photos.py                    # 400 photos, about 6 min on 2 cores
    python benchmarks/photos.py --images 200 --decoded-cache on
    python benchmarks/photos.py --litdata          # then the photos' pixels from litdata chunks vs the local cache

Builds, outside the repo, a photo folder from Imagenette train images (../shared/data/imagenette): each one
upscaled to a random width of 1,600-2,600 px (4:3 or 3:2, either way up) and saved as a JPEG (quality 90),
the kind of folder a phone gives; and its pre-resized copy (short side 224 px). Then runs the same online
distillation on both, interleaved: a random-weight timm resnet18 teacher at 160 px, MobileNet v1 alpha 0.25
at 128 px, batch 64, default loader (one worker per two cores); without the decoded-image cache (JPEGs
decoded every epoch, in the DCT domain at the working size) and with it (each image decoded once, kept at
the short side that covers every crop). Prints images/s (the Throughput callback: after 5 warm-up steps),
the training process's peak RSS and the command's wall time for each, and their ratios. With --litdata, the
photo folder again with its working-resolution pixels in the local decoded cache and as litdata chunks
(`data.streaming_dir`), each run twice: the first run writes them, the second only reads. Writes
benchmarks/results/photos.json (photos_litdata.json with --decoded-cache none).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_folders(source: Path, out: Path, images: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    files = sorted(source.rglob("*.JPEG"))
    rng.shuffle(files)
    photos, resized = out / "photos", out / "resized"
    for i, f in enumerate(files[:images]):
        cls = f.parent.name
        (photos / cls).mkdir(parents=True, exist_ok=True)
        (resized / cls).mkdir(parents=True, exist_ok=True)
        width = rng.randint(1600, 2600)
        height = round(width * rng.choice([3 / 4, 2 / 3]))
        if rng.random() < 0.3:  # portrait
            width, height = height, width
        img = Image.open(f).convert("RGB").resize((width, height), Image.BICUBIC)
        img.save(photos / cls / f"{i:05d}.jpg", quality=90)
        short = min(width, height)
        img.resize((round(width * 224 / short), round(height * 224 / short)), Image.BICUBIC).save(
            resized / cls / f"{i:05d}.jpg", quality=90)
    return photos, resized


def run(folder: Path, teacher: Path, work: Path, name: str, epochs: int, pixels: str) -> dict:
    """One train.py run; `pixels`: the override that says where decoded pixels are kept (data.decoded_cache=...)."""
    out = work / "runs" / name
    cmd = [sys.executable, "train.py", f"data.unlabeled_dir={folder}", "data.val_dir=null", pixels,
           "teacher.name=resnet18", f"teacher.checkpoint_path={teacher}", "teacher.img_size=160",
           "student.alpha=0.25", "student.img_size=128", f"trainer.max_epochs={epochs}",
           "callbacks.run_report.latency=false", "logger=csv", f"paths.cache_dir={work / 'cache'}",
           f"hydra.run.dir={out}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return {**json.loads((out / "summary.json").read_text())["throughput"],
            "command_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "imagenette" / "train")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--decoded-cache", choices=["off", "on", "both", "none"], default="both",
                        help="off: decode every epoch; on: the decoded-image cache (the default setting); none: skip")
    parser.add_argument("--litdata", action="store_true", help="also: the local decoded cache vs litdata chunks")
    args = parser.parse_args()
    from teachers import for_classes, save_teacher

    work = Path(tempfile.mkdtemp(prefix="photos-"))
    photos, resized = make_folders(args.source, work, args.images)
    classes = sorted(p.name for p in photos.iterdir())
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=len(classes))  # speed only: random weights
    teacher = save_teacher(for_classes(model, classes), work / "teacher", "resnet18")
    modes = {"off": [False], "on": [True], "both": [False, True], "none": []}[args.decoded_cache]
    rows, lines = {}, []
    for decoded in modes:
        for r in range(args.repeats):  # interleaved: this machine's speed drifts within minutes
            for name, folder in (("photos", photos), ("resized", resized)):
                key = f"{name}, decoded cache {'on' if decoded else 'off'}"
                pixels = f"data.decoded_cache={work / 'decoded'}" if decoded else "data.decoded_cache=null"
                rows.setdefault(key, []).append(run(folder, teacher, work, f"{name}{r}{decoded}", args.epochs, pixels))
                print(f"{key} (repeat {r}): {rows[key][-1]}", flush=True)
        on = "on" if decoded else "off"
        med = {k: statistics.median(x["images_per_s"] for x in rows[f"{k}, decoded cache {on}"]) for k in ("photos", "resized")}
        rss = {k: max(x["peak_rss_mb"] for x in rows[f"{k}, decoded cache {on}"]) for k in ("photos", "resized")}
        lines.append(f"decoded cache {on}: photos {med['photos']:.1f} images/s vs pre-resized {med['resized']:.1f}: "
                     f"{med['photos'] / med['resized']:.2f}x; peak RSS {rss['photos']:.0f} vs {rss['resized']:.0f} MB "
                     f"({rss['photos'] / rss['resized']:.2f}x)")
    if args.litdata:
        for name, key in (("decoded-fresh", "data.decoded_cache"), ("litdata", "data.streaming_dir")):
            got = [run(photos, teacher, work, f"{name}{n}", args.epochs, f"{key}={work / name}") for n in (1, 2)]
            rows[name] = got
            lines.append(f"photos, pixels from {name}: {got[0]['images_per_s']:.1f} / {got[1]['images_per_s']:.1f} "
                         f"images/s, command {got[0]['command_s']:.0f} / {got[1]['command_s']:.0f} s "
                         f"(first run, writing them / second run), peak RSS {max(g['peak_rss_mb'] for g in got):.0f} MB")
    print("\n".join(lines))
    out = "photos.json" if modes else "photos_litdata.json"
    (ROOT / "benchmarks" / "results" / out).write_text(json.dumps(
        {"summary": lines, "images": args.images, "epochs": args.epochs, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
