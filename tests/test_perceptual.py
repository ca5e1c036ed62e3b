import sys
import types

import numpy as np
import pytest
import torch

from duo_unlearn.perceptual import AlexLPIPS, ShapeWorldPerceptual, frechet_distance, lpips_form
from duo_unlearn.world.scene import render_batch, sample_scenes


def test_lpips_form_is_zero_on_identical_and_scale_invariant_per_channel_vector():
    a = [torch.randn(3, 8, 4, 4), torch.randn(3, 16, 2, 2)]
    assert torch.allclose(lpips_form(a, a), torch.zeros(3))
    assert torch.allclose(lpips_form(a, [2 * x for x in a]), torch.zeros(3), atol=1e-6)
    b = [torch.randn_like(x) for x in a]
    d = lpips_form(a, b)
    assert torch.all(d > 0) and torch.allclose(d, lpips_form(b, a))


def test_world_distance_orders_similar_below_different(world_detector):
    metric = ShapeWorldPerceptual(world_detector)
    scenes = sample_scenes(16, seed=7)
    base = render_batch(scenes)
    moved = render_batch([s.__class__(**{**s.__dict__, "jitter_x": s.jitter_x + 1}) for s in scenes])
    other = render_batch(sample_scenes(16, seed=8))
    same = metric.distance(base, base)
    near = metric.distance(base, moved)
    far = metric.distance(base, other)
    assert np.allclose(same, 0, atol=1e-6)
    assert near.mean() < far.mean()
    assert 1 - far.mean() < 0.9  # unrelated images fall well below the 0.9 preservation bar


class FakeLPIPS(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, a, b):
        self.inputs.append((a, b))
        return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)


def test_alex_lpips_path_scales_to_minus_one_one_and_batches():
    backend = FakeLPIPS()
    metric = AlexLPIPS(backend=backend)
    a = np.zeros((3, 8, 8, 3), np.uint8)
    b = np.full((3, 8, 8, 3), 255, np.uint8)
    d = metric.distance(a, b, batch_size=2)
    assert d.shape == (3,) and np.allclose(d, 2.0)
    x, y = backend.inputs[0]
    assert x.min() == -1 and y.max() == 1 and x.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="equal-shaped"):
        metric.distance(a, b[:2])


def test_alex_lpips_uses_the_lpips_package(monkeypatch):
    created = {}

    def fake_ctor(net, verbose):
        created["net"] = net
        return FakeLPIPS()

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=fake_ctor))
    AlexLPIPS()
    assert created["net"] == "alex"
    monkeypatch.setitem(sys.modules, "lpips", None)
    with pytest.raises(ImportError, match=r"duo-unlearn\[lpips\]"):
        AlexLPIPS()


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3))
    assert frechet_distance(a, b) < 0.02
    shifted = frechet_distance(a, b + np.array([2.0, 0, 0]))
    assert abs(shifted - 4.0) < 0.2
    with pytest.raises(ValueError):
        frechet_distance(a[:1], b)
