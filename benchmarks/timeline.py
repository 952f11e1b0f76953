"""A recipe run, as it ran: when each teacher stage and each job started and ended (from their logs'
timestamps), its cache build, and what it scored, as a Markdown table.

    python benchmarks/timeline.py SWEEP_DIR STAGE_DIR...   # STAGE_DIR: paths.cache_dir/recipes/<recipe>/<teacher>
"""
import datetime as dt
import json
import re
import sys
from pathlib import Path

import yaml

STAMP = re.compile(r"\[(\S+ \S+)\]\[(\S+)\]\[\w+\] - (.*)")


def lines(path):
    for line in open(path, errors="replace"):
        if m := STAMP.match(line):
            yield dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f"), m.group(3)


def minutes(a, b):
    return (b - a).total_seconds() / 60


sweep, stages = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
rows = []
for stage in stages:
    log = list(lines(stage / "train_teacher.log"))
    top1 = json.loads((stage / "summary.json").read_text())["val/top1"]
    rows.append((stage.name, log[0][0], log[-1][0], None, f"teacher {100 * top1:.2f} %"))
for job in sorted((p for p in sweep.iterdir() if (p / "train.log").exists()), key=lambda p: int(p.name)):
    log = list(lines(job / "train.log"))
    start = next(t for t, msg in log if not msg.startswith("teacher stage"))  # (after waiting for its teacher)
    cache = next((minutes(start, t) for t, msg in log if msg.startswith("soft-target cache val")), None)
    final = json.loads((job / "summary.json").read_text())["final"] if (job / "summary.json").exists() else {}
    overrides = ", ".join(o for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
                          if not o.startswith("experiment="))
    scored = (f"top-1 {100 * final['val/top1']:.2f} %, agreement {100 * final['val/agreement']:.2f} %"
              if final else "did not finish")
    rows.append((f"job {job.name}: {overrides}", start, log[-1][0], cache, scored))
t0, t_end = min(r[1] for r in rows), max(r[2] for r in rows)
print("| what | start | end | minutes | of which caches | result |\n|---|---|---|---:|---:|---|")
for name, a, b, cache, result in rows:
    print(f"| {name} | {a:%H:%M:%S} | {b:%H:%M:%S} | {minutes(a, b):.1f} | {'' if cache is None else f'{cache:.1f}'} | {result} |")
print(f"\nfirst log line to last: {minutes(t0, t_end):.1f} min")
