"""The sweep report: built from hand-made run directories, and end to end from a Hydra multirun."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from distill.report import build_report, plot_series
from tests.helpers import run_cli


def fake_job(sweep: Path, num: int | str, alpha: float, size: int, top1: float | None, macs: float = 10e6,
             labels_only: bool = False, label_fraction: float = 1.0, teacher_top1: float = 0.9,
             student: str = "mobilenet_v1", hard_weight: float = 0.0):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create([f"student.alpha={alpha}", f"student.img_size={size}"]),
                   job / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"student": {"name": student, "alpha": alpha, "img_size": size},
                                     "distill": {"soft_weight": 0.0 if labels_only else 1.0,
                                                 "hard_weight": 1.0 if labels_only else hard_weight},
                                     "data": {"label_fraction": label_fraction}}),
                   job / ".hydra" / "config.yaml")
    if top1 is not None:  # a failed run leaves no summary.json
        row = {"epoch": 3, "val/top1": top1, "val/agreement": top1 + 0.05, "val/kl": 0.1,
               "val/teacher_top1": teacher_top1}
        best = {**row, "val/top1": top1 + 0.01}
        (job / "summary.json").write_text(json.dumps({
            "final": row, "best": best, "student": student, "img_size": size,
            "alpha": alpha if student == "mobilenet_v1" else None,  # as the built model says
            "cost": {"params": 1_000_000 * alpha, "macs": macs, "latency_ms_b1": 1.5}}))


def test_report_from_hand_made_runs(tmp_path):
    fake_job(tmp_path, 0, 1.0, 32, 0.80, macs=40e6)
    fake_job(tmp_path, 1, 0.5, 32, 0.75, macs=12e6)
    fake_job(tmp_path, 2, 0.25, 32, None)
    rows = build_report(tmp_path)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert rows[1]["d_top1_vs_alpha1"] == pytest.approx(-5.0)
    assert rows[0]["d_top1_vs_teacher"] == pytest.approx(-10.0)
    md = (tmp_path / "sweep.md").read_text()
    assert ("| 1: mobilenet_v1-32 | 0.50 | 32 | 0.500 | 12.00 | 1.50 | distilled (teacher on 100 % of labels) | 4 | 75.0 | 80.0 "
            "| -5.0 | – | 90.0 | ok |") in md
    assert rows[1]["top1_best"] == pytest.approx(76.0)  # the table shows the final row, not the best
    assert "failed" in md and "online teacher" in md
    with (tmp_path / "sweep.csv").open() as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok", "ok", "failed"]
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


def test_report_gains_int8_columns_where_runs_were_exported(tmp_path):
    fake_job(tmp_path, 0, 1.0, 32, 0.80)
    fake_job(tmp_path, 1, 0.5, 32, 0.75)
    build_report(tmp_path)
    assert "INT8" not in (tmp_path / "sweep.md").read_text()  # no run exported: no INT8 columns
    (tmp_path / "0" / "int8.json").write_text(json.dumps({  # as `python -m students.export JOB --int8` writes it
        "top1_fp32": 80.0, "top1_int8": 79.6, "latency_ms_b1_fp32": 2.0, "latency_ms_b1_int8": 0.8,
        "bytes_fp32": 12_900_000, "bytes_int8": 3_470_000}))
    rows = build_report(tmp_path)
    assert rows[0]["int8_top1"] == 79.6 and rows[0]["int8_speedup_b1"] == pytest.approx(2.5)
    md = (tmp_path / "sweep.md").read_text()
    assert "| INT8 top-1 % | INT8 ms (b1) | INT8 speed-up | INT8 MB |" in md
    assert "| 90.0 | 79.6 | 0.80 | 2.50 | 3.47 | ok |" in md and "| 90.0 | – | – | – | – | ok |" in md


def test_report_names_students_distilled_with_labels_and_pairs_them_with_their_twin(tmp_path):
    fake_job(tmp_path, 0, 0.25, 32, 0.74, hard_weight=0.5)  # supervision=both
    fake_job(tmp_path, 1, 0.25, 32, 0.72, labels_only=True)
    rows = build_report(tmp_path)
    assert rows[0]["d_top1_vs_labels"] == pytest.approx(2.0)
    md = (tmp_path / "sweep.md").read_text()
    assert "distilled + labels (100 % of labels)" in md and "labels only (100 % of labels)" in md


def test_report_compares_distilled_students_with_label_only_twins(tmp_path):
    """The recipe's four cases: distilled vs label-only, all labels vs a third; deltas within each case."""
    for n, (alpha, labels_only, fraction, top1, teacher) in enumerate([
            (1.0, False, 1.0, 0.70, 0.72), (0.25, False, 1.0, 0.66, 0.72), (1.0, True, 1.0, 0.68, 0.72),
            (0.25, True, 1.0, 0.60, 0.72), (1.0, False, 0.33, 0.58, 0.60), (1.0, True, 0.33, 0.50, 0.60)]):
        fake_job(tmp_path, n, alpha, 32, top1, labels_only=labels_only, label_fraction=fraction,
                 teacher_top1=teacher)
    rows = build_report(tmp_path)
    assert [r["trained_on"] for r in rows] == ["teacher", "teacher", "labels", "labels", "teacher", "labels"]
    assert [r["d_top1_vs_alpha1"] for r in rows] == pytest.approx([0, -4, 0, -8, 0, 0])
    assert rows[0]["d_top1_vs_labels"] == pytest.approx(2.0)
    assert rows[1]["d_top1_vs_labels"] == pytest.approx(6.0)
    assert rows[4]["d_top1_vs_labels"] == pytest.approx(8.0)  # the label-budget twin, not the full-label one
    assert rows[2]["d_top1_vs_labels"] is None
    md = (tmp_path / "sweep.md").read_text()
    assert "labels only (33 % of labels)" in md and "distilled (teacher on 33 % of labels)" in md
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


