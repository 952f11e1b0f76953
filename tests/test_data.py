"""Folder scanning, image decoding, the shared crop, and the labeled-folder class mapping."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill.data import DistillDataModule
from distill.views import CropViews, MixViews
from distill.folders import labeled_files, load_rgb, scan_images


def gradient(w: int = 40, h: int = 30) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8))


def test_scan_is_recursive_and_reports_bad_files(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "empty_dir").mkdir()
    gradient().save(tmp_path / "a" / "one.PNG")
    gradient().save(tmp_path / "a" / "deep" / "two.JpEg", format="JPEG")
    gradient().save(tmp_path / "three.webp")
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "page.jpg").write_text("<html>not an image</html>")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    os.symlink(tmp_path / "missing.png", tmp_path / "dangling.png")

    scan = scan_images(tmp_path)
    assert sorted(p.name for p in scan.files) == ["one.PNG", "three.webp", "two.JpEg"]
    assert scan.skipped["empty_file"] == [str(tmp_path / "zero.jpg")]
    assert scan.skipped["not_an_image"] == [str(tmp_path / "page.jpg")]
    assert scan.skipped["dangling_symlink"] == [str(tmp_path / "dangling.png")]
    assert len(scan.skipped["not_an_image_file"]) == 2


def test_scan_index_skips_the_headers_of_unchanged_files_only(tmp_path, monkeypatch):
    """A second scan with the index reads no header of an unchanged file and gives the same result; a
    rewritten file is checked again, a new one found, a removed one forgotten."""
    import distill.folders

    root, index = tmp_path / "data", tmp_path / "index"
    for sub in ("b", "a/deep", "c"):
        (root / sub).mkdir(parents=True)
    for name in ("b/1.png", "a/2.png", "a/deep/3.png", "c/4.png", "0.png"):
        gradient().save(root / name)
    (root / "a" / "bad.jpg").write_text("not an image")
    first = scan_images(root, index)
    assert first.files == scan_images(root).files and first.skipped == scan_images(root).skipped  # same order
    opened = []
    monkeypatch.setattr(distill.folders.Image, "open", _recording_open(opened))
    again = scan_images(root, index)
    assert (again.files, again.skipped) == (first.files, first.skipped) and opened == []
    (root / "a" / "bad.jpg").unlink()
    gradient().save(root / "a" / "bad.jpg", format="JPEG")  # fixed: a new size and mtime
    gradient().save(root / "c" / "5.png")
    (root / "0.png").unlink()
    third = scan_images(root, index)
    assert sorted(map(Path, opened)) == [root / "a" / "bad.jpg", root / "c" / "5.png"]
    assert third.files == scan_images(root).files and root / "a" / "bad.jpg" in third.files and not third.skipped


def _recording_open(opened: list):
    real = Image.open

    def open_(path, *args, **kwargs):
        opened.append(path)
        return real(path, *args, **kwargs)

    return open_


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_unusual_modes_decode_to_rgb(tmp_path, mode):
    img = gradient().convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)  # 16-bit grayscale
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_labeled_folder_maps_to_teacher_order(folders):
    files, labels, names = labeled_files(folders["val"], ["cat", "ant", "bee", "dog"], "data.val_dir")
    assert names == ["ant", "bee", "cat"]
    by_folder = {f.parent.name: label for f, label in zip(files, labels)}
    assert by_folder == {"ant": 1, "bee": 2, "cat": 0}
    with pytest.raises(ValueError, match="not among the teacher"):
        labeled_files(folders["val"], ["dog", "emu", "fox"], "data.val_dir")


def test_augmentation_is_a_function_of_seed_epoch_index(folders):
    def first_batch(workers: int, epoch: int, seed: int = 0):
        dm = DistillDataModule({"teacher": 16, "student": 16}, unlabeled_dir=str(folders["train"]), batch_size=6,
                               num_workers=workers, seed=seed)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))["teacher"]

    assert torch.equal(first_batch(0, 1), first_batch(2, 1))  # worker count does not matter
    assert not torch.equal(first_batch(0, 1), first_batch(0, 2))  # a new epoch is a new order and new crops
    assert not torch.equal(first_batch(0, 1), first_batch(0, 1, seed=1))


def test_datamodule_batches(folders):
    dm = DistillDataModule({"teacher": 24, "student": 16}, unlabeled_dir=str(folders["train"]),
                           val_dir=str(folders["val"]), class_names=["ant", "bee", "cat"], batch_size=4, num_workers=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["teacher"].dtype == torch.uint8 and batch["teacher"].shape == (4, 3, 24, 24)
    assert batch["student"].shape == (4, 3, 16, 16)
    assert (batch["label"] == -1).all()  # the unlabeled folder's class sub-folders are never read as labels
    val = next(iter(dm.val_dataloader()))
    assert set(val["label"].tolist()) <= {0, 1, 2}


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(ValueError, match="no usable images"):
        DistillDataModule({"teacher": 16, "student": 16}, unlabeled_dir=str(tmp_path))


def test_decoded_cache_gives_the_same_crops(folders, tmp_path):
    from PIL import Image as PILImage

    root = tmp_path / "same_size"
    root.mkdir()
    for i, f in enumerate(sorted(folders["val"].rglob("*.*"))):
        PILImage.open(f).convert("RGB").resize((20, 20)).save(root / f"{i}.png")
    plain = DistillDataModule({"teacher": 16, "student": 16}, unlabeled_dir=str(root), batch_size=4, num_workers=0)
    decoded = DistillDataModule({"teacher": 16, "student": 16}, unlabeled_dir=str(root), batch_size=4,
                                num_workers=0, decoded_cache=str(tmp_path / "decoded"))
    assert decoded.train_set.decoded and list((tmp_path / "decoded").glob("decoded-*.npy"))
    for key in [(0, 0, 0), (3, 0, 2), (7, 1, 5)]:
        assert torch.equal(plain.train_set[key]["teacher"], decoded.train_set[key]["teacher"])


def test_decoded_cache_for_mixed_sizes_is_kept_at_the_working_resolution(folders, tmp_path, monkeypatch):
    """Images of many sizes are decoded once too, each stored with its short side reduced to the one that
    still covers every crop (never enlarged); their headers are read once; over the cap: on the fly."""
    import distill.arrays

    def module(folder, sizes=(16, 16), cache="decoded", **kw):
        return DistillDataModule(dict(zip(("teacher", "student"), sizes)), unlabeled_dir=str(folder), batch_size=4,
                                 num_workers=0, decoded_cache=str(tmp_path / cache), **kw)

    dm = module(folders["train"])  # 24-32 x 24 px; crops of 35-100 % at 16 px need a 32 px short side: kept whole
    assert dm.train_set.decoded.endswith(".bin") and dm.train_set.transform.cover_short_side() == 32
    (sizes,) = (tmp_path / "decoded").glob("decoded-*.sizes.json")
    assert json.loads(sizes.read_text())["distinct"] > 1
    monkeypatch.setattr(distill.arrays, "_header_size", lambda f: pytest.fail("headers read again"))
    assert module(folders["train"]).train_set.decoded == dm.train_set.decoded
    monkeypatch.undo()

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (w, h) in enumerate([(200, 150), (150, 210), (240, 160), (180, 180)]):
        gradient().resize((w, h)).save(photos / f"{i}.{'jpg' if i % 2 else 'png'}")
    plain = DistillDataModule({"teacher": 16, "student": 12}, unlabeled_dir=str(photos), batch_size=4, num_workers=0)
    stored = module(photos, (16, 12))
    pixels = distill.arrays.RaggedPixels(stored.train_set.decoded)
    assert [min(pixels.read(i)[0].shape[:2]) for i in range(4)] == [32] * 4  # 16 px / sqrt(0.35 * 3/4) -> 32
    assert [pixels.read(i)[1] for i in range(4)] == [(200, 150), (150, 210), (240, 160), (180, 180)]
    # The same crop of the source: the box is drawn on the source's grid, then rounded to the stored image's
    # (at most half a stored pixel), so on a smooth gradient the pixels differ by a few levels, not more.
    for key in [(0, 0, 0), (1, 0, 3), (2, 1, 5), (3, 2, 1)]:
        a, b = plain.train_set[key], stored.train_set[key]
        for view in ("teacher", "student"):
            assert (a[view].float() - b[view].float()).abs().mean() < 8, (key, view)
    total = sum(3 * int(n) for n in pixels.index[:, 1] * pixels.index[:, 2])
    assert (Path(stored.train_set.decoded).stat().st_size) == total
    assert module(photos, (16, 12), "small", decoded_max_gb=0.99 * total / 1e9).train_set.decoded is None  # over the cap


def test_decoded_cache_of_one_size_within_the_cap(tmp_path):
    def module(folder, **kw):
        return DistillDataModule({"teacher": 16, "student": 16}, unlabeled_dir=str(folder), batch_size=4,
                                 num_workers=0, decoded_cache=str(tmp_path / "decoded"), **kw)

    root = tmp_path / "same_size"
    root.mkdir()
    for i in range(6):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(root / f"{i}.png")
    assert module(root, decoded_max_gb=6 * 20 * 20 * 3 / 1e9 - 1e-12).train_set.decoded is None  # over the cap
    assert not list((tmp_path / "decoded").glob("decoded-*.npy"))
    assert module(root, decoded_max_gb=6 * 20 * 20 * 3 / 1e9).train_set.decoded.endswith(".npy")  # not remembered


def test_a_changed_folder_replaces_its_decoded_array_and_keeps_other_folders(tmp_path):
    def module(folder):
        return DistillDataModule({"teacher": 16, "student": 16}, unlabeled_dir=str(folder), batch_size=4,
                                 num_workers=0, decoded_cache=str(tmp_path / "decoded"))

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(tmp_path / name / f"{i}.png")
    first, other = module(tmp_path / "a").train_set.decoded, module(tmp_path / "b").train_set.decoded
    assert module(tmp_path / "a").train_set.decoded == first  # unchanged: reused

    Image.new("RGB", (20, 20), (0, 255, 0)).save(tmp_path / "a" / "0.png")  # edited (as a re-copy would)
    os.utime(tmp_path / "a" / "0.png", ns=(1, 1))  # (a new mtime even on a coarse-clock file system)
    again = module(tmp_path / "a").train_set
    assert again.decoded != first and again[0]["teacher"][1].float().mean() > 200  # the new pixels
    left = {p.name for p in (tmp_path / "decoded").iterdir()}
    stems = {os.path.basename(p).removesuffix(".npy") for p in (again.decoded, other)}
    assert left == {stem + suffix for stem in stems for suffix in (".npy", ".bad.json", ".sizes.json")}


def test_a_folder_reached_through_a_symlink_shares_its_decoded_array(tmp_path):
    """Two clones whose ../shared links to one data folder: the same files, one cache, not two."""
    (tmp_path / "data").mkdir()
    for i in range(4):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(tmp_path / "data" / f"{i}.png")
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    decoded = [DistillDataModule({"teacher": 16, "student": 16}, unlabeled_dir=str(tmp_path / folder), batch_size=4,
                                 num_workers=0, decoded_cache=str(tmp_path / "decoded")).train_set.decoded
               for folder in ("data", "link")]
    assert decoded[0] == decoded[1] and len(list((tmp_path / "decoded").glob("decoded-*.npy"))) == 1


# Mixup / cutmix (data.mix) through the DataModule: the same for every view of a sample.

def test_teacher_and_student_views_carry_the_same_mix(folders):
    """Each model's view is its own crop mixed with the partner's crop of the same view, with one lambda
    and one box, at each model's resolution; labels follow the mix."""
    dm = DistillDataModule({"teacher": 24, "student": 16}, train_dir=str(folders["train"]),
                           class_names=["ant", "bee", "cat"], batch_size=4, num_workers=0,
                           mix={"prob": 1.0, "switch_prob": 0.5})
    plain = DistillDataModule({"teacher": 24, "student": 16}, train_dir=str(folders["train"]),
                              class_names=["ant", "bee", "cat"], batch_size=4, num_workers=0)
    mix, n = dm.train_set.transform.mix, len(dm.train_set)
    seen = set()
    for index in range(n):
        partner, lam, box = mix.draw(n, 0, 3, index)
        seen.add(box is None)
        sample, own, other = dm.train_set[(index, 0, 3)], plain.train_set[(index, 0, 3)], plain.train_set[(partner, 0, 3)]
        for name in ("teacher", "student"):
            assert torch.equal(sample[name], MixViews.apply(own[name], other[name], lam, box))
        assert (sample["label"], sample["label_mixed"], sample["lam"]) == (own["label"], other["label"], lam)
    assert seen == {True, False}
    assert "mix" in dm.train_set.transform.policy() and "mix" not in plain.train_set.transform.policy()
    assert dm.val_set is None or dm.val_set.transform.mix is None


