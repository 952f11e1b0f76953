"""The runs of a tuning folder (one summary.json each) as a table; with --best, the distilled run with the
highest held-out top-1 and the overrides that made it (schedule and soft targets), for
`benchmarks/device/imagenette_tune.sh` to repeat on val.

    python benchmarks/device/tune_table.py RUNS [--best]
"""
import json
import sys
from pathlib import Path

import yaml

TUNED = ("trainer.max_epochs=", "soft_targets.")  # the overrides a tuning run varies


def runs(folder: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(folder.glob("*/summary.json"))}


def best(folder: Path) -> str:
    tuned = {name: s for name, s in runs(folder).items() if s["trained_on"] == "teacher" and not name.startswith("val_")}
    if not tuned:
        return ""
    name = max(tuned, key=lambda n: tuned[n]["final"]["val/top1"])
    overrides = yaml.safe_load((folder / name / ".hydra" / "overrides.yaml").read_text())
    return " ".join([name, *(o for o in overrides if o.startswith(TUNED))])


def table(folder: Path) -> str:
    lines = [f"{'run':<22}{'top1':>7}{'agree':>7}{'teacher':>8}{'epochs':>7}"]
    for name, s in runs(folder).items():
        final = s["final"]
        lines.append(f"{name:<22}{100 * final['val/top1']:7.2f}{100 * final['val/agreement']:7.2f}"
                     f"{100 * final['val/teacher_top1']:8.2f}{final['epoch'] + 1:7d}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(best(Path(sys.argv[1])) if "--best" in sys.argv else table(Path(sys.argv[1])))
