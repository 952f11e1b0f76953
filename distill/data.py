"""Image folders -> batches of views for teacher and student (the views themselves: `views.py`).

Batches are uint8; each model normalises with its own mean/std on the device, which keeps
worker->main-process traffic 4x smaller than float tensors.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
import random
from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.utilities import rank_zero_only
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from .arrays import NpyRows, RaggedPixels, decode_to_cache, render_views
from .cache import Ranks, SoftTargets, expand_topk
from .folders import (existing_dir, label_subset, labeled_files, record_skipped, report_skipped,
                      scan_images)
from .runtime import loader_worker_init
from .views import CropViews, MixViews
from . import streaming

log = logging.getLogger(__name__)


class ImageFiles(Dataset):
    """Files (with labels, or -1 for unlabeled) -> {view name: uint8 3xSxS, "label": int}.

    Pixel data is decoded lazily: a file whose header passed the scan but whose data is truncated or
    corrupt is recorded in `skipped_log` and replaced by the next image, so a run never dies on it."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int] | None, transform: CropViews,
                 skipped_log: Path | None = None, soft_targets: dict | None = None, decoded: str | None = None):
        self.files, self.transform, self.skipped_log = list(files), transform, skipped_log
        # Optional decoded-image cache (`arrays.decode_to_cache`): N x H x W x 3 uint8 on disk, read by row,
        # or (.bin) images of many sizes at the working resolution, read by `RaggedPixels`.
        self.decoded, self._pixels = decoded, None
        # Optional pre-rendered views (`arrays.render_views`): K x N x S x S x 3 uint8, the crops themselves.
        self.rendered, self._rendered = None, None
        self.labels = list(labels) if labels is not None else [-1] * len(self.files)
        self.bad: set[int] = set()  # per worker process
        # Cached teacher logits ({"path", "views"}, see distill.cache): epoch e uses view e mod K.
        self.soft_targets, self._logits, self._classes = soft_targets, None, None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        # (index, seed, epoch) from EpochSampler: the crop depends on nothing else, so runs are
        # reproducible whatever the worker count, and a resumed run sees the same crops.
        index, seed, epoch = key if isinstance(key, tuple) else (key, 0, 0)
        view = epoch % self.soft_targets["views"] if self.soft_targets else epoch
        sample = self._view(index, seed, view)
        if (mix := self.transform.mix) is None:
            return sample
        drawn = mix.draw(len(self), seed, view, index)
        if drawn is None:
            return {**sample, "label_mixed": sample["label"], "lam": 1.0}
        partner, lam, box = drawn
        if self.rendered:  # the rendered crops are the mixed ones already
            return {**sample, "label_mixed": self.labels[partner], "lam": lam}
        other = self._view(partner, seed, view, logits=False)
        for name in self.transform.sizes:
            sample[name] = mix.apply(sample[name], other[name], lam, box)
        return {**sample, "label_mixed": other["label"], "lam": lam}

    def _view(self, index: int, seed: int, view: int, logits: bool = True) -> dict:
        """One image's views (no mixing); an undecodable image is replaced by the next one, with the crop
        drawn for `index` (a fresh rng each try: a failed decode may have drawn from it)."""
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            if i in self.bad:
                continue
            rng = random.Random(f"{seed}-{view}-{index}")
            if self.rendered:
                (name,) = self.transform.sizes
                crop = self._rows("_rendered", self.rendered).read([view], [index])[0]
                views = {name: torch.from_numpy(crop).permute(2, 0, 1)}
            elif self.decoded and self.decoded.endswith((".bin", streaming.SUFFIX)):  # at the working resolution
                reader = RaggedPixels if self.decoded.endswith(".bin") else streaming.StreamedPixels
                pixels, source = self._rows("_pixels", self.decoded, reader).read(i)
                if not pixels.size:  # litdata stores an undecodable image empty
                    self._skip(i, "stored empty in " + self.decoded)
                    continue
                img = torch.from_numpy(pixels).permute(2, 0, 1)  # 3,H,W
                views = self.transform(img, rng, plan=self.transform.plan(*source, rng), source_size=source)
            elif self.decoded:
                img = torch.from_numpy(self._rows("_pixels", self.decoded).read([i])[0]).permute(2, 0, 1)  # 3,H,W
                views = self.transform(img, rng)
            else:
                try:
                    views = self.transform.load(self.files[i], rng)
                except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # corrupt pixels
                    self._skip(i, err)
                    continue
            sample = {**views, "label": self.labels[i], "index": index, "view": view}
            if self.soft_targets and logits:
                sample["teacher_logits"] = self._cached_logits([view], [index])[0]
            return sample
        raise RuntimeError("no image in this dataset can be decoded")

    def _skip(self, i: int, why) -> None:
        self.bad.add(i)
        log.warning("skipping undecodable image %s (%s)", self.files[i], why)
        record_skipped(self.skipped_log, "undecodable", [str(self.files[i])])

    def _cached_logits(self, view, index) -> torch.Tensor:
        """B x C teacher logits of the soft-target cache's rows (view, index), top-k rows expanded; with
        `view_mean` w, moved by w toward each image's mean over all its K views (`cache.SoftTargets`)."""
        if not (weight := self.soft_targets.get("view_mean", 0)):
            return torch.from_numpy(self._read_logits(view, index))
        views, index = self.soft_targets["views"], np.asarray(index)
        every = self._read_logits(np.repeat(np.arange(views), len(index)), np.tile(index, views))
        every = every.reshape(views, len(index), -1)  # K,B,C: each image's rows read once, its own view among them
        own = every[np.asarray(view), np.arange(len(index))]
        return torch.from_numpy((1 - weight) * own + weight * every.mean(0))

    def _read_logits(self, view, index) -> np.ndarray:
        values = self._rows("_logits", self.soft_targets["path"]).read(view, index)
        if "classes" in self.soft_targets:
            classes = self._rows("_classes", self.soft_targets["classes"]).read(view, index)
            values = expand_topk(values, classes, self.soft_targets["num_classes"])
        return values.astype(np.float32)

    def _rows(self, attr: str, path: str, reader: type = NpyRows):
        """An array file opened on first use in each process (workers get the dataset before it is opened)."""
        if getattr(self, attr) is None:
            setattr(self, attr, reader(path))
        return getattr(self, attr)

    def __getitems__(self, keys: list) -> dict | list[dict]:
        """A whole batch. From pre-rendered views it is read straight into one B x S x S x 3 array
        (channels-last as it lands); otherwise one sample at a time."""
        if not self.rendered or self.bad:  # (a bad image's stand-in needs the per-sample path's label)
            return [self[k] for k in keys]
        index = np.array([k[0] for k in keys])
        view = np.array([k[2] for k in keys]) % self.soft_targets["views"]
        (name,) = self.transform.sizes
        batch = {name: torch.from_numpy(self._rows("_rendered", self.rendered).read(view, index)).permute(0, 3, 1, 2),
                 "label": torch.tensor([self.labels[i] for i in index]), "index": torch.from_numpy(index),
                 "view": torch.from_numpy(view)}
        batch["teacher_logits"] = self._cached_logits(view, index)
        if mix := self.transform.mix:
            seed = keys[0][1]
            drawn = [mix.draw(len(self), seed, int(k), int(i)) for k, i in zip(view, index)]
            batch["label_mixed"] = torch.tensor([self.labels[d[0]] if d else self.labels[i]
                                                 for d, i in zip(drawn, index)])
            batch["lam"] = torch.tensor([d[1] if d else 1.0 for d in drawn], dtype=torch.float64)
        return batch


