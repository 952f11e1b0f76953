"""Kill -9 at random moments, resume, and compare with the uninterrupted run.

    python benchmarks/kill_resume.py                 # 10 trials, about 4 min on 2 cores
    python benchmarks/kill_resume.py --trials 3 --seed 1

On a generated folder (colour classes, like the tests'; no shared data) with a random-weight timm
`test_resnet` teacher, a MobileNet alpha 0.25 student at 16 px trains for a few hundred steps with the
mid-epoch checkpoint every `--every-s` seconds (`callbacks.interval_checkpoint`; 10 minutes by default in
real runs). Each trial runs the same command, kills it with SIGKILL at a random step (any moment of an
epoch: mid-epoch, at its end, during validation), reruns it with `resume=auto` in the same directory, and
checks that:
- the continued run finishes, with every final metric equal to the uninterrupted run's within 1e-4;
- the work redone (steps between the checkpoint it continued from and the kill) took at most the
  checkpoint interval plus one step.
Prints one line per trial and a summary line; writes benchmarks/results/kill_resume.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import timm
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COLOURS = {"ant": (200, 30, 30), "bee": (30, 200, 30), "cat": (30, 30, 200)}


class StepLog(pl.Callback):
    """Appends `global_step wall_time` after every training step (the trial reads it to pick its moment)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with self.path.open("a") as f:
            f.write(f"{trainer.global_step} {time.time():.3f}\n")


def make_data(root: Path, per_class: int) -> None:
    rng = random.Random(0)
    for split, n in (("train", per_class), ("val", per_class // 4)):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                c = tuple(min(255, max(0, v + rng.randint(-60, 60))) for v in colour)
                img = Image.new("RGB", (24, 24), c)
                for _ in range(8):
                    img.putpixel((rng.randrange(24), rng.randrange(24)), (255, 255, 255))
                img.save(root / split / name / f"{i:04d}.png")


def make_teacher(path: Path) -> Path:
    from teachers import for_classes, save_teacher

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=len(COLOURS),
                              pretrained_cfg_overlay=dict(input_size=(3, 16, 16)))
    return save_teacher(for_classes(model, list(COLOURS)), path, "test_resnet")


def steps_logged(path: Path) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    return [(int(a), float(b)) for a, b in (line.split() for line in path.read_text().splitlines() if line.strip())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every-s", type=float, default=2.0, help="mid-epoch checkpoint interval, seconds")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=120)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill_resume-"))
    make_data(work / "data", args.per_class)
    teacher = make_teacher(work / "teacher")
    common = [f"paths.cache_dir={work / 'cache'}", f"data.unlabeled_dir={work / 'data' / 'train'}",
              f"data.val_dir={work / 'data' / 'val'}", "teacher.name=test_resnet", f"teacher.checkpoint_path={teacher}",
              "student.alpha=0.25", "student.img_size=16", "data.batch_size=16", "data.num_workers=0",
              f"trainer.max_epochs={args.epochs}", "callbacks.run_report.latency=false", "logger=csv",
              f"callbacks.interval_checkpoint.train_time_interval.minutes={args.every_s / 60}",
              "+callbacks.steps._target_=benchmarks.kill_resume.StepLog"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}

    def command(run: Path) -> list[str]:
        return [sys.executable, "train.py", *common, f"+callbacks.steps.path={run / 'steps.txt'}",
                f"hydra.run.dir={run}"]

    ref = work / "reference"
    ref.mkdir()
    subprocess.run(command(ref), cwd=ROOT, env=env, check=True, capture_output=True)
    want = json.loads((ref / "summary.json").read_text())["final"]
    log = steps_logged(ref / "steps.txt")
    total, step_s = want["step"], (log[-1][1] - log[0][1]) / max(1, len(log) - 1)
    print(f"reference: {total} steps, {step_s * 1e3:.0f} ms a step, checkpoint every {args.every_s:g} s")

    rows = []
    for trial in range(args.trials):
        run = work / f"trial{trial}"
        run.mkdir()
        kill_at = rng.randrange(2, total)
        proc = subprocess.Popen(command(run), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not any(s >= kill_at for s, _ in steps_logged(run / "steps.txt")):
            time.sleep(0.01)
        time.sleep(rng.uniform(0, step_s))  # anywhere within the next step, not only at its boundary
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = steps_logged(run / "steps.txt")
        last = run / "checkpoints" / "last.ckpt"
        resumed_from = torch.load(last, weights_only=False, map_location="cpu")["global_step"] if last.exists() else 0
        redone = killed[-1][0] - resumed_from if killed else 0
        start = next((t for s, t in killed if s == resumed_from), killed[0][1] - step_s if killed else 0.0)
        redone_s = killed[-1][1] - start if killed else 0.0
        again = subprocess.run([*command(run), "resume=auto"], cwd=ROOT, env=env, capture_output=True, text=True)
        got = json.loads((run / "summary.json").read_text())["final"] if again.returncode == 0 else {}
        diff = max((abs(got.get(k, float("inf")) - v) for k, v in want.items() if isinstance(v, float)), default=0.0)
        ok = again.returncode == 0 and got.get("step") == total and diff <= 1e-4 and \
            redone_s <= args.every_s + 2 * step_s
        rows.append({"trial": trial, "killed_at_step": killed[-1][0] if killed else 0, "resumed_from": resumed_from,
                     "redone_steps": redone, "redone_s": round(redone_s, 3), "max_metric_diff": diff, "ok": ok})
        print(f"trial {trial}: killed after step {rows[-1]['killed_at_step']}, continued from step {resumed_from}: "
              f"{redone} steps ({redone_s:.2f} s) redone, final metrics max diff {diff:.1e}: {'ok' if ok else 'FAILED'}")

    passed = sum(r["ok"] for r in rows)
    worst = max(rows, key=lambda r: r["redone_s"])
    line = (f"{passed}/{len(rows)} trials killed -9 at random steps resumed to the uninterrupted run's final "
            f"metrics (max diff {max(r['max_metric_diff'] for r in rows):.1e} <= 1e-4); at most "
            f"{worst['redone_s']:.2f} s ({worst['redone_steps']} steps) redone with a checkpoint every {args.every_s:g} s")
    print(line)
    out = ROOT / "benchmarks" / "results" / "kill_resume.json"
    out.write_text(json.dumps({"summary": line, "total_steps": total, "step_s": step_s, "every_s": args.every_s,
                               "trials": rows}, indent=2))
    sys.exit(0 if passed == len(rows) else 1)


if __name__ == "__main__":
    main()
