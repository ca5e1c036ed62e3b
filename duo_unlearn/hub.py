"""The model card and the upload to the Hugging Face hub, for `duo train --push-to-hub`.

The card's metadata is huggingface_hub's ``ModelCardData``, finished by diffusers'
``populate_model_card`` (library name, tags), so the hub files it as a diffusers LoRA.
diffusers' ``load_or_create_model_card`` is not used: it first looks the card up on the
hub (a network call, an error offline) and its training template is TODO placeholders;
the card here is written locally at every export, pushed or not.
"""

from __future__ import annotations

import json
from pathlib import Path

# a resumable checkpoint is for the trainer, not for the people who load the LoRA
UPLOAD_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", ".*"]
SUMMARY_FILES = {"train_summary.json": "Training summary", "eval_summary.json": "Evaluation",
                 "figures.json": "Evaluation"}

_METHODS = {
    "duo": "DUO (Direct Unlearning Optimization, Park et al., NeurIPS 2024)",
    "esd": "ESD (Erased Stable Diffusion, Gandikota et al., ICCV 2023)",
    "uce": "UCE (Unified Concept Editing, Gandikota et al., WACV 2024)",
}


def _is_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name == "shapeworld" or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return "/" in name


def _settings(cfg) -> list[tuple[str, str]]:
    rows = [("method", cfg.method)]
    if cfg.method == "duo":
        rows += [("beta", f"{cfg.beta:g}"), ("learning rate", f"{cfg.resolved_learning_rate:.3g}"),
                 ("λ (output preservation)", f"{cfg.resolved_preservation_weight:.3g}"),
                 ("prompts", "pair prompts" if cfg.use_prompts else "empty"),
                 ("timesteps", f"[{cfg.timestep_range[0]}, {cfg.timestep_range[1]})")]
    elif cfg.method == "esd":
        rows += [("variant", f"ESD-{cfg.esd_variant}"), ("concept", cfg.esd_concept_prompt),
                 ("η", f"{cfg.esd_eta:g}"), ("learning rate", f"{cfg.resolved_learning_rate:.3g}")]
    else:
        rows += [("erased", "; ".join(cfg.uce_erase_prompts)), ("targets", "; ".join(cfg.uce_target_prompts))]
    if cfg.method != "uce":
        rows += [("LoRA", f"rank {cfg.lora_rank}, alpha {cfg.lora_alpha:g} on {', '.join(cfg.lora_target_modules)}"
                  if cfg.method == "duo" else f"rank {cfg.lora_rank}, alpha {cfg.lora_alpha:g}"),
                 ("steps × batch", f"{cfg.max_train_steps} × {cfg.train_batch_size}"),
                 ("seed", str(cfg.seed))]
    return rows


def _summaries(folder: Path) -> str:
    """Scalar entries of the summary files present in the folder, one table each."""
    parts = []
    for name, title in SUMMARY_FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        flat = _flatten(data) if isinstance(data, dict) else {}
        if flat:
            rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                             for k, v in flat.items())
            parts.append(f"## {title}\n\nFrom `{name}`:\n\n| | |\n|---|---|\n{rows}\n")
    return "\n".join(parts)


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float, str, bool)) and value is not None:
            out[f"{prefix}{key}"] = value
    return out


def model_card(cfg, folder: str | Path, repo_id: str | None = None) -> str:
    """README.md of a LoRA folder: what was erased and how, how to load it (diffusers, several
    LoRAs at once, PEFT), the settings, and the training/evaluation summaries found in ``folder``."""
    from diffusers.utils.hub_utils import populate_model_card
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    hub_base = _is_hub_id(cfg.pretrained_model)
    where = repo_id or str(folder)
    name = f"{cfg.method}-unlearning"
    if hub_base:
        load = (f'from diffusers import DiffusionPipeline\n\n'
                f'pipe = DiffusionPipeline.from_pretrained("{cfg.pretrained_model}")')
        base_text = f"[`{cfg.pretrained_model}`](https://huggingface.co/{cfg.pretrained_model})"
    elif cfg.pretrained_model == "shapeworld":
        load = 'from duo_unlearn import load_pipeline\n\npipe = load_pipeline("shapeworld")'
        base_text = ("the embedded ShapeWorld pipeline of duo-unlearn (a small StableDiffusionPipeline trained "
                     "from scratch on rendered shapes; `load_pipeline(\"shapeworld\")`)")
    else:
        load = f'from duo_unlearn import load_pipeline\n\npipe = load_pipeline("{cfg.pretrained_model}")'
        base_text = f"the local pipeline `{cfg.pretrained_model}`"
    component = _component(folder)
    settings = "\n".join(f"| {k} | {v} |" for k, v in _settings(cfg))
    body = f"""# {cfg.method.upper()} concept-unlearning LoRA

A LoRA that makes {base_text} forget a visual concept, trained with
duo-unlearn using {_METHODS[cfg.method]}.

## Use it

```python
{load}
pipe.load_lora_weights("{where}", adapter_name="{name}")
# unlearning LoRAs compose: load others, then weigh them together
pipe.set_adapters(["{name}"], adapter_weights=[1.0])
```

The same adapter in PEFT's own format (`adapter_config.json`, `adapter_model.safetensors`) loads
onto the denoiser with `peft.PeftModel.from_pretrained(pipe.{component}, "{where}")`.

## Settings

| | |
|---|---|
{settings}

All settings: `duo_config.yaml` (`duo train --config duo_config.yaml` repeats the run).

{_summaries(folder)}"""
    data = ModelCardData(base_model=cfg.pretrained_model if hub_base else None, library_name="diffusers",
                         pipeline_tag="text-to-image")
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.rstrip()}\n")
    tags = ["lora", "text-to-image", "concept-unlearning", "duo-unlearn", cfg.method]
    if not hub_base and cfg.pretrained_model == "shapeworld":
        tags.append("shapeworld")
    return str(populate_model_card(card, tags=tags))


def _component(folder: Path) -> str:
    """The denoiser the LoRA is for: 'transformer' (SD3) or 'unet'."""
    from safetensors import safe_open

    if not (folder / "pytorch_lora_weights.safetensors").is_file():
        return "unet"
    with safe_open(str(folder / "pytorch_lora_weights.safetensors"), "pt") as f:
        return "transformer" if any(k.startswith("transformer.") for k in f.keys()) else "unet"


def push_to_hub(cfg, folder: str | Path) -> str:
    """Create (or reuse) the model repository, point the card at it, and upload ``folder``
    without its checkpoints; returns the repository id (``cfg.hub_model_id``, or the folder's
    name under your account)."""
    from huggingface_hub import HfApi

    from duo_unlearn.io import atomic_write_text

    folder = Path(folder)
    api = HfApi()
    repo = api.create_repo(cfg.hub_model_id or folder.resolve().name, private=cfg.hub_private, exist_ok=True,
                           repo_type="model")
    atomic_write_text(folder / "README.md", model_card(cfg, folder, repo_id=repo.repo_id))
    api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), repo_type="model",
                      ignore_patterns=UPLOAD_IGNORE_PATTERNS, commit_message="Upload unlearning LoRA (duo-unlearn)")
    return repo.repo_id
