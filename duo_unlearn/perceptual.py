"""Perceptual distance and feature statistics behind one interface.

- Real models: LPIPS with AlexNet (Zhang et al. 2018) from the ``lpips`` package. Its
  backbone weights come from the internet on first use, and ``lpips`` pulls torchvision,
  so it is an optional extra (``pip install duo-unlearn[lpips]``).
- ShapeWorld: the same LPIPS form (unit-normalise each layer's channels, squared
  difference, spatial mean, average over layers) on the world detector's conv features,
  and FID in the detector's 256-d embedding space.
- Your own: ``register_perceptual_metric("name", factory)``.

Prior preservation, as in the DUO paper, is ``1 - distance`` between base and unlearned
images made from the same prompt and seed.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch

from duo_unlearn.io import to_signed_tensor, to_uint8


class PerceptualMetric(Protocol):
    name: str

    def distance(self, images_a, images_b) -> np.ndarray:
        """Per-pair perceptual distance, ~0 for identical images."""
        ...


def _normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def lpips_form(maps_a: list[torch.Tensor], maps_b: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS with uniform channel weights: mean over layers of the spatially averaged
    squared difference of channel-normalised features. Per-pair, shape (n,)."""
    per_layer = [
        (_normalize_channels(a) - _normalize_channels(b)).pow(2).sum(dim=1).mean(dim=(1, 2))
        for a, b in zip(maps_a, maps_b)
    ]
    return torch.stack(per_layer).mean(dim=0)


class ShapeWorldPerceptual:
    """LPIPS-form distance and feature statistics from the ShapeWorld detector."""

    name = "shapeworld-lpips"

    def __init__(self, detector=None) -> None:
        if detector is None:
            from duo_unlearn.detectors import ShapeWorldDetector

            detector = ShapeWorldDetector()
        self.detector = detector

    def distance(self, images_a, images_b) -> np.ndarray:
        maps_a, _ = self.detector.features(images_a)
        maps_b, _ = self.detector.features(images_b)
        # Normalised squared distances lie in [0, 4]; halve so a typical distance is in [0, 1].
        return (lpips_form(maps_a, maps_b) / 2).numpy()

    def embeddings(self, images) -> np.ndarray:
        return self.detector.features(images)[1].numpy().astype(np.float64)


class AlexLPIPS:
    """The real LPIPS (AlexNet) for real models; ``backend`` lets tests stand in for it."""

    name = "lpips-alex"

    def __init__(self, backend=None, device: str = "cpu") -> None:
        if backend is None:
            try:
                import lpips
            except ImportError as err:
                raise ImportError(
                    "LPIPS for real models needs the optional extra: pip install 'duo-unlearn[lpips]' "
                    "(it installs lpips and torchvision; AlexNet weights download on first use)"
                ) from err
            backend = lpips.LPIPS(net="alex", verbose=False)
        self.backend = backend.to(device).eval()
        self.device = device

    @torch.no_grad()
    def distance(self, images_a, images_b, batch_size: int = 32) -> np.ndarray:
        a, b = to_uint8(images_a), to_uint8(images_b)
        if a.shape != b.shape:
            raise ValueError(f"LPIPS compares equal-shaped image sets, got {a.shape} and {b.shape}")
        out = []
        for i in range(0, len(a), batch_size):
            ta, tb = to_signed_tensor(a[i : i + batch_size]), to_signed_tensor(b[i : i + batch_size])
            out.append(self.backend(ta.to(self.device), tb.to(self.device)).flatten().cpu())
        return torch.cat(out).numpy()


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID between two sets of feature vectors (rows), from their means and covariances."""
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise ValueError("FID needs at least two feature vectors per set")
    return frechet_distance_from_stats(feats_a.mean(0), np.cov(feats_a, rowvar=False),
                                       feats_b.mean(0), np.cov(feats_b, rowvar=False))


def frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + Tr(Sa + Sb - 2 (Sa Sb)^1/2), handled as pytorch-fid does so numbers
    compare with published FIDs: with fewer samples than dimensions the covariances are
    singular and the square root may fail, so it is retried with eps·I added to both; a
    square root whose diagonal has a significant imaginary part is an error, otherwise the
    (round-off) imaginary part is dropped."""
    import warnings

    from scipy import linalg

    mu_a, mu_b = np.atleast_1d(mu_a), np.atleast_1d(mu_b)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    if singular or not np.isfinite(covmean).all():
        offset = eps * np.eye(len(cov_a))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if not np.isfinite(covmean).all():
        raise ValueError("FID: the covariance product has no finite square root, even with eps·I added")
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > 1e-3:
            raise ValueError(f"FID: the covariance square root has an imaginary part of {imaginary:.3g} "
                             "(the statistics are not valid covariances)")
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


_METRICS: dict[str, Callable[..., PerceptualMetric]] = {
    "shapeworld": ShapeWorldPerceptual,
    "shapeworld-lpips": ShapeWorldPerceptual,
    "lpips": AlexLPIPS,
    "lpips-alex": AlexLPIPS,
}


def register_perceptual_metric(name: str, factory: Callable[..., PerceptualMetric]) -> None:
    """Plug in another distance (DreamSim, a VGG LPIPS, ...) for prior preservation."""
    _METRICS[name] = factory


def get_perceptual_metric(name: str = "shapeworld", **kwargs) -> PerceptualMetric:
    if name not in _METRICS:
        raise ValueError(f"unknown perceptual metric {name!r}; registered: {sorted(_METRICS)}")
    return _METRICS[name](**kwargs)
