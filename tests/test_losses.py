import math

import pytest
import torch
import torch.nn.functional as F

from distill.losses import LOSSES, distillation_loss, hard_label_loss, soft_target_loss


def reference_kd(s: torch.Tensor, t: torch.Tensor, T: float) -> float:
    """The formula written out: T^2 * mean_b sum_c p_t log(p_t / p_s), p = softmax(z / T)."""
    total = 0.0
    for sb, tb in zip(s.tolist(), t.tolist()):
        zs = [math.exp(v / T) for v in sb]
        zt = [math.exp(v / T) for v in tb]
        ps = [v / sum(zs) for v in zs]
        pt = [v / sum(zt) for v in zt]
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    return T * T * total / len(s)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 10.0])
def test_soft_target_loss_matches_formula(T):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g) * 3, torch.randn(5, 7, generator=g) * 3
    assert soft_target_loss(s, t, T).item() == pytest.approx(reference_kd(s, t, T), rel=1e-5)


def test_golden_value():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 2.0, 1.0]])
    # By hand, T=2: p_t = softmax([1.5, 1, .5]) = [.5065, .3072, .1863], p_s the reverse; the log-ratios
    # are +1, 0, -1, so KL = .5065 - .1863 = .3202, and T^2 * KL = 1.2806.
    assert soft_target_loss(s, t, 2.0).item() == pytest.approx(1.2806, abs=1e-4)


def test_t_squared_keeps_gradient_scale():
    """Gradients of the bare KL shrink ~1/T^2; with T^2 applied their scale stays put at high T."""
    g = torch.Generator().manual_seed(1)
    t = torch.randn(64, 10, generator=g)
    norms = {}
    for T in (4.0, 8.0):
        s = torch.randn(64, 10, generator=torch.Generator().manual_seed(2)).requires_grad_()
        soft_target_loss(s, t, T).backward()
        norms[T] = s.grad.norm().item()
    # d/ds [T^2 KL] = T (p_s - p_t); at high T, p_s - p_t ~ (s - t) / (C T), so the norm is ~constant.
    assert norms[8.0] / norms[4.0] == pytest.approx(1.0, abs=0.15)


def test_batch_mean_not_sum():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    single = soft_target_loss(s, t, 3.0)
    doubled = soft_target_loss(torch.cat([s, s]), torch.cat([t, t]), 3.0)
    assert doubled.item() == pytest.approx(single.item(), rel=1e-6)


def test_identical_logits_give_zero():
    x = torch.randn(3, 5)
    assert soft_target_loss(x, x.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_hard_weight_zero_ignores_labels():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    labels = torch.tensor([0, 1, 2, 3])
    soft = soft_target_loss(s, t, 4.0)
    assert distillation_loss(s, t, labels, 4.0, hard_weight=0.0).item() == pytest.approx(soft.item())
    assert distillation_loss(s, t, None, 4.0).item() == pytest.approx(soft.item())


def test_hard_term_uses_labelled_samples_only():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    labels = torch.tensor([1, -1, 3, -1])
    got = distillation_loss(s, t, labels, 2.0, soft_weight=0.5, hard_weight=0.3)
    ce = torch.nn.functional.cross_entropy(s[[0, 2]], labels[[0, 2]])
    assert got.item() == pytest.approx(0.5 * soft_target_loss(s, t, 2.0).item() + 0.3 * ce.item(), rel=1e-6)
    unlabeled = distillation_loss(s, t, torch.full((4,), -1), 2.0, hard_weight=1.0)
    assert torch.isfinite(unlabeled)


# The loss menu (distill.loss): each loss against its formula, written out, and a value worked by hand.

def reference_dist(s: torch.Tensor, t: torch.Tensor, T: float) -> float:
    """DIST written out: T^2 * (1 - mean row correlation + 1 - mean column correlation) of softmax(z/T)."""
    def softmax(row):
        e = [math.exp(v / T) for v in row]
        return [v / sum(e) for v in e]

    def pearson(a, b):
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
        return num / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))

    ps, pt = [softmax(r) for r in s.tolist()], [softmax(r) for r in t.tolist()]
    inter = sum(pearson(a, b) for a, b in zip(ps, pt)) / len(ps)
    cols = range(len(ps[0]))
    intra = sum(pearson([r[c] for r in ps], [r[c] for r in pt]) for c in cols) / len(cols)
    return T * T * (2 - inter - intra)


