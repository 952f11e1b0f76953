"""Views (distill/views.py): one crop for every model's view, and mixup / cutmix drawn per (seed, view,
index)."""
from __future__ import annotations

import random

import pytest
import torch

from distill.views import CropViews, MixViews


def ramp(w: int = 40, h: int = 30) -> torch.Tensor:
    """A smooth 3xHxW uint8 image: every crop of it differs from every other."""
    x = torch.linspace(0, 255, w).expand(h, w)
    y = torch.linspace(0, 255, h)[:, None].expand(h, w)
    return torch.stack([x, y, 255 - x]).to(torch.uint8)


def test_one_crop_feeds_both_views():
    rng = random.Random(0)
    views = CropViews({"teacher": 32, "student": 16}, train=True, scale=(0.3, 0.6))
    for _ in range(5):
        out = views(ramp(80, 60), rng)
        assert out["teacher"].shape == (3, 32, 32) and out["student"].shape == (3, 16, 16)
        # The student view is the teacher's crop at half the resolution, not an independent crop.
        down = torch.nn.functional.avg_pool2d(out["teacher"].float()[None], 2)[0]
        assert (down - out["student"].float()).abs().mean() < 6


def test_eval_crop_is_centred_and_deterministic():
    views = CropViews({"teacher": 20, "student": 20}, train=False)
    a, b = views(ramp()), views(ramp())
    assert torch.equal(a["teacher"], b["teacher"]) and a["teacher"] is a["student"]


# Mixup / cutmix (data.mix): drawn per (seed, view, index), the same for every view of a sample.

def test_mix_draws_are_a_function_of_seed_view_index():
    mix = MixViews(prob=0.5)
    draws = [mix.draw(400, 0, 1, i) for i in range(400)]
    assert draws == [mix.draw(400, 0, 1, i) for i in range(400)]  # reproducible
    assert draws != [mix.draw(400, 0, 2, i) for i in range(400)]  # another view, other draws
    mixed = [d for d in draws if d]
    assert 0.4 < len(mixed) / len(draws) < 0.6
    assert all(d is None or d[0] != i for i, d in enumerate(draws))  # never its own partner
    kinds = {d[2] is None for d in mixed}
    assert kinds == {True, False}  # both mixup and cutmix, switch_prob 0.5
    assert all(0 <= lam <= 1 for _, lam, _ in mixed)


def test_cutmix_lambda_is_the_share_of_own_pixels():
    mix = MixViews(prob=1.0, mixup_alpha=0.0)
    own, other = torch.zeros(3, 64, 64, dtype=torch.uint8), torch.full((3, 64, 64), 255, dtype=torch.uint8)
    for i in range(20):
        _, lam, box = mix.draw(10, 0, 0, i)
        out = mix.apply(own, other, lam, box)
        assert (out == 0).float().mean().item() == pytest.approx(lam, abs=2 / 64 + 1e-6)  # to a pixel row


def test_mixup_blends_by_lambda():
    own, other = torch.full((3, 8, 8), 100, dtype=torch.uint8), torch.full((3, 8, 8), 200, dtype=torch.uint8)
    assert torch.equal(MixViews.apply(own, other, 0.25, None), torch.full((3, 8, 8), 175, dtype=torch.uint8))


def test_bad_mix_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="data.mix"):
        MixViews(prob=1.5)
    with pytest.raises(ValueError, match="not both 0"):
        MixViews(prob=0.5, mixup_alpha=0, cutmix_alpha=0)
