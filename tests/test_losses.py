"""The losses equal their formulas, worked out independently of the implementation."""

import math

import torch

from duo_unlearn.losses import (
    duo_loss,
    duo_loss_terms,
    esd_loss,
    esd_target,
    inversion_contrast_loss,
    output_preservation_loss,
    per_sample_mse,
    twin_regression_loss,
)


def _rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def test_duo_loss_equals_its_formula_on_random_tensors():
    b, shape = 5, (4, 3, 3)
    mu, ru, ms, rs, tu, ts = (_rand(b, *shape) for _ in range(6))
    beta = 7.5
    expected = 0.0
    for i in range(b):
        mse = lambda p, t: float(((p[i] - t[i]) ** 2).sum() / p[i].numel())  # noqa: E731
        diff = (mse(ms, ts) - mse(rs, ts)) - (mse(mu, tu) - mse(ru, tu))
        expected += -math.log(1 / (1 + math.exp(beta * diff)))  # -log sigmoid(-beta * diff)
    expected /= b
    got = duo_loss(mu, ru, ms, rs, tu, ts, beta)
    assert got.ndim == 0
    assert abs(got.item() - expected) < 1e-9


def test_duo_loss_hand_worked_example():
    """One pixel per sample, beta = 1.
    model_safe err 1 -> mse 1, ref_safe err 2 -> mse 4; model_unsafe err 3 -> 9, ref_unsafe err 1 -> 1.
    diff = (1 - 4) - (9 - 1) = -11; loss = -log sigmoid(11) = log(1 + e^-11)."""
    t = torch.zeros(1, 1)
    loss = duo_loss(torch.tensor([[3.0]]), torch.tensor([[1.0]]), torch.tensor([[1.0]]), torch.tensor([[2.0]]),
                    t, t, beta=1.0)
    assert abs(loss.item() - math.log1p(math.exp(-11))) < 1e-7


def test_duo_loss_at_reference_is_log2_and_terms_are_logged():
    x, target = _rand(3, 2, 2), _rand(3, 2, 2)
    out = duo_loss_terms(x, x, x + 1, x + 1, target, target, beta=100.0)
    assert abs(out.loss.item() - math.log(2)) < 1e-12
    assert torch.all(out.diff == 0) and out.implicit_accuracy.item() == 0.0


def test_duo_gradient_lowers_unsafe_and_raises_safe_likelihood():
    """d loss / d model_pred moves the unsafe prediction away from its target and the safe one toward it."""
    mu = _rand(2, 4).requires_grad_(True)
    ms = _rand(2, 4).requires_grad_(True)
    tu, ts = _rand(2, 4), _rand(2, 4)
    loss = duo_loss(mu, mu.detach(), ms, ms.detach(), tu, ts, beta=10.0)
    loss.backward()
    step = 1e-3
    assert per_sample_mse(mu - step * mu.grad, tu).sum() > per_sample_mse(mu, tu).sum()
    assert per_sample_mse(ms - step * ms.grad, ts).sum() < per_sample_mse(ms, ts).sum()


def test_output_preservation_loss_is_mse_and_stops_reference_gradient():
    a, b = _rand(2, 3, 4).requires_grad_(True), _rand(2, 3, 4).requires_grad_(True)
    loss = output_preservation_loss(a, b)
    assert abs(loss.item() - ((a - b) ** 2).mean().item()) < 1e-12
    loss.backward()
    assert b.grad is None and a.grad is not None


def test_esd_target_and_loss():
    uncond, concept, pred = _rand(2, 3), _rand(2, 3), _rand(2, 3)
    eta = 1.5
    target = uncond - eta * (concept - uncond)
    assert torch.allclose(esd_target(uncond, concept, eta), target)
    assert abs(esd_loss(pred, uncond, concept, eta).item() - float(((pred - target) ** 2).mean())) < 1e-12


def test_twin_regression_loss_is_the_min_snr_weighted_x0_error():
    """mean over samples of min(SNR, γ)·mean((x̂0 − x0_twin)²), worked out sample by sample; the
    twin is a fixed target (no gradient reaches it)."""
    b, shape = 4, (2, 3, 3)
    x0_hat, twin = _rand(b, *shape).requires_grad_(), _rand(b, *shape).requires_grad_()
    snr = torch.tensor([400.0, 2.0, 0.5, 0.01], dtype=torch.float64)
    for gamma, weights in ((1.0, [1.0, 1.0, 0.5, 0.01]), (5.0, [5.0, 2.0, 0.5, 0.01])):
        expected = sum(w * float(((x0_hat[i] - twin[i]).detach() ** 2).sum()) / x0_hat[i].numel()
                       for i, w in enumerate(weights)) / b
        got = twin_regression_loss(x0_hat, twin, snr, gamma)
        assert got.ndim == 0 and abs(got.item() - expected) < 1e-6 * expected
    got.backward()
    assert twin.grad is None and x0_hat.grad is not None


def test_inversion_contrast_loss_is_the_error_plus_the_reversed_preference():
    """mean(mse_u) + mean(softplus(κ·(mse_u − mse_twin)))/κ, worked out by hand: it pays while the
    twin is denoised better than the unsafe image and flattens once the unsafe image wins."""
    mse_u = torch.tensor([0.5, 0.2], dtype=torch.float64)
    mse_twin = torch.tensor([0.3, 0.4], dtype=torch.float64)
    kappa = 10.0
    expected = 0.35 + (math.log1p(math.exp(2.0)) + math.log1p(math.exp(-2.0))) / 2 / kappa
    assert abs(inversion_contrast_loss(mse_u, mse_twin, kappa).item() - expected) < 1e-12
    # a large κ leaves the error plus the hinge mean(max(mse_u − mse_twin, 0)) = 0.1
    assert abs(inversion_contrast_loss(mse_u, mse_twin, 1e6).item() - 0.45) < 1e-6
