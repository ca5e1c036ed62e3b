"""Loss functions of DUO and its baselines, as pure functions of tensors.

DUO: Park et al., "Direct Unlearning Optimization for Robust and Safe Text-to-Image
Models", NeurIPS 2024. Its preference term is Diffusion-DPO (Wallace et al., CVPR 2024)
with the safe twin as "chosen" and the unsafe image as "rejected". Here beta carries no
factor 0.5 (the Diffusion-DPO paper's beta is twice this one).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision predictions are compared in float32; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every non-batch dimension, shape (batch,)."""
    return (_upcast(pred) - _upcast(target)).pow(2).flatten(start_dim=1).mean(dim=1)


@dataclasses.dataclass
class DUOLossOutput:
    """The loss and what is worth logging about it (all detached except ``loss``)."""

    loss: torch.Tensor
    diff: torch.Tensor
    """Per-sample (mse_θ(safe) − mse_ref(safe)) − (mse_θ(unsafe) − mse_ref(unsafe)); < 0 is the goal."""
    mse_safe: torch.Tensor
    mse_unsafe: torch.Tensor
    ref_mse_safe: torch.Tensor
    ref_mse_unsafe: torch.Tensor

    @property
    def implicit_accuracy(self) -> torch.Tensor:
        """Share of pairs where the model, relative to the reference, prefers the safe image."""
        return (self.diff < 0).float().mean()


def duo_loss_terms(
    model_pred_unsafe: torch.Tensor,
    ref_pred_unsafe: torch.Tensor,
    model_pred_safe: torch.Tensor,
    ref_pred_safe: torch.Tensor,
    target_unsafe: torch.Tensor,
    target_safe: torch.Tensor,
    beta: float,
) -> DUOLossOutput:
    """:func:`duo_loss` with its intermediate terms, for logging."""
    mse_safe = per_sample_mse(model_pred_safe, target_safe)
    mse_unsafe = per_sample_mse(model_pred_unsafe, target_unsafe)
    ref_mse_safe = per_sample_mse(ref_pred_safe, target_safe).detach()
    ref_mse_unsafe = per_sample_mse(ref_pred_unsafe, target_unsafe).detach()
    diff = (mse_safe - ref_mse_safe) - (mse_unsafe - ref_mse_unsafe)
    loss = -F.logsigmoid(-beta * diff).mean()
    return DUOLossOutput(loss, diff.detach(), mse_safe.detach(), mse_unsafe.detach(), ref_mse_safe, ref_mse_unsafe)


def duo_loss(
    model_pred_unsafe: torch.Tensor,
    ref_pred_unsafe: torch.Tensor,
    model_pred_safe: torch.Tensor,
    ref_pred_safe: torch.Tensor,
    target_unsafe: torch.Tensor,
    target_safe: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DUO's preference loss, a scalar.

    Per sample, mse is the mean squared error of a prediction against its target over all
    non-batch dimensions; ``diff = (mse(model_safe) − mse(ref_safe)) − (mse(model_unsafe) −
    mse(ref_unsafe))``; the loss is the mean of ``−log σ(−beta · diff)``. Lowering it raises
    the model's likelihood of the safe twin relative to the unsafe image, measured against
    the frozen reference.
    """
    return duo_loss_terms(model_pred_unsafe, ref_pred_unsafe, model_pred_safe, ref_pred_safe,
                          target_unsafe, target_safe, beta).loss


def output_preservation_loss(model_pred: torch.Tensor, ref_pred: torch.Tensor) -> torch.Tensor:
    """DUO's output-preserving regulariser: mean squared error between the model's and the
    reference's predictions (on pure noise at the last timestep with the null prompt)."""
    return (_upcast(model_pred) - _upcast(ref_pred).detach()).pow(2).mean()


def esd_target(ref_pred_uncond: torch.Tensor, ref_pred_concept: torch.Tensor, eta: float) -> torch.Tensor:
    """ESD (Gandikota et al., ICCV 2023): the frozen model's unconditional prediction pushed
    away from the concept, ε*(x_t, ∅) − η·(ε*(x_t, c) − ε*(x_t, ∅))."""
    return ref_pred_uncond - eta * (ref_pred_concept - ref_pred_uncond)


def esd_loss(model_pred_concept: torch.Tensor, ref_pred_uncond: torch.Tensor, ref_pred_concept: torch.Tensor,
             eta: float) -> torch.Tensor:
    """ESD's loss: MSE between the model's concept-conditioned prediction and :func:`esd_target`."""
    target = esd_target(ref_pred_uncond, ref_pred_concept, eta).detach()
    return (_upcast(model_pred_concept) - _upcast(target)).pow(2).mean()


def twin_regression_loss(model_x0_unsafe: torch.Tensor, x0_safe: torch.Tensor, snr: torch.Tensor,
                         gamma: float = 1.0) -> torch.Tensor:
    """Robust DUO's twin term: the clean latent the model infers from each *noised unsafe* image,
    pulled onto the image's safe twin, ``mean(min(SNR, γ)·mse(x̂0, x0_safe))`` (min-SNR-γ weights,
    Hang et al. 2023: x0-space error where there is little noise, ε-space error where there is
    much, so neither end of the schedule dominates). Unlike the preference, which is met once the
    unsafe image is denoised a little worse than its twin, this keeps pulling until the model
    turns the unsafe image into the twin."""
    weights = snr.to(torch.float32).clamp(max=gamma)
    return (weights * per_sample_mse(model_x0_unsafe, x0_safe.detach())).mean()


def inversion_contrast_loss(mse_unsafe: torch.Tensor, mse_twin: torch.Tensor, contrast: float) -> torch.Tensor:
    """The adaptive inversion's batch objective, ``mean(mse_u) + mean(softplus(κ·(mse_u − mse_twin)))/κ``:
    the inversion's error on the concept images plus the *reverse* of DUO's preference on the same
    noise and timesteps, so only a conditioning under which the model prefers each unsafe image
    over its safe twin scores well. The term flattens once that preference is back, so it never
    pays for merely wrecking the twin. ``contrast`` (κ) must be positive."""
    mse_unsafe, mse_twin = _upcast(mse_unsafe), _upcast(mse_twin)
    return mse_unsafe.mean() + F.softplus(contrast * (mse_unsafe - mse_twin)).mean() / contrast
