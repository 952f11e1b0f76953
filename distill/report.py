"""One report for a whole sweep: sweep.md (the paper's Table 6/12 layout), sweep.csv and sweep.png.

Built by a Hydra callback when a multirun ends (`SweepReport`), or again later with:

    python -m distill.report SWEEP_DIR
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
COLUMNS = ["run", "status", "student", "alpha", "img_size", "params_m", "macs_m", "latency_ms_b1", "top1",
           "agreement", "kl", "epoch", "d_top1_vs_alpha1", "d_top1_vs_teacher", "teacher_top1"]


def _pct(v: Any) -> float | None:
    return None if v is None else 100 * v


def collect(sweep_dir: str | Path) -> list[dict]:
    """One row per job directory of the sweep (those with a .hydra folder); failed jobs included."""
    rows = []
    for job in sorted((p for p in Path(sweep_dir).iterdir() if (p / ".hydra").is_dir()),
                      key=lambda p: (len(p.name), p.name)):
        overrides = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        row = {"run": job.name, "status": "failed", "student": config.student.name,
               "alpha": config.student.alpha, "img_size": config.student.img_size, "overrides": " ".join(overrides)}
        summary_file = job / "summary.json"
        if summary_file.exists():
            s = json.loads(summary_file.read_text())
            best = s.get("best") or s.get("final") or {}
            cost = s.get("cost") or {}
            cache = (s.get("soft_target_cache") or {}).get("train")
            epochs = (s.get("final") or {}).get("epoch", -1) + 1
            row.update(teacher_images=cache["teacher_images"] if cache else epochs * s.get("train_images", 0),
                       teacher_mode="cached" if cache else "online")
            row.update(status="ok", img_size=s.get("img_size", row["img_size"]), epoch=best.get("epoch"),
                       params_m=cost.get("params", 0) / 1e6, macs_m=cost.get("macs", 0) / 1e6,
                       latency_ms_b1=cost.get("latency_ms_b1"), top1=_pct(best.get("val/top1")),
                       agreement=_pct(best.get("val/agreement")), kl=best.get("val/kl"),
                       teacher_top1=_pct(best.get("val/teacher_top1")))
        rows.append(row)
    _add_deltas(rows)
    return rows


def _add_deltas(rows: list[dict]) -> None:
    """Top-1 differences to the widest (alpha = 1.0) student at the same resolution, and to the teacher."""
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        if r.get("top1") is None:
            continue
        base = [b for b in ok if b["alpha"] == 1.0 and b["img_size"] == r["img_size"] and b.get("top1") is not None]
        r["d_top1_vs_alpha1"] = r["top1"] - base[0]["top1"] if base else None
        r["d_top1_vs_teacher"] = r["top1"] - r["teacher_top1"] if r.get("teacher_top1") is not None else None


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def to_markdown(rows: list[dict], title: str) -> str:
    teacher = next((r["teacher_top1"] for r in rows if r.get("teacher_top1") is not None), None)
    lines = [f"# {title}", "",
             f"Teacher top-1: {_fmt(teacher)} %. Metrics are each run's best validation row (by its monitor).", "",
             "| Model | α | resolution | Million Params | Million Mult-Adds | ms (b1) | top-1 % | agreement % "
             "| Δ top-1 vs α=1.0 | Δ top-1 vs teacher | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['run']}: {r['alpha']:.2f} {r['student']}-{r['img_size']} | {r['alpha']:.2f} | {r['img_size']} "
            f"| {_fmt(r.get('params_m'), 3)} | {_fmt(r.get('macs_m'), 2)} | {_fmt(r.get('latency_ms_b1'), 2)} "
            f"| {_fmt(r.get('top1'))} | {_fmt(r.get('agreement'))} | {_fmt(r.get('d_top1_vs_alpha1'))} "
            f"| {_fmt(r.get('d_top1_vs_teacher'))} | {r['status']} |")
    ok = [r for r in rows if r["status"] == "ok"]
    cached = [r for r in ok if r.get("teacher_mode") == "cached"]
    passes = sum(r.get("teacher_images", 0) for r in ok)
    if cached and len(cached) == len(ok):
        note = (f"Teacher forward passes for the whole sweep: {passes:,} images (soft-target cache: computed "
                f"once, read by {sum(r['teacher_images'] == 0 for r in cached)} of {len(ok)} runs).")
    else:
        note = (f"Teacher forward passes: {passes:,} images (online teacher: every run ran it on every image of "
                f"every epoch; distill.teacher_mode=cached runs it once for the whole sweep).")
    lines += ["", note]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    ok = [r for r in rows if r["status"] == "ok" and r.get("macs_m")]
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=120)
    styles = (("top1", "student top-1", "o", "tab:blue"), ("agreement", "agreement with teacher", "s", "tab:orange"))
    for key, label, marker, color in styles:
        for n, size in enumerate(sorted({r["img_size"] for r in ok}, reverse=True)):
            pts = sorted((r["macs_m"], r[key], r) for r in ok if r.get(key) is not None and r["img_size"] == size)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, markersize=7,
                    linestyle=("-", "--", ":", "-.")[n % 4], linewidth=1,
                    label=f"{label}, {size} px")
            for x, y, r in pts:
                ax.annotate(f"α {r['alpha']:g}, {r['img_size']} px", (x, y), textcoords="offset points",
                            xytext=(0, 8), ha="center", fontsize=7, color=color)
    teacher = next((r["teacher_top1"] for r in ok if r.get("teacher_top1") is not None), None)
    if teacher is not None:
        ax.axhline(teacher, color="gray", linestyle="--", linewidth=1, label=f"teacher top-1 ({teacher:.1f} %)")
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("student mult-adds per image (millions, log scale)")
    ax.set_ylabel("% of the validation folder")
    ax.set_title(title)
    ax.margins(x=0.08, y=0.12)
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def build_report(sweep_dir: str | Path) -> list[dict]:
    """Write sweep.md, sweep.csv and sweep.png into `sweep_dir`; return the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    if not rows:
        raise FileNotFoundError(f"{sweep_dir} holds no Hydra job directories")
    title = f"Distilled students: accuracy vs cost (sweep {sweep_dir.name})"
    (sweep_dir / "sweep.md").write_text(to_markdown(rows, title))
    with (sweep_dir / "sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS + ["overrides"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, sweep_dir / "sweep.png", title)
    log.info("sweep report: %s (%d runs, %d failed)", sweep_dir / "sweep.md", len(rows),
             sum(r["status"] != "ok" for r in rows))
    return rows


class SweepReport(Callback):
    """Hydra callback: build the sweep report when a multirun ends (and log it to W&B when used)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = build_report(sweep_dir)
        if "wandb" in (config.get("logger") or {}):
            _log_to_wandb(config, sweep_dir, rows)


def _log_to_wandb(config: DictConfig, sweep_dir: Path, rows: list[dict]) -> None:
    import wandb

    from .loggers import wandb_mode

    run = wandb.init(project=config.logger.wandb.project, group=sweep_dir.name, job_type="sweep-report",
                     dir=str(sweep_dir), mode=wandb_mode(), name=f"{sweep_dir.name}-report")
    table = wandb.Table(columns=COLUMNS, data=[[r.get(c) for c in COLUMNS] for r in rows])
    run.log({"sweep/table": table, "sweep/plot": wandb.Image(str(sweep_dir / "sweep.png"))})
    run.finish()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(argv)
    build_report(args.sweep_dir)
    print((args.sweep_dir / "sweep.md").read_text())


if __name__ == "__main__":
    main()
