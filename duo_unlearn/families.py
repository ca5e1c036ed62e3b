"""Model families: what differs between SD 1.x/2.x, SDXL, SD3 and FLUX.1 when training a denoiser.

Each family says how to encode prompts, how to noise latents, how to call the denoiser
and in which space the prediction is compared with its target:

- ``UNetFamily`` (SD 1.x, 2.x): epsilon- or v-prediction, read from the scheduler config.
- ``SDXLFamily``: the same, plus pooled text embeddings and size/crop time ids.
- ``SD3Family`` and ``FluxFamily`` (rectified flow): x_t = (1 − σ)·x0 + σ·ε; the transformer
  predicts the velocity v ≈ ε − x0. As in the DUO authors' SD3 variant, predictions are
  preconditioned to x0 estimates (x0̂ = x_t − σ·v̂) and compared with x0, so the same
  preference loss applies. FLUX differs only in how the transformer is called: packed 2×2
  latent patches with position ids, σ itself as the timestep, and a guidance input for the
  guidance-distilled FLUX.1-dev.

Timesteps are integers in [0, 1000) for every family, 999 being pure noise. For the flow
families the integer k maps to the scheduler's σ grid so that k = 999 is σ = 1, the *highest*
noise: the output-preserving regulariser, which runs on pure noise, gets σ = 1 (the authors'
script appears to pair it with the lowest σ; we do not).
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class Conditioning:
    """Prompt conditioning, batched along dim 0 (extra: SDXL/SD3 pooled embeddings, time ids)."""

    hidden_states: torch.Tensor
    extra: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return self.hidden_states.shape[0]

    def select(self, index) -> "Conditioning":
        return Conditioning(self.hidden_states[index], {k: v[index] for k, v in self.extra.items()})

    def to(self, device, dtype=None) -> "Conditioning":
        return Conditioning(self.hidden_states.to(device, dtype),
                            {k: v.to(device, dtype) for k, v in self.extra.items()})

    @staticmethod
    def cat(parts: list["Conditioning"]) -> "Conditioning":
        return Conditioning(torch.cat([p.hidden_states for p in parts]),
                            {k: torch.cat([p.extra[k] for p in parts]) for k in parts[0].extra})


class UNetFamily:
    """Stable Diffusion 1.x / 2.x: a UNet2DConditionModel with epsilon or v prediction."""

    name = "sd"
    lora_component = "unet"

    def __init__(self, pipe) -> None:
        from diffusers import DDPMScheduler

        self.pipe = pipe
        self.denoiser = pipe.unet
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r} in {type(pipe).__name__}")
        self.num_train_timesteps = self.noise_scheduler.config.num_train_timesteps

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        device = self.denoiser.device
        embeds = self.pipe.encode_prompt(prompts, device, 1, False)[0]
        return Conditioning(embeds)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.noise_scheduler.add_noise(x0, noise, t)

    def predict(self, model, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Raw denoiser output; ``model`` is the (possibly accelerate-wrapped) denoiser."""
        return model(x_t, t, encoder_hidden_states=cond.hidden_states,
                             added_cond_kwargs=cond.extra or None).sample

    def loss_space(self, pred, x_t, x0, noise, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, target) in the space the losses compare them."""
        if self.prediction_type == "v_prediction":
            return pred, self.noise_scheduler.get_velocity(x0, noise, t)
        return pred, noise

    def pure_noise_input(self, noise: torch.Tensor) -> torch.Tensor:
        """What the denoiser sees at the last timestep when nothing of an image is left."""
        return noise

    def _alpha_sigma(self, t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        abar = self.noise_scheduler.alphas_cumprod.to(t.device)[t].view(-1, *([1] * (ndim - 1)))
        return abar.sqrt(), (1 - abar).sqrt()

    def predicted_x0(self, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean latent the prediction implies: (x_t − σ·ε̂)/α, or α·x_t − σ·v̂."""
        alpha, sigma = self._alpha_sigma(t, x_t.ndim)
        if self.prediction_type == "v_prediction":
            return alpha * x_t - sigma * pred
        return (x_t - sigma * pred) / alpha

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio α²/σ² of each timestep, shape (batch,)."""
        alpha, sigma = self._alpha_sigma(t, 1)
        return (alpha / sigma).pow(2)


class SDXLFamily(UNetFamily):
    """SDXL: two text encoders, pooled embeddings and (size, crop, target size) time ids."""

    name = "sdxl"

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        device = self.denoiser.device
        embeds, _, pooled, _ = self.pipe.encode_prompt(prompts, device=device, num_images_per_prompt=1,
                                                       do_classifier_free_guidance=False)
        size = self.pipe.default_sample_size * self.pipe.vae_scale_factor
        time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=embeds.dtype, device=device)
        return Conditioning(embeds, {"text_embeds": pooled, "time_ids": time_ids.repeat(len(prompts), 1)})


class RectifiedFlowFamily:
    """What SD3 and FLUX share: the σ grid, flow noising, the x0 loss space, pure noise at σ = 1."""

    lora_component = "transformer"

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.denoiser = pipe.transformer
        self.num_train_timesteps = pipe.scheduler.config.num_train_timesteps
        # a fresh scheduler from the config: the pipeline's own has the grid of its last generation
        sigmas = type(pipe.scheduler).from_config(pipe.scheduler.config).sigmas.float()
        # ascending, one σ per training timestep: k = 0 least noise, k = N-1 is σ = 1
        self.sigma_grid = sigmas[sigmas > 0][: self.num_train_timesteps].flip(0).clone()
        if len(self.sigma_grid) != self.num_train_timesteps:
            raise ValueError(f"{type(pipe.scheduler).__name__} has {len(self.sigma_grid)} training sigmas, "
                             f"expected {self.num_train_timesteps}")

    def sigmas(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        sigma = self.sigma_grid.to(t.device)[t]
        return sigma.view(-1, *([1] * (ndim - 1)))

    def add_noise(self, x0, noise, t):
        sigma = self.sigmas(t, x0.ndim).to(x0.dtype)
        return (1 - sigma) * x0 + sigma * noise

    def loss_space(self, pred, x_t, x0, noise, t):
        sigma = self.sigmas(t, x_t.ndim).to(pred.dtype)
        return x_t - sigma * pred, x0

    def pure_noise_input(self, noise):
        return noise

    def predicted_x0(self, pred, x_t, t):
        """The clean latent the predicted velocity implies: x_t − σ·v̂ (what ``loss_space`` compares)."""
        return x_t - self.sigmas(t, x_t.ndim).to(pred.dtype) * pred

    def snr(self, t):
        """Signal-to-noise ratio ((1 − σ)/σ)² of each timestep, shape (batch,)."""
        sigma = self.sigmas(t, 1)
        return ((1 - sigma) / sigma).pow(2)


class SD3Family(RectifiedFlowFamily):
    """SD3: an MMDiT transformer on latent images, timestep σ·1000."""

    name = "sd3"

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        device = self.denoiser.device
        embeds, _, pooled, _ = self.pipe.encode_prompt(prompts, None, None, device=device,
                                                       do_classifier_free_guidance=False)
        return Conditioning(embeds, {"pooled_projections": pooled})

    def predict(self, model, x_t, t, cond: Conditioning) -> torch.Tensor:
        timestep = self.sigma_grid.to(t.device)[t] * self.num_train_timesteps
        return model(hidden_states=x_t, timestep=timestep, encoder_hidden_states=cond.hidden_states,
                             pooled_projections=cond.extra["pooled_projections"]).sample


class FluxFamily(RectifiedFlowFamily):
    """FLUX.1: the transformer sees latents packed into 2×2 patches (a sequence of tokens with
    (0, row, col) position ids; text tokens get zero ids), takes σ itself as the timestep (it
    multiplies by 1000 inside), and, if guidance-distilled (dev), the guidance scale as an
    input. Text: T5 token embeddings plus CLIP's pooled embedding.

    Latents stay (B, C, H, W) everywhere else, so noising and the losses are SD3's."""

    name = "flux"
    # FLUX.1-dev is distilled to follow a guidance *input*; train at the value FluxPipeline
    # generates with by default, so the LoRA is trained where it is used. schnell has no input.
    guidance_scale = 3.5

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        # T5 sequence: the tokenizer's length, at most the 512 FluxPipeline allows
        max_length = min(self.pipe.tokenizer_2.model_max_length, 512)
        embeds, pooled, _ = self.pipe.encode_prompt(prompts, device=self.denoiser.device,
                                                    max_sequence_length=max_length)
        return Conditioning(embeds, {"pooled_projections": pooled})

    def predict(self, model, x_t, t, cond: Conditioning) -> torch.Tensor:
        from diffusers import FluxPipeline

        b, c, h, w = x_t.shape
        packed = FluxPipeline._pack_latents(x_t, b, c, h, w)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, x_t.device, x_t.dtype)
        txt_ids = torch.zeros(cond.hidden_states.shape[1], 3, device=x_t.device, dtype=x_t.dtype)
        guidance = None
        if self.denoiser.config.guidance_embeds:
            guidance = torch.full((b,), self.guidance_scale, device=x_t.device, dtype=torch.float32)
        out = model(hidden_states=packed, timestep=self.sigma_grid.to(t.device)[t], guidance=guidance,
                    pooled_projections=cond.extra["pooled_projections"], encoder_hidden_states=cond.hidden_states,
                    txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        factor = self.pipe.vae_scale_factor
        return FluxPipeline._unpack_latents(out, h * factor, w * factor, factor)


def family_for(pipe):
    """The family of a diffusers pipeline, by its denoiser and class."""
    name = type(pipe).__name__
    if getattr(pipe, "transformer", None) is not None and "StableDiffusion3" in name:
        return SD3Family(pipe)
    if getattr(pipe, "transformer", None) is not None and "Flux" in name:
        return FluxFamily(pipe)
    if getattr(pipe, "unet", None) is None:
        raise ValueError(f"{name} is not supported: DUO trains a UNet (SD 1.x/2.x/XL) or an SD3 or FLUX.1 transformer")
    if "XL" in name:
        return SDXLFamily(pipe)
    return UNetFamily(pipe)


def encode_latents(vae, images: torch.Tensor, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE posterior mean and std of images in [-1, 1], computed once per dataset. A half-precision
    VAE whose config sets ``force_upcast`` (SDXL's, which overflows in fp16) encodes in fp32, as
    diffusers' pipelines do."""
    if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        vae.to(torch.float32)
        try:
            return encode_latents(vae, images, batch_size)
        finally:
            vae.to(torch.float16)
    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            dist = vae.encode(images[i : i + batch_size].to(vae.device, vae.dtype)).latent_dist
            means.append(dist.mean.float())
            stds.append(dist.std.float())
    return torch.cat(means), torch.cat(stds)


def scale_latents(vae, z: torch.Tensor) -> torch.Tensor:
    """VAE latents to the denoiser's space: (z − shift) · scale (shift is SD3's)."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (z - shift) * vae.config.scaling_factor
