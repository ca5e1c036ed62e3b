"""What every red-teaming attack shares: its config, its result, and how results are kept.

An attack takes the *target* pipeline (the unlearned model, or the base model to show the
attack works at all), a concept detector and a seed, and returns prompts (or learned
token embeddings), the images they produce and, per image, whether the concept came back.
Results are saved as ``result.json`` plus PNGs; a finished result with the same settings
is loaded instead of recomputed, so an interrupted evaluation resumes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from PIL import Image

from duo_unlearn.configs import InferenceDtype, check_choices
from duo_unlearn.io import atomic_save_image, atomic_save_safetensors, atomic_write_json, load_image


@dataclasses.dataclass
class AttackConfig:
    """Settings shared by every attack (`duo attack`)."""

    method: Literal["paraphrase", "ring-a-bell", "concept-inversion", "sneakyprompt", "unlearndiffatk",
                    "adaptive-inversion", "embedding-probe"] = "ring-a-bell"
    """The attack (prompt searches in attacks/methods.py, learned embeddings in attacks/inversion.py)."""
    pretrained_model: str = "shapeworld"
    """Base pipeline ('shapeworld', a folder or a hub id)."""
    dtype: InferenceDtype = "fp32"
    """Inference precision: 'fp32' (default), 'bf16', or 'fp16' (GPU only; refused on a CPU)."""
    variant: str | None = None
    """Weight-file variant of a folder or hub model, e.g. 'fp16' (loads ``*.fp16.safetensors``)."""
    revision: str | None = None
    """Hub branch, tag or commit of pretrained_model."""
    lora: str | None = None
    """Folder with pytorch_lora_weights.safetensors to attack; None attacks the base model."""
    output_dir: str = "attack-output"
    """Results go to output_dir/method/ (result.json, images/, grid.png)."""
    task_file: str | None = None
    """YAML with the attacker's prompts and concept images (attacks/task_file.py); required for a
    real model, ShapeWorld builds its own."""
    detector: str = "shapeworld"
    """Detector judging whether the concept came back ('shapeworld', 'nudenet')."""
    detector_threshold: float | None = None
    """Override the detector's calibrated threshold."""
    num_prompts: int = 8
    """Attack prompts (or target images) to build."""
    images_per_prompt: int = 2
    """Seeds rendered per attack prompt."""
    seed: int = 0
    """Seeds the search and every rendered image."""
    num_inference_steps: int = 25
    """Denoising steps per generated image."""
    guidance_scale: float = 7.5
    """Classifier-free guidance for generated images."""
    budget: int = 0
    """Attack-specific effort (generations, steps, queries); 0 = the method's ShapeWorld default."""
    num_tokens: int = 0
    """Learned tokens of the inversion attacks (1-4 is typical); 0 = the method's default
    (concept-inversion 1, as in its paper; adaptive-inversion 4)."""

    confirm_seeds: int = 0
    """SneakyPrompt: fresh seeds on which a bypass must also show the concept before it ends the
    search (one more query); 0 ends it on the screening seeds alone, as before this option."""

    def __post_init__(self) -> None:
        check_choices(self)
        if self.confirm_seeds < 0:
            raise ValueError(f"AttackConfig.confirm_seeds must be >= 0, got {self.confirm_seeds}")

    def settings(self) -> dict:
        """The fields that define a result, for the cache key: a field added later enters it only
        when set, so results cached before it existed are still reused."""
        fields = dataclasses.asdict(self)
        for name, default in _ADDED_LATER.items():
            if fields[name] == default:
                del fields[name]
        return fields


_ADDED_LATER = {"confirm_seeds": 0}


@dataclasses.dataclass
class AttackResult:
    method: str
    prompts: list[str]
    images: list[Image.Image]
    scores: np.ndarray
    threshold: float
    seeds: list[int]
    extra: dict = dataclasses.field(default_factory=dict)
    tensors: dict[str, dict] = dataclasses.field(default_factory=dict)
    """What the attack learned, saved as ``<name>.safetensors`` beside result.json (e.g.
    ``learned_embeds``: a textual inversion for ``pipe.load_textual_inversion``)."""

    @property
    def success(self) -> np.ndarray:
        """Per image: the concept is back (the attack succeeded)."""
        return self.scores >= self.threshold

    @property
    def attack_success_rate(self) -> float:
        return float(self.success.mean()) if len(self.scores) else 0.0

    @property
    def defence_success_rate(self) -> float:
        """DSR: the share of attack images in which the detector finds no concept."""
        return 1.0 - self.attack_success_rate

    def save(self, folder: str | Path, settings: dict) -> Path:
        folder = Path(folder)
        for i, img in enumerate(self.images):
            atomic_save_image(img, folder / "images" / f"{i:04d}.png")
        for name, tensors in self.tensors.items():
            atomic_save_safetensors({k: v.contiguous() for k, v in tensors.items()}, folder / f"{name}.safetensors",
                                    metadata={"method": self.method})
        atomic_write_json(folder / "result.json", {
            "method": self.method, "settings": settings, "prompts": self.prompts, "seeds": self.seeds,
            "scores": [float(s) for s in self.scores], "threshold": self.threshold,
            "attack_success_rate": self.attack_success_rate, "defence_success_rate": self.defence_success_rate,
            "num_images": len(self.images), "extra": self.extra,
            "tensor_files": sorted(f"{name}.safetensors" for name in self.tensors),
        })
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "AttackResult":
        folder = Path(folder)
        data = json.loads((folder / "result.json").read_text())
        images = [load_image(folder / "images" / f"{i:04d}.png") for i in range(data["num_images"])]
        tensors = {}
        for file in data.get("tensor_files", []):
            from safetensors.torch import load_file

            tensors[file.removesuffix(".safetensors")] = load_file(folder / file)
        return cls(data["method"], data["prompts"], images, np.array(data["scores"]), data["threshold"],
                   data["seeds"], data.get("extra", {}), tensors)


def cached_result(folder: str | Path, settings: dict) -> AttackResult | None:
    """A finished result made with exactly these settings, or None."""
    path = Path(folder) / "result.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if data.get("settings") != json.loads(json.dumps(settings)):
        return None
    return AttackResult.load(folder)


ATTACKS: dict[str, Callable] = {}


def register_attack(name: str):
    def wrap(fn):
        ATTACKS[name] = fn
        return fn
    return wrap