class EpochSampler(Sampler):
    """Shuffles by (seed, epoch) and yields (index, seed, epoch), so each sample's augmentation is a pure
    function of those three numbers. Lightning calls `set_epoch` at every epoch.

    Under DDP (Lightning's `use_distributed_sampler=False`, see conf/trainer/ddp.yaml) rank r of w takes
    positions r, r+w, ... of the shared order, so w ranks with batch b see exactly the samples of one
    process with batch w*b. Training shards are padded to equal length (ranks must take the same number
    of steps); evaluation shards are not, so metrics count every image exactly once."""

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, samples: int) -> None:
        """Start `epoch`'s pass after its first `samples` positions (once): a run continued from a mid-epoch
        checkpoint then sees exactly the samples an uninterrupted run would have."""
        self._resume = (epoch, samples)

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _positions(self) -> range:
        rank, world = self._rank_world()
        total = math.ceil(self.size / world) * world if self.shuffle else self.size
        return range(rank, total, world)

    def __len__(self) -> int:
        return len(self._positions())

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)) \
            if self.shuffle else torch.arange(self.size)
        positions = self._positions()
        if self._resume is not None and self._resume[0] == self.epoch:
            positions = positions[self._resume[1]:]
        self._resume = None
        return iter([(int(order[p % self.size]), self.seed, self.epoch) for p in positions])


