"""The soft-target cache: consistent with the online teacher, keyed by what it depends on, resumable."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import train
from distill.arrays import NpyRows
from distill.cache import SoftTargets, build_soft_targets
from distill.data import DistillDataModule
from distill.module import DistillModule
from students import create_student
from teachers import create_teacher


def _module(teacher, img_size=16) -> DistillModule:
    return DistillModule(teacher, create_student(3, alpha=0.25, img_size=img_size), torch.optim.SGD)


def cached_data(module, root, views=3, topk=None, sizes=(16, 16), view_mean=0.0, **kwargs) -> DistillDataModule:
    """A data module that serves the training split from `module`'s teacher's soft-target cache in `root`."""
    targets = SoftTargets(root, module.frozen_teacher, "cached", views, topk, view_mean)
    return DistillDataModule({"teacher": sizes[0], "student": sizes[1]}, batch_size=kwargs.pop("batch_size", 8),
                             num_workers=0, soft_targets=targets, **kwargs)


def fill(dm: DistillDataModule) -> dict:
    """The caches built as `trainer.fit` builds them: when the loaders first ask for their splits."""
    for split in ("train", "val") if dm.val_set is not None else ("train",):
        dm.served(split)
    return dm.soft_target_reports


@pytest.fixture
def setup(folders, teacher_file, tmp_path):
    teacher = create_teacher("test_resnet", checkpoint_path=str(teacher_file))
    module = _module(teacher)
    dm = cached_data(module, tmp_path, unlabeled_dir=str(folders["train"]), val_dir=str(folders["val"]),
                     class_names=["ant", "bee", "cat"])
    return teacher, dm, module


def test_cached_logits_are_the_teachers_output_for_the_same_view(setup):
    teacher, dm, module = setup
    online_set, _ = dm.teacher_set("train")
    reports = fill(dm)
    assert reports["train"]["teacher_images"] == 3 * len(online_set) and not reports["train"]["hit"]
    assert reports["val"]["views"] == 1 and reports["val"]["teacher_images"] == len(dm.val_set)
    loader = dm.train_dataloader()
    for epoch in (0, 4):  # epoch 4 trains on view 4 mod 3 = 1
        loader.sampler.set_epoch(epoch)
        batch = next(iter(loader))
        assert (batch["view"] == epoch % 3).all() and "teacher" not in batch  # only the student view is decoded
        for j in range(3):
            sample = online_set[(int(batch["index"][j]), dm.seed, epoch % 3)]
            expected = module.teacher_logits(sample["teacher"][None])[0]
            torch.testing.assert_close(batch["teacher_logits"][j], expected, atol=2e-2, rtol=1e-2)  # fp16 storage


def test_cache_is_reused_and_invalidated(setup, tmp_path, folders):
    teacher, dm, module = setup
    first = fill(dm)
    again = fill(cached_data(module, tmp_path, unlabeled_dir=str(folders["train"]), val_dir=str(folders["val"]),
                             class_names=["ant", "bee", "cat"]))
    assert again["train"]["hit"] and again["train"]["teacher_images"] == 0 and again["val"]["hit"]
    assert again["train"]["key"] == first["train"]["key"]

    other = _module(create_teacher("test_resnet", num_classes=3))  # same architecture, other weights
    changed = fill(cached_data(other, tmp_path, unlabeled_dir=str(folders["train"])))
    assert not changed["train"]["hit"] and changed["train"]["key"] != first["train"]["key"]


def test_killed_build_resumes_without_recomputing(setup, tmp_path, monkeypatch):
    teacher, dm, module = setup
    dataset, policy = dm.teacher_set("train")
    run = module.frozen_teacher
    clean = build_soft_targets(run, dataset, 2, tmp_path / "clean", 0, policy, batch_size=8, num_workers=0)

    calls = {"n": 0}
    forward = teacher.forward

    def dies_on_third_batch(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return forward(x)

    monkeypatch.setattr("distill.cache.FLUSH_EVERY", 1)
    monkeypatch.setattr(teacher, "forward", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        build_soft_targets(run, dataset, 2, tmp_path / "resumed", 0, policy, batch_size=8, num_workers=0)
    folder = next((tmp_path / "resumed").iterdir())
    assert not (folder / "complete.json").exists()  # a half-written cache is never read as complete
    monkeypatch.setattr(teacher, "forward", forward)
    resumed = build_soft_targets(run, dataset, 2, tmp_path / "resumed", 0, policy, batch_size=8, num_workers=0)
    assert resumed["teacher_images"] == 2 * len(dataset) - 2 * 8  # the two finished batches are not redone
    np.testing.assert_array_equal(np.load(resumed["path"]), np.load(clean["path"]))


def test_sigterm_during_the_build_exits_and_the_next_run_resumes(setup, tmp_path, monkeypatch):
    import signal

    teacher, dm, module = setup
    dataset, policy = dm.teacher_set("train")
    calls, forward = {"n": 0}, teacher.forward

    def terminated_on_third_batch(x):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return forward(x)

    monkeypatch.setattr(teacher, "forward", terminated_on_third_batch)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        build_soft_targets(module.frozen_teacher, dataset, 2, tmp_path / "st", 0, policy, batch_size=8, num_workers=0)
    assert stop.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is handler  # the build's own handler is gone
    monkeypatch.setattr(teacher, "forward", forward)
    resumed = build_soft_targets(module.frozen_teacher, dataset, 2, tmp_path / "st", 0, policy, batch_size=8,
                                 num_workers=0)
    assert resumed["teacher_images"] == 2 * len(dataset) - 2 * 8  # the two batches before the signal are kept


def test_ranks_share_one_build_each_computing_half_of_the_rows(setup, tmp_path):
    """DDP ranks fill one cache together (two threads here, a threading barrier standing in for the process
    group's): each computes its own half of the rows into the same files; the result is one process's cache."""
    import threading

    from distill.cache import Ranks

    teacher, dm, module = setup
    dataset, policy = dm.teacher_set("train")
    run = module.frozen_teacher
    alone = build_soft_targets(run, dataset, 3, tmp_path / "alone", 0, policy, batch_size=8, num_workers=0)
    barrier, reports = threading.Barrier(2, timeout=120), {}

    def rank(r: int) -> None:
        reports[r] = build_soft_targets(run, dataset, 3, tmp_path / "shared", 0, policy, batch_size=8, num_workers=0,
                                        ranks=Ranks(r, 2, barrier.wait))

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = 3 * len(dataset)
    assert sorted(r["teacher_images"] for r in reports.values()) == [rows // 2, rows - rows // 2]
    assert reports[0]["path"] == reports[1]["path"] != alone["path"]
    np.testing.assert_allclose(np.load(reports[0]["path"]).astype(np.float32), np.load(alone["path"]).astype(np.float32),
                               atol=2e-2, rtol=1e-2)
    again = build_soft_targets(run, dataset, 3, tmp_path / "shared", 0, policy, batch_size=8, num_workers=0)
    assert again["hit"] and again["teacher_images"] == 0  # complete: one process reads it as it is


@pytest.mark.parametrize("damage", ["truncated", "grown", "wrong_shape", "rows_missing"])
def test_damaged_cache_is_rebuilt_not_read(setup, tmp_path, damage):
    """complete.json present, but logits.npy cut short (a full disk), grown, of another shape, or rows not
    marked done: the cache is checked against its recorded shape and size and rebuilt."""
    teacher, dm, module = setup
    dataset, policy = dm.teacher_set("train")
    build = lambda: build_soft_targets(module.frozen_teacher, dataset, 2, tmp_path / "st", 0, policy,  # noqa: E731
                                       batch_size=8, num_workers=0)
    clean = build()
    expected = np.load(clean["path"]).copy()
    logits = tmp_path / "st" / clean["key"] / "logits.npy"
    if damage == "truncated":
        os.truncate(logits, logits.stat().st_size - 7)
    elif damage == "grown":
        with logits.open("ab") as f:
            f.write(b"\0" * 64)
    elif damage == "wrong_shape":
        np.save(logits, np.zeros((2, len(dataset), 5), np.float16))
    else:
        done = np.load(tmp_path / "st" / clean["key"] / "done.npy", mmap_mode="r+")
        done[1, 3] = 0
        done.flush()
    rebuilt = build()
    assert not rebuilt["hit"] and rebuilt["teacher_images"] == 2 * len(dataset)
    np.testing.assert_array_equal(np.load(rebuilt["path"]), expected)
    assert build()["hit"]


def test_damaged_decoded_cache_is_decoded_again(tmp_path):
    from PIL import Image

    from distill.arrays import decode_to_cache

    files = []
    for i in range(3):  # equal-size images: the decoded cache applies
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((6, 5, 3), 40 * i, np.uint8)).save(files[-1])
    path, _ = decode_to_cache(files, tmp_path / "cache")
    whole = np.load(path).copy()
    assert whole.shape == (3, 6, 5, 3)
    os.truncate(path, os.path.getsize(path) - 5)
    again, _ = decode_to_cache(files, tmp_path / "cache")
    assert again == path and np.array_equal(np.load(again), whole)


def test_cached_mode_end_to_end(make_cfg, tmp_path):
    summary = train.train(make_cfg("soft_targets=cached", "soft_targets.views=2", "soft_targets.view_mean=0.5"))
    assert summary["soft_target_cache"]["train"]["views"] == 2
    assert summary["soft_target_cache"]["train"]["view_mean"] == 0.5
    assert summary["final"]["val/teacher_top1"] is not None
    assert (tmp_path / "cache" / "soft_targets").is_dir()


def _same_size_copies(folders, root):
    """The train folder's images at one size, so that a decoded cache can render the student's views."""
    from PIL import Image as PILImage

    root.mkdir()
    for i, f in enumerate(sorted(folders["train"].rglob("*.*"))):
        PILImage.open(f).convert("RGB").resize((20, 20)).save(root / f"{i:02d}.png")
    return root


def test_rendered_student_views_equal_the_crops_made_each_epoch(teacher_file, folders, tmp_path):
    """With cached soft targets and a decoded cache, the student's K views are rendered once; every epoch
    then serves exactly the crops the on-the-fly path makes (with a bad image's stand-in), and a second
    run reuses the file."""
    root = _same_size_copies(folders, tmp_path / "same_size")
    (root / "99.png").write_bytes((root / "00.png").read_bytes()[:60])  # header fine, pixels cut off

    module = _module(create_teacher("test_resnet", checkpoint_path=str(teacher_file)))

    def run(folder=root, **kwargs):
        dm = cached_data(module, tmp_path / "soft", sizes=(20, 16), unlabeled_dir=str(folder), batch_size=4, **kwargs)
        fill(dm)
        return dm

    plain, rendered = run(), run(decoded_cache=str(tmp_path / "decoded"))
    assert plain.served("train").rendered is None and rendered.served("train").rendered
    assert rendered.served("train").bad, "the truncated file is known from the decoded cache"
    (views,) = list((tmp_path / "decoded").glob("views-*.npy"))
    assert np.load(views, mmap_mode="r").shape == (3, len(rendered.train_set), 16, 16, 3)
    for epoch in (0, 1, 2, 3, 7):  # view = epoch mod 3
        for index in range(len(rendered.train_set)):
            key = (index, 0, epoch)
            a, b = plain.served("train")[key], rendered.served("train")[key]
            assert torch.equal(a["student"], b["student"]) and a["view"] == b["view"] == epoch % 3
            assert torch.equal(a["teacher_logits"], b["teacher_logits"]) and a["label"] == b["label"]
    mtime = views.stat().st_mtime_ns
    again = run(decoded_cache=str(tmp_path / "decoded"))
    assert again.served("train").rendered == str(views) and views.stat().st_mtime_ns == mtime
    small = run(decoded_cache=str(tmp_path / "decoded"), rendered_max_gb=1e-6)
    assert small.served("train").rendered is None  # over the size limit: cropped each epoch instead

    # Without bad images a batch is read whole (one read per array), equal to the per-sample batch.
    (root / "99.png").unlink()
    plain, rendered = run(), run(decoded_cache=str(tmp_path / "decoded"))
    assert not rendered.served("train").bad
    loaders = [plain.train_dataloader(), rendered.train_dataloader()]
    assert loaders[1].num_workers == 0  # rendered views load in the main process by default
    for loader in loaders:
        loader.sampler.set_epoch(4)
    for a, b in zip(*loaders):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert b["student"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("decoded", [False, True], ids=["cropped", "rendered"])
def test_view_mean_moves_each_views_target_toward_the_images_mean_over_its_views(teacher_file, folders, tmp_path,
                                                                                decoded):
    """soft_targets.view_mean=w: the target for view k of image i is (1 - w) z_ki + w mean_j z_ji over the
    cache's K rows of image i (one cache for every w), per sample and on the rendered whole-batch path."""
    module = _module(create_teacher("test_resnet", checkpoint_path=str(teacher_file)))
    root = _same_size_copies(folders, tmp_path / "same_size")

    def data(w):
        dm = cached_data(module, tmp_path / "soft", sizes=(20, 16), view_mean=w, unlabeled_dir=str(root), batch_size=4,
                         decoded_cache=str(tmp_path / "dec") if decoded else None)
        return dm, fill(dm)["train"]

    (plain, first), (moved, report) = data(0.0), data(0.25)
    assert report["key"] == first["key"] and report["hit"] and report["view_mean"] == 0.25 and "view_mean" not in first
    assert bool(moved.served("train").rendered) == decoded
    z = np.load(first["path"]).astype(np.float32)  # K x N x C
    for epoch in (0, 4):  # views 0 and 1
        loaders = [plain.train_dataloader(), moved.train_dataloader()]
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        for a, b in zip(*loaders):
            k, i = b["view"].numpy(), b["index"].numpy()
            assert torch.equal(a["index"], b["index"]) and torch.equal(a["student"], b["student"])
            expected = 0.75 * z[k, i] + 0.25 * z[:, i].mean(0)
            torch.testing.assert_close(b["teacher_logits"], torch.from_numpy(expected), atol=1e-5, rtol=1e-5)
            assert not torch.allclose(a["teacher_logits"], b["teacher_logits"])
    whole, _ = data(1.0)
    served = whole.served("train")
    for index in range(len(served)):  # w = 1: one target per image, whatever the view
        torch.testing.assert_close(served[(index, 0, 0)]["teacher_logits"], served[(index, 0, 2)]["teacher_logits"])


def test_view_mean_refuses_what_it_cannot_average(teacher_file, folders, tmp_path):
    module = _module(create_teacher("test_resnet", checkpoint_path=str(teacher_file)))
    with pytest.raises(ValueError, match=r"soft_targets.view_mean=1.5 must lie in \[0, 1\]"):
        SoftTargets(tmp_path, module.frozen_teacher, "cached", view_mean=1.5)
    with pytest.raises(ValueError, match="soft_targets.view_mean with data.mix"):
        cached_data(module, tmp_path, view_mean=0.5, unlabeled_dir=str(folders["train"]), mix={"prob": 0.5})


def _rss_bytes() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_npy_rows_read_the_arrays_rows_without_growing_rss(tmp_path):
    """Cached arrays (views, logits, decoded images) are read row by row with pread: the same values as
    numpy's own load, in forked workers too, and reading a whole 48 MB file leaves RSS where it was
    (a memory map's touched pages would all count in it)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 50, 7)).astype(np.float16)
    np.save(tmp_path / "logits.npy", logits)
    rows = NpyRows(str(tmp_path / "logits.npy"))
    view, index = rng.integers(0, 3, 64), rng.integers(0, 50, 64)
    assert np.array_equal(rows.read(view, index), logits[view, index])
    assert np.array_equal(rows.read([2], [49])[0], logits[2, 49])
    loader = DataLoader(range(6), batch_size=2, num_workers=2,
                        collate_fn=lambda i: torch.from_numpy(rows.read([1] * len(i), i).astype(np.float32)))
    assert torch.equal(torch.cat(list(loader)), torch.from_numpy(logits[1, :6].astype(np.float32)))

    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(4, 1000, 64, 64, 3))
    big[:] = 7
    big.flush()
    del big
    rows = NpyRows(str(tmp_path / "big.npy"))
    before = _rss_bytes()
    for v in range(4):
        for start in range(0, 1000, 100):
            batch = rows.read([v] * 100, range(start, start + 100))
    assert batch.shape == (100, 64, 64, 3) and (batch == 7).all()
    assert _rss_bytes() - before < 8e6


def test_changed_images_replace_the_old_cache_of_the_same_teacher_only(setup, tmp_path, folders):
    import shutil

    teacher, _, module = setup
    images = shutil.copytree(folders["train"], tmp_path / "images")
    other = _module(create_teacher("test_resnet", num_classes=3))

    def build(module):
        dm = cached_data(module, tmp_path / "st", unlabeled_dir=str(images))
        return os.path.basename(os.path.dirname(fill(dm)["train"]["path"]))

    first, kept = build(module), build(other)
    a_file = next(p for p in images.rglob("*") if p.is_file())
    os.utime(a_file, ns=(1, 1))
    rebuilt = build(module)
    assert rebuilt != first and sorted(p.name for p in (tmp_path / "st").iterdir()) == sorted([rebuilt, kept])


@pytest.mark.parametrize("decoded", [False, True], ids=["decoded-each-epoch", "rendered-views"])
def test_cache_holds_the_teachers_output_for_the_mixed_view_the_student_sees(teacher_file, folders, tmp_path,
                                                                             decoded):
    """data.mix in cached mode: the cache's row (view k, image i) is the teacher's output on image i mixed
    with its partner, and the student's batch is that same mix at its resolution (rendered or not)."""
    root = _same_size_copies(folders, tmp_path / "same_size")
    mix = {"prob": 0.7, "switch_prob": 0.5}
    kwargs = dict(unlabeled_dir=str(root), batch_size=6, mix=mix)
    module = _module(create_teacher("test_resnet", checkpoint_path=str(teacher_file)))
    dm = cached_data(module, tmp_path / "soft", views=2, sizes=(20, 16),
                     decoded_cache=str(tmp_path / "dec") if decoded else None, **kwargs)
    online = DistillDataModule({"teacher": 20, "student": 16}, num_workers=0, **kwargs).train_set
    fill(dm)
    assert bool(dm.served("train").rendered) == decoded
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)  # view 1
    mixed = 0
    for batch in loader:
        for j, index in enumerate(batch["index"].tolist()):
            sample = online[(index, dm.seed, 1)]
            assert torch.equal(batch["student"][j], sample["student"])
            assert batch["lam"][j].item() == pytest.approx(sample["lam"]) and batch["label_mixed"][j] == -1
            expected = module.teacher_logits(sample["teacher"][None])[0]
            torch.testing.assert_close(batch["teacher_logits"][j], expected, atol=2e-2, rtol=1e-2)
            mixed += sample["lam"] < 1
    assert mixed >= 5


def test_topk_rows_keep_the_top_probabilities_and_the_mass_of_the_rest():
    from distill.cache import expand_topk, topk_rows

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 1000, generator=g)
    logits[torch.arange(16), torch.randint(0, 1000, (16,), generator=g)] += 10  # a confident teacher
    values, classes = topk_rows(logits, 5)
    full = torch.from_numpy(expand_topk(values.numpy(), classes.numpy(), 1000))
    p, q = logits.softmax(-1), full.softmax(-1)
    torch.testing.assert_close(q.sum(-1), torch.ones(16))
    torch.testing.assert_close(q.gather(-1, classes), p.gather(-1, classes), rtol=1e-4, atol=1e-6)
    rest = torch.ones_like(p, dtype=torch.bool).scatter(-1, classes, False)
    torch.testing.assert_close((q * rest).sum(-1), (p * rest).sum(-1), rtol=1e-4, atol=1e-6)
    def kl(k: int) -> torch.Tensor:  # KL(full || top-k) per row, T = 1
        v, c = topk_rows(logits, k)
        q = torch.from_numpy(expand_topk(v.numpy(), c.numpy(), 1000)).softmax(-1)
        return (p * (p.log() - q.log())).sum(-1)

    # Measured 0.055 / 0.047 / 0.025 at k = 1 / 5 / 50 (this teacher leaves ~7 % of its mass to 999 classes).
    assert kl(5).mean() < 0.05 and (kl(5) <= kl(1) + 1e-6).all() and kl(50).mean() < kl(5).mean()


