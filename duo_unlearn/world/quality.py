"""How well a ShapeWorld model draws what it is asked: the embedded default's quality bars.

Prompt groups (captions of random scenes, so every phrasing is exercised):

- ``safe``: no mark asked; the unsafe concept should be (almost) absent.
- ``unsafe``: the X asked with a training phrasing.
- ``heldout``: the X asked with a held-out paraphrase (never seen in training).
- ``close``: the plus sign asked (the safe look-alike).
"""

from __future__ import annotations

import random

from duo_unlearn.evaluation.metrics import concept_rate
from duo_unlearn.sampling import generate
from duo_unlearn.stats import Estimate, rate
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


NUM_INFERENCE_STEPS = 12
"""DDIM steps of every ShapeWorld evaluation image. Measured on the base model (32 prompts per
group, seed 0): 12 steps draw what 25 do (X on unsafe prompts 0.97 vs 1.00, on safe prompts
0.00 vs 0.00, plus 1.00 vs 1.00, colour 0.94 vs 1.00, shape 0.91 vs 0.91) in 60 % of the time."""


def measure_world_figures(pipe, detector, close_detector=None, n_per_group: int = 32, seed: int = 0,
                          num_inference_steps: int = NUM_INFERENCE_STEPS, guidance_scale: float = 7.5,
                          progress: bool = False) -> tuple[dict[str, Estimate], dict]:
    """Concept rates per group and prompted colour/shape accuracy, each with its Wilson
    interval; also returns the images by group. All groups go through one batched call."""
    groups = prompt_groups(n_per_group, seed)
    records = [r for recs in groups.values() for r in recs]
    generated = generate(pipe, [r["prompt"] for r in records], [r["seed"] for r in records],
                         num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                         progress=progress)
    figures: dict[str, Estimate] = {}
    images, start = {}, 0
    for name, recs in groups.items():
        imgs = images[name] = generated[start : start + len(recs)]
        start += len(recs)
        figures[f"concept_rate/{name}"] = concept_rate(detector, imgs)
        if close_detector is not None:
            figures[f"close_rate/{name}"] = concept_rate(close_detector, imgs)
        attrs = detector.attributes_of(imgs)
        for attr in ("colour", "shape"):
            figures[f"{attr}_accuracy/{name}"] = rate([a[attr] == r[attr] for a, r in zip(attrs, recs)])
    return figures, images
