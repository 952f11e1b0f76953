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
COLUMNS = ["run", "status", "trained_on", "label_fraction", "student", "alpha", "img_size", "params_m", "macs_m",
           "latency_ms_b1", "top1", "agreement", "kl", "epoch", "epochs", "top1_best", "d_top1_vs_alpha1", "d_top1_vs_labels",
           "d_top1_vs_teacher", "teacher_top1", "int8_top1", "int8_latency_ms_b1", "int8_speedup_b1", "int8_mb"]


def _pct(v: Any) -> float | None:
    return None if v is None else 100 * v


def collect(*dirs: str | Path) -> list[dict]:
    """One row per run in `dirs` (each a sweep directory, whose job directories hold .hydra or summary.json,
    or one run's directory), one per width taken out of a slimmable student; failed jobs included. Sorted
    by case (label budget, distilled before label-only), then resolution and width, largest first.

    Metrics are each run's final validation row: the weights in its student.safetensors, chosen by no
    look at the validation folder (the best row is kept as top1_best)."""
    jobs = [job for d in map(Path, dirs) for job in ([d] if _is_run(d) else sorted(
        (p for p in d.iterdir() if _is_run(p)), key=lambda p: (len(p.name), p.name)))]
    rows = [row for job in jobs for row in _job_rows(job)]
    # Case by case, widest and largest first, whatever the job directories are called (numbers, or names
    # from hydra.sweep.subdir when several multiruns share one sweep directory).
    rows.sort(key=lambda r: (-r["label_fraction"], r["trained_on"] != "teacher", -(r["img_size"] or 0),
                             r["student"], -(r["alpha"] or 0)))
    _add_deltas(rows)
    return rows


def _is_run(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / "summary.json").is_file()


def _job_rows(job: Path) -> list[dict]:
    summary_file = job / "summary.json"
    s = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    if (job / ".hydra").is_dir():
        overrides = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        labels_only = OmegaConf.select(config, "distill.soft_weight", default=1.0) == 0
        with_labels = bool(OmegaConf.select(config, "distill.hard_weight", default=0.0)) and not labels_only
        label_fraction = OmegaConf.select(config, "data.label_fraction", default=1.0)
        student, alpha, img_size = config.student.name, config.student.get("alpha"), config.student.img_size
    else:  # a run whose output_dir was set apart from Hydra's: what its summary says
        overrides, labels_only, label_fraction = [], s["trained_on"] == "labels", s["label_fraction"]
        with_labels = False
        student, alpha, img_size = s["student"], s["alpha"], s["img_size"]
    row = {"run": job.name, "status": "failed", "student": student, "trained_on": "labels" if labels_only else "teacher",
           "with_labels": with_labels,
           "label_fraction": label_fraction, "alpha": alpha if student == "mobilenet_v1" else None,
           "img_size": img_size, "overrides": " ".join(overrides)}
    if not s:
        return [row]
    final = s.get("final") or {}
    cache = (s.get("soft_target_cache") or {}).get("train")
    epochs = final.get("epoch", -1) + 1
    row.update(teacher_images=cache["teacher_images"] if cache else 0 if labels_only else epochs * s.get("train_images", 0),
               teacher_mode="cached" if cache or labels_only else "online",
               status="ok", epoch=final.get("epoch"), **{k: s.get(k, row[k]) for k in ("student", "alpha", "img_size")},
               epochs=epochs if final else None, top1_best=_pct((s.get("best") or {}).get("val/top1")))
    if s.get("widths"):  # a slimmable student: one row per width taken out, each with its own cost and scores
        return [{**row, **_scores(w.get("final") or {}, w.get("cost") or {}), **_int8(job / "widths" / f"{w['alpha']:g}"),
                 "run": f"{job.name}/{w['alpha']:g}", "alpha": w["alpha"], "top1_best": None,
                 "teacher_images": row["teacher_images"] if i == 0 else 0} for i, w in enumerate(s["widths"])]
    return [{**row, **_scores(final, s.get("cost") or {}), **_int8(job)}]


def _int8(folder: Path) -> dict:
    """The INT8 columns, from the int8.json that `python -m students.export RUN --int8` wrote into `folder`."""
    if not (folder / "int8.json").exists():
        return {}
    q = json.loads((folder / "int8.json").read_text())
    return dict(int8_top1=q.get("top1_int8"), int8_latency_ms_b1=q["latency_ms_b1_int8"],
                int8_speedup_b1=q["latency_ms_b1_fp32"] / q["latency_ms_b1_int8"], int8_mb=q["bytes_int8"] / 1e6)