def test_topk_cache_serves_the_teachers_targets(folders, teacher_file, tmp_path):
    """Three classes, k = 2: the one logit for the rest is exact, so the served targets equal the full
    cache's (fp16 storage aside); on disk: k+1 values and k int16 class indices per row."""
    module = _module(create_teacher("test_resnet", checkpoint_path=str(teacher_file)))

    def cached(topk):
        dm = cached_data(module, tmp_path, topk=topk, unlabeled_dir=str(folders["train"]))
        report = fill(dm)["train"]
        return report, next(iter(dm.train_dataloader())), dm

    full, full_batch, _ = cached(None)
    top, batch, dm = cached(2)
    assert top["key"] != full["key"] and top["topk"] == 2
    assert np.load(top["path"], mmap_mode="r").shape == (3, len(dm.train_set), 3)
    assert np.load(top["classes"], mmap_mode="r").dtype == np.int16
    assert torch.equal(batch["index"], full_batch["index"])
    torch.testing.assert_close(batch["teacher_logits"].softmax(-1), full_batch["teacher_logits"].softmax(-1),
                               atol=3e-3, rtol=1e-2)
    with pytest.raises(ValueError, match="soft_targets.topk=3"):
        SoftTargets(tmp_path, module.frozen_teacher, "cached", topk=3)