def test_dist_matches_formula_and_hand_value():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(6, 5, generator=g) * 2, torch.randn(6, 5, generator=g) * 2
    for T in (1.0, 4.0):
        assert LOSSES["dist"](s, t, T).item() == pytest.approx(reference_dist(s, t, T), rel=1e-4)
    # Two classes: every correlation is +-1. Student and teacher disagree on both images, so each image's
    # row and each class's column correlate at -1: T^2 * (2 + 2) = 4 at T = 1.
    s, t = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    assert LOSSES["dist"](s, t, 1.0).item() == pytest.approx(4.0, abs=1e-5)
    assert LOSSES["dist"](t * 3, t, 1.0).item() == pytest.approx(0.0, abs=1e-5)  # same ranking: no loss


def test_standardized_kl_is_hintons_loss_on_z_scores():
    s, t = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 2.0, 1.0]])
    # Z-scores (unbiased std = 1): [-1, 0, 1] and [1, 0, -1], the golden case above shifted: 1.2806 at T = 2.
    assert LOSSES["kl_std"](s, t, 2.0).item() == pytest.approx(1.2806, abs=1e-4)
    # Only the logits' shape counts: a student at 10x the scale, shifted, pays the same.
    assert LOSSES["kl_std"](10 * s + 5, t, 2.0).item() == pytest.approx(1.2806, abs=1e-4)
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g) * 5
    z = lambda x: (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    assert LOSSES["kl_std"](s, t, 3.0).item() == pytest.approx(reference_kd(z(s), z(t), 3.0), rel=1e-4)


def test_logit_mse_golden_value():
    s, t = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 2.0, 1.0]])
    assert LOSSES["mse"](s, t, 4.0).item() == pytest.approx((4 + 0 + 4) / 3)  # T does not enter


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_is_zero_at_the_teacher_and_trains_towards_it(name):
    g = torch.Generator().manual_seed(6)
    t = torch.randn(8, 5, generator=g) * 3
    assert LOSSES[name](t.clone(), t, 4.0).item() == pytest.approx(0.0, abs=1e-5)
    s = torch.randn(8, 5, generator=g).requires_grad_()
    opt = torch.optim.SGD([s], lr=0.5)
    first = None
    for _ in range(200):
        loss = LOSSES[name](s, t, 4.0)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    assert (s.argmax(1) == t.argmax(1)).float().mean() >= 0.75


def test_hard_term_with_every_loss_and_with_mixed_labels():
    g = torch.Generator().manual_seed(7)
    s, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    labels = torch.tensor([0, 2, -1, 1])  # one unlabeled sample: skipped
    for name, fn in LOSSES.items():
        both = distillation_loss(s, t, labels, 4.0, 1.0, 0.5, fn)
        expected = fn(s, t, 4.0) + 0.5 * F.cross_entropy(s[[0, 1, 3]], labels[[0, 1, 3]])
        assert both.item() == pytest.approx(expected.item(), rel=1e-5), name
    mixed, lam = torch.tensor([1, 1, 0, -1]), torch.tensor([0.25, 1.0, 0.5, 0.5], dtype=torch.float64)
    # Samples 0 and 1 have both labels; 2 and 3 lack one and are skipped.
    ce_a, ce_b = F.cross_entropy(s[:2], labels[:2], reduction="none"), F.cross_entropy(s[:2], mixed[:2], reduction="none")
    expected = (torch.tensor([0.25, 1.0]) * ce_a + torch.tensor([0.75, 0.0]) * ce_b).mean()
    assert hard_label_loss(s, labels, mixed, lam).item() == pytest.approx(expected.item(), rel=1e-6)
    assert hard_label_loss(s, torch.full((4,), -1)) is None