def _collate(batch: dict | list[dict]) -> dict:
    return batch if isinstance(batch, dict) else default_collate(batch)  # dict: batched by __getitems__


def default_num_workers() -> int:
    # Workers share the cores with the training step: one decoder per two cores leaves the rest to compute.
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class DistillDataModule(pl.LightningDataModule):
    """Unlabeled (or labeled) training images and an optional labeled validation folder.

    Args:
        image_sizes: view name -> resolution, e.g. {"teacher": 224, "student": 128} (set by train.py).
        unlabeled_dir: any folder tree of images; labels are never read from it.
        train_dir: a labeled ImageFolder tree; used instead of `unlabeled_dir` when given (teacher
            training, or the hard-label term / label-only baseline).
        label_fraction: use only this fraction of each class of `train_dir` (the label-budget case).
        keep_unlabeled: with `label_fraction` < 1, keep the images outside the budget as unlabeled (label -1:
            the teacher's targets without the hard-label term) instead of dropping them.
        val_dir: a labeled ImageFolder tree for accuracy; folder names must be the teacher's classes.
        class_names: the teacher's classes, in output order (None: folders map by sorted order).
        num_classes: the teacher's output count, to check folders against when it has no class names.
        batch_size, num_workers (None: one per two cores), train_scale (random-resized-crop area range),
        hflip, eval_crop_pct: the usual.
        train_pad, train_augment: pad-and-crop instead of random-resized crops, and a timm RandAugment
            string (see `CropViews`).
        mix: `MixViews` arguments (prob, mixup_alpha, cutmix_alpha, switch_prob): mixup / cutmix of the
            training images, the same for teacher and student (and in the soft-target cache).
        soft_targets: where the teacher's outputs come from (`cache.SoftTargets`, set by train.py): with it,
            the validation split (and in cached mode the training split) carries the teacher's logits
            from disk and the student's view alone; None (teacher training) serves the views as they are.
        teacher_in_training: False for label-only training: training batches carry the student's view
            alone, and the teacher never sees a training image.
        skipped_log: where every skipped file is listed with its reason (skipped_files.tsv in the run dir).
        seed: shuffling and augmentation seed (see `EpochSampler`).
        decoded_cache: a folder for decoded uint8 copies of the images (`arrays.decode_to_cache`: at the
            working resolution, the short side that still covers every crop at the largest model
            resolution), so decoding is paid once, up to `decoded_max_gb` on disk; None decodes every epoch. With
            cached soft targets the student's K training views are rendered there too (`arrays.render_views`),
            up to `rendered_max_gb`.
        streaming_dir: instead of `decoded_cache`, a folder on a disk every process can read (a cluster's
            shared file system) or a bucket (s3://, gs://, r2://) for the images at working resolution as
            litdata chunks, written once (`streaming.optimize_to_litdata`; needs `pip install litdata`) and
            read by index by every rank.
        scan_index: a folder for the folders' scan indexes (`folders.scan_images`): a later run of an
            unchanged folder opens no image header; None scans from the headers every run.
    """

    def __init__(self, image_sizes: dict[str, int], unlabeled_dir: str | None = None, train_dir: str | None = None,
                 val_dir: str | None = None, label_fraction: float = 1.0, keep_unlabeled: bool = False,
                 class_names: Sequence[str] | None = None,
                 num_classes: int | None = None, batch_size: int = 64,
                 num_workers: int | None = None, train_scale: Sequence[float] = (0.35, 1.0), hflip: bool = True,
                 train_pad: int = 0, train_augment: str | None = None,
                 eval_crop_pct: float = 1.0, pin_memory: bool = False, skipped_log: str | None = None,
                 seed: int = 0, decoded_cache: str | None = None, decoded_max_gb: float = 4.0,
                 rendered_max_gb: float = 4.0, mix: dict | None = None, soft_targets: SoftTargets | None = None,
                 teacher_in_training: bool = True, scan_index: str | None = None, streaming_dir: str | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be a positive integer")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"data.num_workers={num_workers} must be >= 0 (or null for the default)")
        self.image_sizes = dict(image_sizes)
        self.unlabeled_dir, self.train_dir, self.val_dir = unlabeled_dir, train_dir, val_dir
        if keep_unlabeled and not teacher_in_training and label_fraction < 1:
            raise ValueError("data.keep_unlabeled=true with distill.soft_weight=0: the unlabeled images would "
                             "teach nothing; use supervision=both, or keep_unlabeled=false for the label-only twin")
        self.label_fraction, self.keep_unlabeled = label_fraction, keep_unlabeled
        self.class_names = list(class_names) if class_names is not None else None
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.workers_auto = num_workers is None
        self.train_scale, self.hflip, self.eval_crop_pct, self.pin_memory = train_scale, hflip, eval_crop_pct, pin_memory
        if train_pad < 0:
            raise ValueError(f"data.train_pad={train_pad} must be >= 0 (0: random-resized crops)")
        self.train_pad, self.train_augment = train_pad, train_augment
        self.mix = MixViews(**(mix or {}))
        if soft_targets is not None and soft_targets.view_mean and self.mix.prob:
            raise ValueError("soft_targets.view_mean with data.mix: an image's K views are mixed with K different "
                             "partners, so their mean is no target for one of them; turn one off")
        self._resume: dict | None = None  # set from a mid-epoch checkpoint (load_state_dict)
        self.skipped_log = Path(skipped_log) if skipped_log and rank_zero_only.rank == 0 else None
        if streaming_dir and importlib.util.find_spec("litdata") is None:
            raise ValueError("data.streaming_dir needs litdata: pip install litdata (or mobiledistill[streaming])")
        self.seed, self.decoded_cache, self.scan_index, self.streaming_dir = seed, decoded_cache, scan_index, streaming_dir
        self.decoded_max_gb, self.rendered_max_gb = decoded_max_gb, rendered_max_gb
        self.soft_targets, self.teacher_in_training = soft_targets, teacher_in_training
        self.soft_target_reports: dict[str, dict] = {}  # split -> `build_soft_targets`'s report
        self._served: dict[str, ImageFiles] = {}
        if self.skipped_log is not None and self.skipped_log.exists():
            self.skipped_log.unlink()  # a resumed run re-scans; don't count its files twice
        self.train_set, self.val_set = self._build_sets()

    def _build_sets(self) -> tuple[ImageFiles, ImageFiles | None]:
        # Built (and checked) at construction so a bad folder fails before any model work starts.
        train_views = self._views(self.image_sizes, train=True)
        if self.train_dir:
            files, labels, _ = labeled_files(self.train_dir, self.class_names, "data.train_dir", self.num_classes,
                                             self.skipped_log, self.scan_index)
            kept, kept_labels = label_subset(files, labels, self.label_fraction)
            if self.keep_unlabeled:
                budget = dict(zip(kept, kept_labels))
                labels = [budget.get(f, -1) for f in files]
            else:
                files, labels = kept, kept_labels
            source = self.train_dir
        elif self.unlabeled_dir:
            scan = scan_images(existing_dir(self.unlabeled_dir, "data.unlabeled_dir"), self.scan_index)
            log.info("unlabeled %s", scan.summary())
            report_skipped(scan.skipped, "data.unlabeled_dir", self.skipped_log)
            files, labels, source = scan.files, None, self.unlabeled_dir
        else:
            raise ValueError("no training images: set data.unlabeled_dir (or data.train_dir for labeled images)")
        if not files:
            raise ValueError(f"no usable images under {source}")
        train_set = self._with_decoded(ImageFiles(files, labels, train_views, self.skipped_log))
        val_set = None
        if self.val_dir:
            files, labels, _ = labeled_files(self.val_dir, self.class_names, "data.val_dir", self.num_classes,
                                             self.skipped_log, self.scan_index)
            if not files:
                raise ValueError(f"no usable images under data.val_dir={self.val_dir}")
            val_set = self._with_decoded(ImageFiles(
                files, labels, self._views(self.image_sizes, train=False), self.skipped_log))
        return train_set, val_set

    def _with_decoded(self, dataset: ImageFiles) -> ImageFiles:
        if self.streaming_dir:
            dataset.decoded = streaming.optimize_to_litdata(dataset.files, self.streaming_dir,
                                                            dataset.transform.cover_short_side(), self.num_workers)
        elif self.decoded_cache:
            dataset.decoded, bad = decode_to_cache(dataset.files, Path(self.decoded_cache), self.decoded_max_gb * 1e9,
                                                   dataset.transform.cover_short_side())
            dataset.bad.update(bad)
            record_skipped(self.skipped_log, "undecodable", [str(dataset.files[i]) for i in bad])
        return dataset

    def _like(self, dataset: ImageFiles, views: CropViews, soft_targets: dict | None = None) -> ImageFiles:
        """The same images (and decoded cache) as `dataset`, with other views."""
        twin = ImageFiles(dataset.files, dataset.labels, views, self.skipped_log, soft_targets, dataset.decoded)
        twin.bad = set(dataset.bad)
        return twin

    def teacher_set(self, split: str) -> tuple[ImageFiles, dict]:
        """The split's images with the teacher's view only, and the view policy that defines its crops
        (what the soft-target cache is computed over, and keyed by)."""
        dataset = self.train_set if split == "train" else self.val_set
        views = self._views({"teacher": self.image_sizes["teacher"]}, train=split == "train")
        return self._like(dataset, views), dict(split=split, seed=self.seed, **views.policy())

    def served(self, split: str) -> ImageFiles:
        """The split as its loader reads it, built on first use (inside `trainer.fit`, so a cache is filled
        with the teacher already on the run's device): with the teacher's view (online), with the teacher's
        cached logits and the student's view, or (label-only training) with the student's view alone."""
        if split not in self._served:
            dataset = self.train_set if split == "train" else self.val_set
            if split == "train" and not self.teacher_in_training:
                self._served[split] = self._like(dataset, self._views({"student": self.image_sizes["student"]}, True))
            elif self.soft_targets is not None and self.soft_targets.cached(split):
                teacher_set, policy = self.teacher_set(split)
                report = self.soft_targets.build(split, teacher_set, policy, self.seed, 2 * self.batch_size,
                                                 self.num_workers, self._ranks())
                self.soft_target_reports[split] = report
                self._served[split] = self._student_view_with_logits(split, report)
            else:
                self._served[split] = dataset
        return self._served[split]

    def _ranks(self) -> Ranks:
        """Under DDP every rank computes its share of a soft-target cache (each rank asks for its loaders)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return Ranks()
        return Ranks(trainer.global_rank, trainer.world_size, trainer.strategy.barrier)

    def _student_view_with_logits(self, split: str, report: dict) -> ImageFiles:
        """The split with the student's view and the cached logits; in training, the student's K views are
        rendered to disk once when they fit `rendered_max_gb`, so the crop is not redone every epoch."""
        dataset, train = (self.train_set, True) if split == "train" else (self.val_set, False)
        views = self._views({"student": self.image_sizes["student"]}, train)
        cached = self._like(dataset, views, report)
        if train and cached.decoded:
            size = report["views"] * len(cached) * 3 * self.image_sizes["student"] ** 2
            if size <= self.rendered_max_gb * 1e9:
                policy = {**views.policy(), "seed": self.seed, "views": report["views"], "bad": sorted(dataset.bad)}
                cached.rendered = render_views(self._like(dataset, views), ("student", self.image_sizes["student"]),
                                               policy, report["views"], self.seed, Path(self.decoded_cache),
                                               4 * self.batch_size, self.num_workers)
            else:
                log.info("not rendering the student's views: %.1f GB > data.rendered_max_gb", size / 1e9)
        return cached

    def _views(self, sizes: dict[str, int], train: bool) -> CropViews:
        return CropViews(sizes, train=train, scale=self.train_scale, hflip=self.hflip, crop_pct=self.eval_crop_pct,
                         pad=self.train_pad, augment=self.train_augment, mix=self.mix)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        sampler = EpochSampler(len(dataset), self.seed, shuffle)
        # Rendered views take a millisecond a batch: a worker process would cost more (it competes with
        # the step for the cores) than it saves, so the default loads them in the main process.
        workers = 0 if dataset.rendered and self.workers_auto else self.num_workers
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=self.pin_memory, persistent_workers=workers > 0, collate_fn=_collate,
                          worker_init_fn=loader_worker_init,
                          drop_last=shuffle and len(dataset) > self.batch_size)

    def state_dict(self) -> dict:
        """Saved in every checkpoint: how far the current epoch had got (at the end of an epoch, all of it)."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return {}
        return {"epoch": trainer.current_epoch,
                "batches_done": trainer.global_step - trainer.current_epoch * trainer.num_training_batches}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state or None

    def train_dataloader(self) -> DataLoader:
        loader = self._loader(self.served("train"), shuffle=True)
        if resume := self._resume:
            # Continued from a mid-epoch checkpoint: skip what that epoch already trained on (the order is a
            # function of (seed, epoch)), so the run sees exactly the batches an uninterrupted one would.
            loader.sampler.resume(resume["epoch"], resume["batches_done"] * self.batch_size)
            if 0 < resume["batches_done"] < len(loader):
                log.info("continuing epoch %d after its first %d batches", resume["epoch"], resume["batches_done"])
            self._resume = None
        return loader

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.served("val"), shuffle=False) if self.val_set is not None else []