def _scores(final: dict, cost: dict) -> dict:
    return dict(params_m=cost.get("params", 0) / 1e6, macs_m=cost.get("macs", 0) / 1e6,
                latency_ms_b1=cost.get("latency_ms_b1"), top1=_pct(final.get("val/top1")),
                agreement=_pct(final.get("val/agreement")), kl=final.get("val/kl"),
                teacher_top1=_pct(final.get("val/teacher_top1")))


def _case(r: dict) -> tuple:
    return r["trained_on"], r["label_fraction"], r["img_size"]


def student_identity(model) -> dict:
    """The student's name, width and resolution as the built model says: timm's `pretrained_cfg`, and
    `alpha` where the model has one (the paper's MobileNet v1); None for timm models, whose width is part
    of their name. Reports read these, never the config, so every kind of student is labelled right."""
    cfg = model.pretrained_cfg
    return {"student": cfg.get("architecture", type(model).__name__), "alpha": getattr(model, "alpha", None),
            "img_size": cfg["input_size"][-1]}


def _width(r: dict) -> str:
    return "–" if r["alpha"] is None else f"{r['alpha']:.2f}"


def _add_deltas(rows: list[dict]) -> None:
    """Top-1 differences to the widest (alpha = 1.0) student of the same kind, case and resolution, to the
    label-only twin (same student, alpha, resolution and labels), and to the teacher."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("top1") is not None]
    for r in ok:
        base = [b for b in ok if b["alpha"] == 1.0 and b["student"] == r["student"] and _case(b) == _case(r)]
        twin = [b for b in ok if b["trained_on"] == "labels" and r["trained_on"] == "teacher" and _twin(b) == _twin(r)]
        r["d_top1_vs_alpha1"] = r["top1"] - base[0]["top1"] if base else None
        r["d_top1_vs_labels"] = r["top1"] - twin[0]["top1"] if twin else None
        r["d_top1_vs_teacher"] = r["top1"] - r["teacher_top1"] if r.get("teacher_top1") is not None else None


def _twin(r: dict) -> tuple:
    return r["student"], r["alpha"], r["img_size"], r["label_fraction"]


def _trained_on(r: dict) -> str:
    share = f"{100 * r['label_fraction']:.0f} %"
    if r.get("with_labels"):  # (never a label-only row)
        return f"distilled + labels ({share} of labels)"
    return f"distilled (teacher on {share} of labels)" if r["trained_on"] == "teacher" else \
        f"labels only ({share} of labels)"


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def to_markdown(rows: list[dict], title: str) -> str:
    int8 = any(r.get("int8_mb") is not None for r in rows)
    lines = [f"# {title}", "",
             "Each run's final validation row (the weights in its student.safetensors). \"teacher\": distilled "
             "from the teacher's soft targets, no labels; \"labels only\": the same student trained on hard "
             "labels. Percentages: the share of the labeled split's labels that the teacher (or the "
             "label-only student) was trained on." + (" INT8: `student.int8.onnx` (python -m students.export "
                                                      "--int8), its top-1 on the same folder, its batch-1 "
                                                      "onnxruntime latency and speed-up over the fp32 ONNX file, "
                                                      "its size." if int8 else ""), "",
             "| Model | α | resolution | Million Params | Million Mult-Adds | ms (b1) | trained on | epochs | top-1 % "
             "| agreement % | Δ vs α=1.0 | Δ vs labels only | teacher top-1 % | "
             + ("INT8 top-1 % | INT8 ms (b1) | INT8 speed-up | INT8 MB | " if int8 else "") + "status |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|" + ("---:|" * 4 if int8 else "") + "---|"]
    for r in rows:
        lines.append(
            f"| {r['run']}: {r['student']}-{r['img_size']} | {_width(r)} | {r['img_size']} "
            f"| {_fmt(r.get('params_m'), 3)} | {_fmt(r.get('macs_m'), 2)} | {_fmt(r.get('latency_ms_b1'), 2)} "
            f"| {_trained_on(r)} | {_fmt(r.get('epochs'))} | {_fmt(r.get('top1'))} | {_fmt(r.get('agreement'))} "
            f"| {_fmt(r.get('d_top1_vs_alpha1'))} | {_fmt(r.get('d_top1_vs_labels'))} "
            f"| {_fmt(r.get('teacher_top1'))} | "
            + (f"{_fmt(r.get('int8_top1'))} | {_fmt(r.get('int8_latency_ms_b1'), 2)} | "
               f"{_fmt(r.get('int8_speedup_b1'), 2)} | {_fmt(r.get('int8_mb'), 2)} | " if int8 else "")
            + f"{r['status']} |")
    lines += comparison(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    distilled = [r for r in ok if r["trained_on"] == "teacher"]
    cached = [r for r in distilled if r.get("teacher_mode") == "cached"]
    passes = sum(r.get("teacher_images", 0) for r in ok)
    if cached and len(cached) == len(distilled):
        note = (f"Teacher forward passes over training images for the whole sweep: {passes:,} (soft-target "
                f"cache: computed once per teacher, read by {sum(r['teacher_images'] == 0 for r in cached)} of "
                f"{len(distilled)} distilled runs).")
    else:
        note = (f"Teacher forward passes over training images: {passes:,} (online teacher: every run ran it on "
                f"every image of every epoch; soft_targets=cached runs it once for the whole sweep).")
    lines += ["", note]
    return "\n".join(lines) + "\n"


def comparison(rows: list[dict]) -> list[str]:
    """Distilled students next to their label-only twins, one line per (resolution, alpha) and a column
    group per label budget; empty unless the sweep has both kinds."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("top1") is not None]
    if not {"teacher", "labels"} <= {r["trained_on"] for r in ok}:
        return []
    fractions = sorted({r["label_fraction"] for r in ok}, reverse=True)
    grid = sorted({(r["img_size"], r["student"], r["alpha"]) for r in ok}, key=lambda k: (-k[0], k[1], -(k[2] or 0)))

    def find(trained_on: str, fraction: float, key: tuple) -> dict | None:
        return next((r for r in ok if (r["trained_on"], r["label_fraction"]) == (trained_on, fraction) and
                     (r["img_size"], r["student"], r["alpha"]) == key), None)

    head = "| student | α | resolution | Million Params | Million Mult-Adds | ms (b1) |"
    rule = "|---|---:|---:|---:|---:|---:|"
    for f in fractions:
        teacher = next((r["teacher_top1"] for r in ok if r["label_fraction"] == f and r.get("teacher_top1")), None)
        share = f"{100 * f:.0f} %"
        head += (f" distilled top-1 / agreement (teacher: {share} of labels, {_fmt(teacher)} top-1) "
                 f"| labels only ({share}) top-1 | Δ |")
        rule += "---:|---:|---:|"
    lines = ["", "## Distilled (no labels) vs trained on labels alone", "", head, rule]
    for key in grid:
        any_row = next(r for r in ok if (r["img_size"], r["student"], r["alpha"]) == key)
        line = (f"| {any_row['student']} | {_width(any_row)} | {key[0]} | {_fmt(any_row.get('params_m'), 3)} | {_fmt(any_row.get('macs_m'), 2)} "
                f"| {_fmt(any_row.get('latency_ms_b1'), 2)} |")
        for f in fractions:
            d, lab = find("teacher", f, key), find("labels", f, key)
            line += (f" {_fmt(d['top1']) if d else '–'} / {_fmt(d['agreement']) if d else '–'} "
                     f"| {_fmt(lab['top1']) if lab else '–'} "
                     f"| {_fmt(d['top1'] - lab['top1']) if d and lab else '–'} |")
        lines.append(line)
    return lines