def test_report_labels_timm_students_by_their_name(tmp_path):
    """A timm student carries its width in its name: its row has no alpha (the config's default 1.0 is not
    its width), and it is paired neither with mobilenet_v1's alpha = 1.0 row nor with its label-only twin."""
    fake_job(tmp_path, 0, 1.0, 32, 0.80)
    fake_job(tmp_path, 1, 1.0, 32, 0.70, student="mobilenetv2_050")
    fake_job(tmp_path, 2, 1.0, 32, 0.60, labels_only=True)
    rows = build_report(tmp_path)
    timm_row = next(r for r in rows if r["student"] == "mobilenetv2_050")
    assert timm_row["alpha"] is None
    assert timm_row["d_top1_vs_alpha1"] is None and timm_row["d_top1_vs_labels"] is None
    assert rows[0]["d_top1_vs_labels"] == pytest.approx(20.0)  # mobilenet_v1's own twin
    md = (tmp_path / "sweep.md").read_text()
    assert "| 1: mobilenetv2_050-32 | – | 32 |" in md and "| mobilenetv2_050 | – | 32 |" in md


@pytest.mark.slow
def test_multirun_grid_end_to_end(cli_args, tmp_path):
    """A 2 x 2 alpha x resolution grid through Hydra's multirun: one report row per run, numbers as in
    each run's summary.json."""
    args = [a for a in cli_args if not a.startswith(("student.", "trainer.max_epochs"))]
    proc = run_cli(["-m", "experiment=shrink_grid", "student.alpha=0.5,0.25", "student.img_size=16,24",
                 "trainer.max_epochs=1", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (tmp_path / "sweep" / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["alpha"], r["img_size"]) for r in rows) == [("0.25", "16"), ("0.25", "24"), ("0.5", "16"),
                                                                  ("0.5", "24")]
    for r in rows:
        summary = json.loads((tmp_path / "sweep" / r["run"] / "summary.json").read_text())
        assert float(r["top1"]) == pytest.approx(100 * summary["final"]["val/top1"])
        assert float(r["macs_m"]) == pytest.approx(summary["cost"]["macs"] / 1e6)
    assert (tmp_path / "sweep" / "sweep.png").exists() and (tmp_path / "sweep" / "sweep.md").exists()


def test_sweep_report_callback_logs_to_wandb_group(tmp_path, monkeypatch):
    from distill.report import SweepReport

    monkeypatch.setenv("WANDB_MODE", "offline")
    fake_job(tmp_path, 0, 1.0, 32, 0.8)
    fake_job(tmp_path, 1, 0.5, 32, 0.7)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "logger": {"wandb": {"project": "p"}}})
    SweepReport().on_multirun_end(config)
    assert (tmp_path / "sweep.md").exists()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_report_orders_rows_by_case_whatever_the_job_names(tmp_path):
    """Several multiruns can share a sweep directory (named job folders): rows still come case by case,
    widest and largest first."""
    for name, alpha, size, labels_only, fraction in [("b", 0.25, 96, False, 1.0), ("a", 1.0, 96, True, 1.0),
                                                     ("c", 1.0, 128, False, 0.33), ("d", 1.0, 96, False, 1.0),
                                                     ("e", 0.25, 128, False, 1.0)]:
        fake_job(tmp_path, name, alpha, size, 0.7, labels_only=labels_only, label_fraction=fraction)
    rows = build_report(tmp_path)
    assert [r["run"] for r in rows] == ["e", "d", "b", "a", "c"]


