"""CLIP score and FID in CLIP feature space, for real models.

The paper reports FID (Inception features) and CLIP score on COCO captions. Inception's
weights come through torchvision, which this project keeps out of its install, so FID here
is computed on CLIP image embeddings (the "FID_CLIP" of Kynkäänniemi et al., 2023, which
tracks human judgement at least as well); CLIP score is Hessel et al.'s
``100 · max(cos(image, text), 0)``. Any CLIP checkpoint loads by hub id or folder
(``openai/clip-vit-large-patch14`` is the usual one); ShapeWorld uses its own stand-ins
(``perceptual.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class CLIPMetrics:
    """One CLIP model for both figures; images are PIL, prompts strings."""

    def __init__(self, model: str | Path = "openai/clip-vit-large-patch14", device: str = "cpu",
                 batch_size: int = 32) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.model = CLIPModel.from_pretrained(str(model), use_safetensors=True).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model))
        self.image_processor = AutoImageProcessor.from_pretrained(str(model))
        self.device, self.batch_size = device, batch_size
        self.name = f"clip:{model}"

    @torch.no_grad()
    def image_features(self, images) -> np.ndarray:
        """L2-normalised image embeddings, one row per image."""
        out = []
        for i in range(0, len(images), self.batch_size):
            pixels = self.image_processor(images=[im.convert("RGB") for im in images[i : i + self.batch_size]],
                                          return_tensors="pt")["pixel_values"]
            feats = self.model.get_image_features(pixel_values=pixels.to(self.device))
            out.append(torch.nn.functional.normalize(_tensor(feats).float(), dim=-1).cpu())
        return torch.cat(out).numpy().astype(np.float64)

    @torch.no_grad()
    def text_features(self, prompts) -> np.ndarray:
        out = []
        max_length = self.model.config.text_config.max_position_embeddings
        for i in range(0, len(prompts), self.batch_size):
            tokens = self.tokenizer(list(prompts[i : i + self.batch_size]), padding=True, truncation=True,
                                    max_length=max_length, return_tensors="pt")
            feats = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                 attention_mask=tokens["attention_mask"].to(self.device))
            out.append(torch.nn.functional.normalize(_tensor(feats).float(), dim=-1).cpu())
        return torch.cat(out).numpy().astype(np.float64)

    def clip_scores(self, images, prompts) -> np.ndarray:
        """Per image, 100 · max(cos(image, its prompt), 0)."""
        if len(images) != len(prompts):
            raise ValueError(f"CLIP score needs one prompt per image, got {len(images)} images, {len(prompts)} prompts")
        cos = (self.image_features(images) * self.text_features(prompts)).sum(axis=1)
        return 100 * np.maximum(cos, 0)


def _tensor(output) -> torch.Tensor:
    """get_*_features returns a tensor, or a model output holding it in newer transformers."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]
