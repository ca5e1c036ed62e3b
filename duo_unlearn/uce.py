"""UCE, the closed-form baseline (Gandikota et al., "Unified Concept Editing in Diffusion
Models", WACV 2024).

Every cross-attention key and value projection W0 (text dim -> attention dim) is replaced by

    W = (λ·W0 + Σ_e v*·cᵀ + Σ_p W0·c_p·c_pᵀ) · (λ·I + Σ_e c·cᵀ + Σ_p c_p·c_pᵀ)⁻¹,   v* = W0·c_target

where c runs over the text-encoder vectors of the prompts that carry the concept, c_target
over the same positions of their safe counterparts, and c_p over prompts to preserve. It
acts on the text pathway only, which is why paraphrases and inverted tokens can route
around it; the DUO paper's point.

The edit is exported as a LoRA of full rank (ΔW = B·A exactly, by SVD), so it is saved and
loaded like every other method's output.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from duo_unlearn.io import atomic_write_text
from duo_unlearn.lora import add_lora, save_lora


@dataclasses.dataclass
class UCEConfig:
    """Settings of the UCE baseline (`duo train --method uce` reads these from DUOConfig)."""

    erase_prompts: tuple[str, ...]
    """Prompts that carry the concept."""
    target_prompts: tuple[str, ...]
    """Their safe counterparts (same count), whose keys/values the erased prompts must map to."""
    preserve_prompts: tuple[str, ...] = ()
    """Prompts whose keys/values stay fixed (e.g. the close, safe look-alike concept)."""
    lam: float = 0.5
    """Ridge weight keeping W near W0 (the paper: ~0.5)."""
    preserve_scale: float = 1.0


def cross_attention_projections(denoiser) -> dict[str, torch.nn.Linear]:
    """The to_k / to_v projections of every cross-attention block (attn2 in diffusers UNets)."""
    return {name: module for name, module in denoiser.named_modules()
            if isinstance(module, torch.nn.Linear) and re.search(r"attn2\.(to_k|to_v)$", name)}


@torch.no_grad()
def _token_vectors(pipe, prompts) -> torch.Tensor:
    """(num_prompts * length, dim): every position the denoiser attends to."""
    from duo_unlearn.attacks.text import encode_ids, tokenize

    return encode_ids(pipe, tokenize(pipe, list(prompts))).float().flatten(0, 1)


@torch.no_grad()
def uce_weights(w0: torch.Tensor, concept: torch.Tensor, target: torch.Tensor, preserve: torch.Tensor,
                lam: float, preserve_scale: float = 1.0) -> torch.Tensor:
    """The closed-form edit of one projection. ``concept``, ``target``, ``preserve`` are rows of
    text vectors; returns the new weight (same shape as ``w0``)."""
    w0 = w0.double()
    c, ct, cp = concept.double(), target.double(), preserve.double()
    v_star = ct @ w0.T  # (n, out)
    eye = torch.eye(w0.shape[1], dtype=torch.float64)
    left = lam * w0 + v_star.T @ c
    right = lam * eye + c.T @ c
    if len(cp):
        left = left + preserve_scale * (w0 @ cp.T) @ cp
        right = right + preserve_scale * cp.T @ cp
    return torch.linalg.solve(right, left.T).T  # left @ right^-1 (right is symmetric)


def apply_uce(pipe, cfg: UCEConfig) -> dict[str, torch.Tensor]:
    """Compute the edit for every cross-attention k/v projection; returns ΔW by module name."""
    if len(cfg.erase_prompts) != len(cfg.target_prompts) or not cfg.erase_prompts:
        raise ValueError("UCE needs as many target_prompts as erase_prompts (and at least one)")
    projections = cross_attention_projections(pipe.unet)
    if not projections:
        raise ValueError("UCE: the denoiser has no cross-attention to_k/to_v projections (attn2)")
    c = _token_vectors(pipe, cfg.erase_prompts)
    ct = _token_vectors(pipe, cfg.target_prompts)
    cp = _token_vectors(pipe, cfg.preserve_prompts) if cfg.preserve_prompts else c.new_zeros((0, c.shape[1]))
    return {name: (uce_weights(m.weight.float().cpu(), c, ct, cp, cfg.lam, cfg.preserve_scale)
                   - m.weight.double().cpu()).float()
            for name, m in projections.items()}


def save_uce_lora(pipe, deltas: dict[str, torch.Tensor], output_dir: str | Path) -> Path:
    """Export ΔW as an exact full-rank LoRA (B·A = ΔW, alpha = rank) via SVD."""
    unet = pipe.unet
    rank = max(min(d.shape) for d in deltas.values())
    add_lora(unet, rank=rank, alpha=rank, target_modules=list(deltas), init="gaussian")
    modules = dict(unet.named_modules())
    with torch.no_grad():
        for name, delta in deltas.items():
            u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
            r = len(s)
            root = s.sqrt()
            layer = modules[name]
            layer.lora_A["default"].weight.zero_()
            layer.lora_B["default"].weight.zero_()
            layer.lora_A["default"].weight[:r] = (root[:, None] * vh).float()
            layer.lora_B["default"].weight[:, :r] = (u * root[None, :]).float()
    out = save_lora(pipe, unet, "unet", output_dir)
    atomic_write_text(Path(output_dir) / "README.md",
                      "# UCE edit (Unified Concept Editing, Gandikota et al., WACV 2024)\n\n"
                      "Closed-form edit of cross-attention keys and values, exported as an exact LoRA.\n")
    return out