def test_twins_from_their_own_sweep_are_paired_with_the_distilled_students(tmp_path):
    """The CIFAR recipe's control runs as a second multirun: `python -m distill.report SWEEP TWINS`."""
    for n, (alpha, top1) in enumerate([(1.0, 0.78), (0.25, 0.73)]):
        fake_job(tmp_path / "sweep", n, alpha, 32, top1)
        fake_job(tmp_path / "twins", n, alpha, 32, top1 - 0.05 + 0.02 * n, labels_only=True)
    rows = build_report(tmp_path / "sweep", tmp_path / "twins")
    assert [(r["trained_on"], r["alpha"]) for r in rows] == [
        ("teacher", 1.0), ("teacher", 0.25), ("labels", 1.0), ("labels", 0.25)]
    assert [r["d_top1_vs_labels"] for r in rows[:2]] == pytest.approx([5.0, 3.0])


def test_a_slimmable_run_gives_a_row_per_width_beside_separate_students(tmp_path):
    separate = tmp_path / "sweep"
    fake_job(separate, 0, 1.0, 32, 0.80, macs=40e6)
    fake_job(separate, 1, 0.5, 32, 0.75, macs=12e6)
    slim = tmp_path / "slim_run"  # a run whose output_dir was set apart from Hydra's: no .hydra, only its summary
    slim.mkdir()
    widths = [{"alpha": a, "img_size": 32, "final": {"val/top1": t, "val/agreement": t + 0.02, "val/teacher_top1": 0.9},
               "cost": {"params": 1_000_000 * a, "macs": m}} for a, t, m in ((1.0, 0.79, 40e6), (0.5, 0.77, 12e6))]
    (slim / "summary.json").write_text(json.dumps({
        "final": {"epoch": 10, "val/top1": 0.79}, "best": None, "student": "slimmable_mobilenet_v1", "alpha": 1.0,
        "img_size": 32, "trained_on": "teacher", "label_fraction": 1.0, "cost": {"params": 1e6, "macs": 40e6},
        "widths": widths}))
    rows = build_report(slim, separate)
    assert [(r["run"], r["student"], r["alpha"]) for r in rows] == [
        ("0", "mobilenet_v1", 1.0), ("1", "mobilenet_v1", 0.5),
        ("slim_run/1", "slimmable_mobilenet_v1", 1.0), ("slim_run/0.5", "slimmable_mobilenet_v1", 0.5)]
    assert rows[3]["top1"] == pytest.approx(77.0) and rows[3]["macs_m"] == pytest.approx(12.0)
    assert rows[3]["d_top1_vs_alpha1"] == pytest.approx(-2.0)  # against the slimmable net's own widest width
    md = (slim / "sweep.md").read_text()  # written into the first directory given
    assert "| slim_run/0.5: slimmable_mobilenet_v1-32 | 0.50 |" in md and "| 1: mobilenet_v1-32 | 0.50 |" in md
    # The plot draws the slimmable widths and the separate students as two lines, never one zigzag.
    lines = plot_series([r for r in rows if r["status"] == "ok"])
    assert [(case[3], [p[2]["alpha"] for p in pts]) for _, _, case, pts in lines] == [
        ("mobilenet_v1", [0.5, 1.0]), ("slimmable_mobilenet_v1", [0.5, 1.0])]

