"""Views of one image for teacher and student: one crop box (and flip, and augmentation) drawn per
image and resized to each model's resolution, and consistent mixup / cutmix of two images' views.

Every draw is a pure function of (seed, view, index), so the soft-target cache can hold the teacher's
output for exactly the view the student sees.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from timm.data.auto_augment import rand_augment_transform

from .folders import load_rgb


class MixViews:
    """Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of two images' views, drawn as a pure function
    of (seed, view, index) like the crops: the partner image, lambda and the box are the same for the
    teacher's and the student's view of a sample (each at its own resolution), so in cached mode the
    soft-target cache holds the teacher's output for exactly the mixed image the student sees (the
    "consistent" views of Beyer et al. 2022, "Knowledge distillation: a good teacher is patient and
    consistent").

    Args:
        prob: probability that a training sample is mixed (0: never).
        mixup_alpha, cutmix_alpha: Beta(alpha, alpha) for lambda; 0 turns that kind off.
        switch_prob: with both on, the probability of CutMix rather than Mixup.
    """

    def __init__(self, prob: float = 0.0, mixup_alpha: float = 1.0, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5):
        if not 0 <= prob <= 1 or not 0 <= switch_prob <= 1:
            raise ValueError(f"data.mix: prob={prob} and switch_prob={switch_prob} must lie in [0, 1]")
        if mixup_alpha < 0 or cutmix_alpha < 0 or (prob and not mixup_alpha and not cutmix_alpha):
            raise ValueError(f"data.mix: mixup_alpha={mixup_alpha} and cutmix_alpha={cutmix_alpha} must be >= 0, "
                             f"and not both 0 when prob > 0")
        self.prob, self.mixup_alpha, self.cutmix_alpha, self.switch_prob = prob, mixup_alpha, cutmix_alpha, switch_prob

    def policy(self) -> dict:
        return {"prob": self.prob, "mixup_alpha": self.mixup_alpha, "cutmix_alpha": self.cutmix_alpha,
                "switch_prob": self.switch_prob}

    def draw(self, images: int, seed: int, view: int, index: int) -> tuple[int, float, tuple | None] | None:
        """(partner, lambda, box) for this sample, or None when it is not mixed. The box (top, left,
        bottom, right) is in fractions of the side; lambda is the share of this sample's own pixels."""
        rng = random.Random(f"mix-{seed}-{view}-{index}")
        if images < 2 or rng.random() >= self.prob:
            return None
        partner = rng.randrange(images - 1)
        partner += partner >= index  # never the image itself
        cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < self.switch_prob)
        lam = rng.betavariate(*(2 * [self.cutmix_alpha if cutmix else self.mixup_alpha]))
        if not cutmix:
            return partner, lam, None
        cut = math.sqrt(1 - lam)  # the pasted box's side, as a fraction: its area is 1 - lam
        cy, cx = rng.random(), rng.random()
        box = (max(cy - cut / 2, 0), max(cx - cut / 2, 0), min(cy + cut / 2, 1), min(cx + cut / 2, 1))
        return partner, 1 - (box[2] - box[0]) * (box[3] - box[1]), box  # lambda of the clipped box

    @staticmethod
    def apply(own: torch.Tensor, other: torch.Tensor, lam: float, box: tuple | None) -> torch.Tensor:
        """Mix two uint8 3xSxS views of one resolution."""
        if box is None:
            return (own.float() * lam + other.float() * (1 - lam)).round_().to(torch.uint8)
        size = own.shape[-1]
        top, left, bottom, right = (round(v * size) for v in box)
        mixed = own.clone()
        mixed[:, top:bottom, left:right] = other[:, top:bottom, left:right]
        return mixed