def photo(path, w: int = 1600, h: int = 1200, exif_orientation: int | None = None):
    """A smooth-with-detail JPEG of a phone photo's size."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 255, y / h * 255, 128 + 60 * np.sin(x / 37) * np.cos(y / 23)], -1)
    pil = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        pil.save(path, quality=92, exif=exif)
    else:
        pil.save(path, quality=92)
    return path


def test_jpeg_is_decoded_at_the_working_size(tmp_path):
    path = photo(tmp_path / "p.jpg")
    assert load_rgb(path, lambda w, h: (w // 8, h // 8)).size == (200, 150)  # DCT-domain 1/8
    assert load_rgb(path, lambda w, h: (w // 3, h // 3)).size == (800, 600)  # the smallest scale that covers
    assert load_rgb(path, lambda w, h: None).size == (1600, 1200)


@pytest.mark.parametrize("orientation", [None, 6])
def test_crops_from_the_working_size_match_the_full_decode(tmp_path, orientation):
    """The crop is drawn on the source's pixel grid and scaled to the decoded size: the same crop as from
    the full decode, within 2 grey levels on average (DCT-domain scaling against an antialiased resize;
    measured 0.2-1.1, at most 9 on single pixels)."""
    path = photo(tmp_path / "p.jpg", exif_orientation=orientation)
    views = CropViews({"teacher": 160, "student": 96}, train=True, scale=(0.2, 1.0))
    full = load_rgb(path)
    assert full.size == ((1200, 1600) if orientation else (1600, 1200))
    sizes = []
    for seed in range(6):
        fast = views.load(path, random.Random(seed))
        slow = views(full, random.Random(seed))
        for name in ("teacher", "student"):
            diff = (fast[name].float() - slow[name].float()).abs()
            assert fast[name].shape == slow[name].shape and diff.mean() < 2.0, (seed, name, diff.mean())
        box, _ = views.plan(*full.size, random.Random(seed))
        sizes.append(views.working_size(*full.size, box))
    assert any(s is not None for s in sizes)  # some crops were decoded smaller
