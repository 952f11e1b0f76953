import json, os, sys
from pathlib import Path
root = Path(sys.argv[1])
t0 = min((root / j / ".hydra/config.yaml").stat().st_mtime for j in map(str, range(8)) if (root / j).exists())
for j in range(8):
    d = root / str(j)
    if not (d / "summary.json").exists(): continue
    s = json.loads((d / "summary.json").read_text())
    a, b = (d / ".hydra/config.yaml").stat().st_mtime, (d / "summary.json").stat().st_mtime
    c = s["soft_target_cache"]["train"]
    print(f"job {j} alpha {s['alpha']} lf {s['label_fraction']} start {(a-t0)/60:5.1f} end {(b-t0)/60:5.1f} dur {(b-a)/60:5.1f} min "
          f"img/s {s['throughput']['images_per_s']} thr {s['throughput']['threads']} cache {c.get('status', c.get('state'))} {c.get('seconds', c.get('build_s'))} top1 {s['final']['val/top1']:.4f}")