class CropViews:
    """Draw one crop box per image (random-resized + flip in training, centred otherwise) and resize it
    to every requested view size, e.g. {"teacher": 224, "student": 128}.

    Args:
        sizes: view name -> output resolution.
        train: random crops, flips and `augment`; otherwise the centred `crop_pct` crop.
        scale, ratio: the random-resized crop's area and aspect ranges (torchvision's rule).
        hflip: random horizontal flips in training.
        crop_pct: the centred crop's side as a fraction of the short side (evaluation).
        pad: instead of a random-resized crop, the whole image shifted by up to `pad` pixels each way, the
            uncovered border zero (the pad-and-crop policy small images such as CIFAR's want: torchvision's
            crop zero-fills a box that leaves the image).
        augment: a timm RandAugment string (e.g. "rand-m9-mstd0.5") applied to the crop before it is
            resized, so every view sees the same operations.
        mix: mixup / cutmix with another image of the dataset (training only; `ImageFiles` applies it).
    """

    def __init__(self, sizes: dict[str, int], train: bool, scale: Sequence[float] = (0.35, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: bool = True, crop_pct: float = 1.0,
                 pad: int = 0, augment: str | None = None, mix: MixViews | None = None):
        self.sizes, self.train, self.scale, self.ratio = sizes, train, tuple(scale), tuple(ratio)
        self.hflip, self.crop_pct, self.pad, self.augment = hflip, crop_pct, pad, augment
        self.mix = mix if train and mix is not None and mix.prob > 0 else None
        self._augment = None
        if augment and train:
            try:
                self._augment = rand_augment_transform(augment, {})
            except (AssertionError, ValueError, KeyError) as err:
                raise ValueError(f"data.train_augment={augment!r} is not a timm RandAugment string "
                                 f"(e.g. rand-m9-mstd0.5): {err}") from err

    def policy(self) -> dict:
        """Everything that decides the crops besides (seed, view, image): the key of caches built from them."""
        return {"sizes": self.sizes, "train": self.train, "crop_pct": self.crop_pct,
                **({"scale": list(self.scale), "ratio": list(self.ratio), "hflip": self.hflip,
                    "pad": self.pad, "augment": self.augment} if self.train else {}),
                **({"mix": self.mix.policy()} if self.mix else {})}

    def box(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop; with `pad`, it may reach past the image's edges."""
        if not self.train:
            side = max(1, round(self.crop_pct * min(width, height)))
            return (height - side) // 2, (width - side) // 2, side, side
        if self.pad:
            return rng.randint(-self.pad, self.pad), rng.randint(-self.pad, self.pad), height, width
        area = width * height
        for _ in range(10):  # torchvision's RandomResizedCrop rule
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        side = min(width, height)
        return (height - side) // 2, (width - side) // 2, side, side

    def plan(self, width: int, height: int, rng: random.Random) -> tuple[tuple[int, int, int, int], bool]:
        """The crop box (in the source image's pixels) and the flip: everything drawn from `rng` but the
        augmentation."""
        box = self.box(width, height, rng)
        return box, self.train and self.hflip and rng.random() < 0.5

    def cover_short_side(self) -> int:
        """The short side at which every crop this policy draws still covers the largest view: a random
        crop's short side is at least sqrt(scale[0] * min(ratio[0], 1 / ratio[1])) of the image's."""
        largest = max(self.sizes.values())
        if not self.train:
            return math.ceil(largest / self.crop_pct)
        if self.pad:
            return largest
        return math.ceil(largest / math.sqrt(self.scale[0] * min(self.ratio[0], 1 / self.ratio[1])))

    def working_size(self, width: int, height: int, box: tuple[int, int, int, int]) -> tuple[int, int] | None:
        """The smallest (width, height) at which the whole image can be decoded and `box` still covers the
        largest view size (None: the source size is needed)."""
        factor = min(box[2], box[3]) / max(self.sizes.values())
        return None if factor < 2 else (math.ceil(width / factor), math.ceil(height / factor))

    def load(self, path: Path, rng: random.Random) -> dict[str, torch.Tensor]:
        """The views of an image file, decoded at the working size (JPEG: `folders.load_rgb`); the crop is
        drawn on the source's pixel grid, so it is the same crop as from the full decode."""
        drawn = {}

        def need(width: int, height: int) -> tuple[int, int] | None:
            drawn["size"], drawn["plan"] = (width, height), self.plan(width, height, rng)
            return self.working_size(width, height, drawn["plan"][0])

        img = load_rgb(path, need)
        return self(img, rng, plan=drawn["plan"], source_size=drawn["size"])

    def __call__(self, img: Image.Image | torch.Tensor, rng: random.Random | None = None,
                 plan: tuple | None = None, source_size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        rng = rng or random.Random()
        pixels = img if isinstance(img, torch.Tensor) else TF.pil_to_tensor(img)  # 3,H,W uint8
        (top, left, h, w), flip = plan or self.plan(pixels.shape[-1], pixels.shape[-2], rng)
        if source_size and source_size != (pixels.shape[-1], pixels.shape[-2]):  # decoded smaller: scale the box
            sx, sy = pixels.shape[-1] / source_size[0], pixels.shape[-2] / source_size[1]
            top, left, h, w = round(top * sy), round(left * sx), max(1, round(h * sy)), max(1, round(w * sx))
        if self._augment:  # crop at the source's resolution, augment it once, then resize it per view
            pixels = TF.crop(pixels, top, left, h, w)
            pixels, top, left = TF.pil_to_tensor(seeded(self._augment, TF.to_pil_image(pixels), rng)), 0, 0
        views, by_size = {}, {}
        for name, size in self.sizes.items():
            if size not in by_size:
                view = TF.resized_crop(pixels, top, left, h, w, [size, size], antialias=True)
                by_size[size] = TF.horizontal_flip(view) if flip else view
            views[name] = by_size[size]
        return views


def seeded(transform, img: Image.Image, rng: random.Random) -> Image.Image:
    """`transform(img)` for transforms that draw from the global `random` and `np.random` (timm's
    RandAugment), made a function of `rng`'s next draw; the global states are left as they were."""
    state, np_state = random.getstate(), np.random.get_state()
    random.seed(rng.getrandbits(64))
    np.random.seed(rng.getrandbits(32))
    try:
        return transform(img)
    finally:
        random.setstate(state)
        np.random.set_state(np_state)