def _line(r: dict) -> tuple:
    return (*_case(r), r["student"])


def plot_series(ok: list[dict]) -> list[tuple[str, str, tuple, list]]:
    """The plot's lines: (metric key, what it is, case, points (mult-adds, value, row) by cost). One line per
    case and student kind, so a slimmable run's widths and separately trained students are not joined."""
    cases = sorted({_line(r) for r in ok}, key=lambda c: (c[0] != "teacher", -c[1], -c[2], c[3]))
    wanted = [("top1", "top-1", case) for case in cases]
    if len(cases) == 1:  # one case: also how closely the students follow the teacher
        wanted.append(("agreement", "agreement with teacher", cases[0]))
    series = []
    for key, what, case in wanted:
        pts = sorted(((r["macs_m"], r[key], r) for r in ok if r.get(key) is not None and _line(r) == case),
                     key=lambda p: p[:2])  # (ties would compare the rows themselves)
        if pts:
            series.append((key, what, case, pts))
    return series


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    ok = [r for r in rows if r["status"] == "ok" and r.get("macs_m")]
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=120)
    series = plot_series(ok)
    cases = sorted({case for _, _, case, _ in series})
    fractions = sorted({c[1] for c in cases}, reverse=True)
    sizes, kinds = sorted({c[2] for c in cases}), sorted({c[3] for c in cases})
    values = [p[1] for *_, pts in series for p in pts]
    span = (max(values) - min(values) if values else 0) or 1.0
    labelled = []  # (x, y, text) of the α labels drawn so far
    for key, what, case, pts in series:
        distilled = case[0] == "teacher"  # a distilled student and its label-only twin share a colour
        color = "tab:purple" if key == "agreement" else plt.get_cmap("tab10")(
            (fractions.index(case[1]) + 2 * sizes.index(case[2]) + 4 * kinds.index(case[3])) % 10)
        kind = f", {case[3]}" if len(kinds) > 1 else ""  # e.g. a slimmable run beside separate students
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if distilled else "^", color=color,
                markersize=7, linestyle="-" if distilled else "--", linewidth=1,
                label=f"{what}: {_trained_on(pts[0][2])}, {case[2]} px{kind}")
        for x, y, r in pts:
            text = r["student"] if r["alpha"] is None else f"α {r['alpha']:g}"
            if any(t == text and x0 == x and abs(y0 - y) < 0.02 * span for x0, y0, t in labelled):
                continue  # two series meet at this student: one label, not two printed over each other
            labelled.append((x, y, text))
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7,
                        color=color)
    # One line per teacher as printed: runs of one teacher can score it a rounding error apart.
    teachers = sorted({(r["label_fraction"], round(r["teacher_top1"], 1)) for r in ok
                       if r.get("teacher_top1") is not None}, reverse=True)
    for (fraction, top1), style in zip(teachers, ("--", ":", "-.", "-")):
        ax.axhline(top1, color="gray", linestyle=style, linewidth=1,
                   label=f"teacher top-1 ({top1:.1f} %, {100 * fraction:.0f} % of labels)")
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
    # Below the axes, two columns: long labels (case, budget, resolution) fit the figure's width.
    legend_lines = -(-len(ax.get_legend_handles_labels()[0]) // 2)
    fig.set_size_inches(8, 5.2 + 0.22 * legend_lines)
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.045 * legend_lines, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def build_report(sweep_dir: str | Path, *others: str | Path) -> list[dict]:
    """Write sweep.md, sweep.csv and sweep.png into `sweep_dir`, with the runs of `others` beside its own
    (e.g. a slimmable run beside separately distilled students); return the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir, *others)
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
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory, or one run's; the report is written here")
    parser.add_argument("others", type=Path, nargs="*", help="more sweep or run directories to place beside it")
    args = parser.parse_args(argv)
    build_report(args.sweep_dir, *args.others)
    print((args.sweep_dir / "sweep.md").read_text())


if __name__ == "__main__":
    main()


def result_table(summary: dict) -> str:
    final, cost = summary["final"] or {}, summary["cost"]

    def pct_of(metrics: dict, key: str) -> str:
        return f"{100 * metrics[key]:.1f}%" if metrics.get(key) is not None else "n/a"

    def pct(key: str) -> str:
        return pct_of(final, key)

    rows = [("teacher", summary["teacher"]), ("teacher top-1", pct("val/teacher_top1")),
            (f"student {summary['student']}" + (f" alpha={summary['alpha']}" if summary["alpha"] is not None else "")
             + f" {summary['img_size']}px", ""),
            ("student top-1", pct("val/top1")), ("agreement with teacher", pct("val/agreement")),
            ("params", f"{cost['params'] / 1e6:.3f} M"), ("mult-adds", f"{cost['macs'] / 1e6:.2f} M"),
            ("student file", summary["student_file"])]
    for w in summary.get("widths", []):  # a slimmable student's widths, taken out as plain students
        scored = w["final"] or {}
        rows.append((f"width {w['alpha']:g}", f"top-1 {pct_of(scored, 'val/top1')}, agreement "
                     f"{pct_of(scored, 'val/agreement')}, {w['cost']['macs'] / 1e6:.2f} M mult-adds: {w['student_file']}"))
    width = max(len(k) for k, _ in rows)
    return "\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
