"""LoRA adapters on the denoiser: add, switch off for the reference, export the way
diffusers loads them, and merge into a plain pipeline."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch

from duo_unlearn.io import atomic_dir, atomic_save_safetensors, atomic_write_text, canonicalize_safetensors_header

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
ADAPTER_STATE_NAME = "adapter_model.safetensors"  # PEFT's own layout, for exact resume and PeftModel
ADAPTER_CONFIG_NAME = "adapter_config.json"
PEFT_PREFIX = "base_model.model."  # how PeftModel.save_pretrained keys a wrapped model's weights


def add_lora(denoiser, rank: int, alpha: float, target_modules: Sequence[str], init: str = "gaussian",
             seed: int = 0) -> list:
    """Attach a LoRA adapter (B = 0, so the model starts equal to the reference) and return
    its parameters, cast to float32 so they train well under mixed precision.

    PEFT draws A's Gaussian init from torch's global RNG, which nothing else here seeds; the
    draw happens under ``seed`` in a forked RNG, so the same seed gives the same adapter
    whatever ran before, and the caller's global RNG is left as it was."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=init, target_modules=list(target_modules))
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        denoiser.add_adapter(config)
    params = [p for n, p in denoiser.named_parameters() if "lora_" in n]
    if not params:
        raise ValueError(f"no module of {type(denoiser).__name__} matches lora_target_modules={list(target_modules)}")
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


@contextmanager
def adapters_disabled(denoiser) -> Iterator[None]:
    """The frozen reference model: the same weights with the adapters off. Re-enabled even
    when the body raises, so an error never leaves training on the reference."""
    denoiser.disable_adapters()
    try:
        yield
    finally:
        denoiser.enable_adapters()


def adapter_state_dict(denoiser) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(denoiser).items()}


def load_adapter_state_dict(denoiser, state: dict[str, torch.Tensor]) -> None:
    """Load a PEFT-keyed adapter state into a denoiser that has the adapter injected; takes the
    ``base_model.model.`` keys of PeftModel's files as well as bare ones."""
    from peft.utils import set_peft_model_state_dict

    state = {k.removeprefix(PEFT_PREFIX): v for k, v in state.items()}
    result = set_peft_model_state_dict(denoiser, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"adapter state has keys the model lacks: {unexpected[:3]}")


def save_lora(pipe, denoiser, component: str, folder: str | Path) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` (diffusers keys, prefix ``unet.`` or
    ``transformer.``, for ``pipe.load_lora_weights``) and the adapter as PEFT saves one
    (``adapter_config.json`` + ``adapter_model.safetensors``, for ``PeftModel.from_pretrained``
    on the denoiser), each file atomically (temp folder, then move)."""
    from diffusers.utils import convert_state_dict_to_diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = adapter_state_dict(denoiser)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        # The adapter metadata (rank, alpha, targets) travels with the weights, so that
        # load_lora_weights scales the update by alpha / rank exactly as in training.
        metadata = denoiser.peft_config["default"].to_dict()
        metadata["target_modules"] = sorted(metadata["target_modules"])
        type(pipe).save_lora_weights(tmp, **{f"{component}_lora_layers": convert_state_dict_to_diffusers(state),
                                             f"{component}_lora_adapter_metadata": metadata},
                                     safe_serialization=True)
        canonicalize_safetensors_header(Path(tmp) / LORA_WEIGHTS_NAME)  # same weights, same bytes
        shutil.move(str(Path(tmp) / LORA_WEIGHTS_NAME), str(folder / LORA_WEIGHTS_NAME))
    atomic_write_text(folder / ADAPTER_CONFIG_NAME, adapter_config_json(denoiser.peft_config["default"]))
    atomic_save_safetensors({PEFT_PREFIX + k: v for k, v in state.items()}, folder / ADAPTER_STATE_NAME)
    return folder / LORA_WEIGHTS_NAME


def adapter_config_json(config) -> str:
    """``LoraConfig.save_pretrained``'s file, with its sets sorted (PEFT lists them in hash
    order, which changes per process; the same run should write the same bytes)."""
    data = {k: sorted(v) if isinstance(v, set) else v for k, v in config.to_dict().items()}
    return json.dumps(data, indent=2, sort_keys=True)


def merge_and_save(pipe_loader, lora_folder: str | Path, out: str | Path) -> Path:
    """A full pipeline folder with the LoRA fused **and unloaded**, so no PEFT wrapper names
    remain in the saved weights (a known pitfall of fused exports)."""
    out = Path(out)
    pipe = pipe_loader()
    pipe.load_lora_weights(str(lora_folder), adapter_name="duo")
    pipe.fuse_lora(adapter_names=["duo"], lora_scale=1.0)
    pipe.unload_lora_weights()
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
    return out
