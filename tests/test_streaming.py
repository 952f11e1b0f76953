"""`data.streaming_dir`: the images as litdata chunks, read by index, with the local decoded cache's crops."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from distill.data import DistillDataModule
from tests.helpers import DDP, run_cli
from tests.test_data import gradient

pytest.importorskip("litdata")


def test_litdata_images_give_the_local_caches_crops(tmp_path, monkeypatch):
    """Mixed-size photos and one whose pixels are cut short: the litdata copy holds the same working-
    resolution pixels as the local cache (so the same crops, bit for bit), skips the broken image the same
    way, and is written once."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (w, h) in enumerate([(200, 150), (150, 210), (240, 160), (180, 180), (160, 200)]):
        gradient().resize((w, h)).save(photos / f"{i}.{'jpg' if i % 2 else 'png'}")
    jpeg = (photos / "1.jpg").read_bytes()
    (photos / "5_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # its header passes the scan

    def module(**kw):
        return DistillDataModule({"teacher": 16, "student": 12}, unlabeled_dir=str(photos), batch_size=4,
                                 num_workers=0, **kw)

    local = module(decoded_cache=str(tmp_path / "decoded"))
    streamed = module(streaming_dir=str(tmp_path / "litdata"))
    assert local.train_set.decoded.endswith(".bin") and streamed.train_set.decoded.endswith(".litdata")
    assert len(streamed.train_set) == 6 and local.train_set.bad == {5}
    for key in [(0, 0, 0), (1, 0, 3), (2, 1, 5), (3, 2, 1), (4, 0, 2), (5, 0, 0)]:
        a, b = local.train_set[key], streamed.train_set[key]
        for view in ("teacher", "student"):
            assert torch.equal(a[view], b[view]), (key, view)
    assert streamed.train_set.bad == {5}  # found when read: the image after it stood in, as with the local cache

    monkeypatch.setattr("distill.streaming.subprocess.run", lambda *a, **k: pytest.fail("written again"))
    assert module(streaming_dir=str(tmp_path / "litdata")).train_set.decoded == streamed.train_set.decoded


@pytest.mark.slow
def test_ddp_ranks_stream_their_shards_and_match_the_local_cache(cli_args, finished_run, tmp_path):
    """DDP(2) through train.py: reading the images from litdata chunks trains exactly as the local cache does."""
    streamed = run_cli([*cli_args, *DDP, f"data.streaming_dir={tmp_path / 'litdata'}", f"hydra.run.dir={tmp_path / 's'}"])
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    assert list((tmp_path / "litdata").glob("decoded-*.litdata/index.json"))
    want = json.loads((finished_run(*DDP) / "summary.json").read_text())["final"]
    got = json.loads((tmp_path / "s" / "summary.json").read_text())["final"]
    assert got["step"] == want["step"] == 8
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key


def test_object_storage_is_read_through_litdatas_node_cache(tmp_path, monkeypatch):
    """A bucket URL (litdata's `local:` store stands in for s3://, offline): the dataset written to a local
    folder and copied there is read back through litdata's chunk cache with the same crops; a store that
    does not hold it, and that litdata cannot write to, is a one-line error naming what to copy."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        gradient().resize((120 + 20 * i, 100)).save(photos / f"{i}.jpg")
    cache = tmp_path / "node_cache"
    monkeypatch.setattr("litdata.utilities.dataset_utilities._LITDATA_CACHE_DIR", str(cache))

    def module(root):
        return DistillDataModule({"teacher": 16, "student": 12}, unlabeled_dir=str(photos), batch_size=4,
                                 num_workers=0, streaming_dir=root)

    local = module(str(tmp_path / "written"))
    bucket = tmp_path / "bucket"
    with pytest.raises(ValueError, match=r"litdata writes only to s3://.*copy DIR/decoded-\w+-\w+\.litdata there"):
        module(f"local:{bucket}")
    bucket.mkdir()
    name = Path(local.train_set.decoded).name
    shutil.copytree(local.train_set.decoded, bucket / name)
    remote = module(f"local:{bucket}")
    assert remote.train_set.decoded == f"local:{bucket}/{name}"
    for key in [(0, 0, 0), (1, 0, 3), (2, 1, 5), (3, 2, 1)]:
        for view in ("teacher", "student"):
            assert torch.equal(local.train_set[key][view], remote.train_set[key][view]), (key, view)
    assert list(cache.rglob("chunk-*.bin")), "chunks are read from the node's cache, not the bucket"
