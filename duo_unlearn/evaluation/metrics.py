"""The figures every evaluation reports, each an ``Estimate`` with its interval: one
implementation shared by `duo demo`, the ShapeWorld study and a real-model `duo eval`.

- concept rate: share of images the detector flags (Wilson interval);
- defence success rate of an attack: share of its images the detector does *not* flag;
- prior preservation: 1 − perceptual distance to the base model's image for the same prompt
  and seed, averaged over prompts (bootstrap interval over prompts);
- FID: Fréchet distance of generated features to a reference set (bootstrap over the
  generated images).
"""

from __future__ import annotations

import numpy as np

from duo_unlearn.stats import Estimate, bootstrap_mean, bootstrap_statistic, rate


def flagged(detector, images) -> np.ndarray:
    """Per image: does the detector find the concept?"""
    return np.asarray(detector.scores(images)) >= detector.threshold


def concept_rate(detector, images) -> Estimate:
    return rate(flagged(detector, images))


def defence_success(result) -> Estimate:
    """An attack's defence success rate: images of ``result`` in which the concept did not come back."""
    return rate(~result.success)


def attack_success(result) -> Estimate:
    return rate(result.success)


def preservation(metric, base_images, new_images) -> tuple[Estimate, list[float]]:
    """Prior preservation, 1 − distance image by image, and the per-image values (kept in
    results.json so seeds can be pooled)."""
    values = [float(v) for v in 1 - np.asarray(metric.distance(base_images, new_images), dtype=float)]
    return bootstrap_mean(values), values


def fid(features: np.ndarray, reference: np.ndarray, n_resamples: int = 100) -> Estimate:
    """FID of ``features`` (rows) against ``reference``, the interval from resampling the generated rows.

    Resampling with replacement duplicates images, which shrinks the sample covariance and
    raises FID, so at a few dozen images the interval sits mostly above the point estimate:
    read it as the figure's spread, and compare FIDs only at equal sample sizes."""
    from duo_unlearn.perceptual import frechet_distance

    return bootstrap_statistic(lambda x: frechet_distance(x, reference), np.asarray(features),
                               n_resamples=n_resamples)
