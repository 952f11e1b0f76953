"""Copy each run's small records into DEST and print one row per run."""
import json, shutil, sys
from pathlib import Path
dest = Path(sys.argv[1]); runs = sys.argv[2:]
for name in runs:
    src = Path("/tmp/s42/runs") / name
    out = dest / name; out.mkdir(parents=True, exist_ok=True)
    for f in ["metrics.csv", "summary.json"]:
        shutil.copy(src / f, out / f)
    shutil.copy(src / ".hydra" / "overrides.yaml", out / "overrides.yaml")
    t = Path(f"/tmp/s42/runs/{name}.time").read_text().splitlines()
    (out / "time.txt").write_text("\n".join(l for l in t if "Elapsed" in l or "Maximum resident" in l or "Exit status" in l) + "\n")
    s = json.loads((src / "summary.json").read_text())["final"]
    el = [l for l in t if "Elapsed" in l][0].split()[-1]
    print(f"{name:10s} top1 {100*s['val/top1']:.2f}  agreement {100*s['val/agreement']:.2f}  teacher {100*s['val/teacher_top1']:.2f}  wall {el}")
