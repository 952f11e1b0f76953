"""Scanning a 100,000-file folder: from the headers, then again with the scan index (`data.scan_index`).

    python benchmarks/scan.py                 # 100,000 files, about a minute on 2 cores
    python benchmarks/scan.py --files 20000

Generates, outside the repo, a folder of small JPEGs in 100 class sub-folders (the same few hundred bytes
written again and again: the scan reads headers, not pixels), then times `distill.folders.scan_images`:
without an index, with an empty index (it is written), and with the index (the second run of a training
command). Prints the times; writes benchmarks/results/scan.json.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_folder(root: Path, files: int, classes: int = 100) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 60, 200)).save(buf, format="JPEG")
    data = buf.getvalue()
    for c in range(classes):
        (root / f"class{c:03d}").mkdir(parents=True)
    for i in range(files):
        (root / f"class{i % classes:03d}" / f"{i:06d}.jpg").write_bytes(data)


def timed(label: str, fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"{label:40} {seconds:7.2f} s", flush=True)
    return seconds, result


def main(argv=None) -> None:
    from distill.folders import scan_images

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scan.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder, index = Path(tmp) / "folder", Path(tmp) / "index"
        seconds, _ = timed(f"writing {args.files:,} files", lambda: make_folder(folder, args.files))
        plain, scan = timed("scan from the headers (no index)", lambda: scan_images(folder))
        first, _ = timed("first scan, writing the index", lambda: scan_images(folder, index))
        second, again = timed("second scan, with the index", lambda: scan_images(folder, index))
        assert again.files == scan.files and len(scan.files) == args.files
    result = {"files": args.files, "no_index_s": round(plain, 2), "first_with_index_s": round(first, 2),
              "second_with_index_s": round(second, 2)}
    print(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
