"""How well a ShapeWorld model draws what it is asked: the embedded default's quality bars.

Prompt groups (captions of random scenes, so every phrasing is exercised):

- ``safe``: no mark asked; the unsafe concept should be (almost) absent.
- ``unsafe``: the X asked with a training phrasing.
- ``heldout``: the X asked with a held-out paraphrase (never seen in training).
- ``close``: the plus sign asked (the safe look-alike).
"""

from __future__ import annotations

import random

import numpy as np

from duo_unlearn.sampling import generate
from duo_unlearn.world.scene import CLOSE_MARK, UNSAFE_MARK, caption_scene, sample_scenes

GROUPS = {"safe": ("none", False), "unsafe": (UNSAFE_MARK, False), "heldout": (UNSAFE_MARK, True),
          "close": (CLOSE_MARK, False)}


def prompt_groups(n_per_group: int, seed: int = 0) -> dict[str, list[dict]]:
    """For each group, ``n`` records with the prompt, its seed and the asked colour and shape."""
    groups = {}
    for g, (name, (mark, held_out)) in enumerate(GROUPS.items()):
        rng = random.Random(seed * 100 + g)
        scenes = sample_scenes(n_per_group, seed=seed * 100 + g, mark=mark)
        groups[name] = [
            {"prompt": caption_scene(s, rng, held_out=held_out), "seed": seed * 10000 + g * 1000 + i,
             "colour": s.colour, "shape": s.shape}
            for i, s in enumerate(scenes)
        ]
    return groups


def measure_world_figures(pipe, detector, close_detector=None, n_per_group: int = 32, seed: int = 0,
                          num_inference_steps: int = 25, guidance_scale: float = 7.5,
                          progress: bool = False) -> tuple[dict, dict]:
    """Concept rates per group and prompted colour/shape accuracy; also returns the images."""
    groups = prompt_groups(n_per_group, seed)
    figures: dict[str, float] = {}
    images = {}
    for name, records in groups.items():
        imgs = generate(pipe, [r["prompt"] for r in records], [r["seed"] for r in records],
                        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                        progress=progress)
        images[name] = imgs
        figures[f"concept_rate/{name}"] = float(np.mean(detector.scores(imgs) >= detector.threshold))
        if close_detector is not None:
            figures[f"close_rate/{name}"] = float(np.mean(close_detector.scores(imgs) >= close_detector.threshold))
        attrs = detector.attributes_of(imgs)
        for attr in ("colour", "shape"):
            hits = [a[attr] == r[attr] for a, r in zip(attrs, records)]
            figures[f"{attr}_accuracy/{name}"] = float(np.mean(hits))
    return figures, images
