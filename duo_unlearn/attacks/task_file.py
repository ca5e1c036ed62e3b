"""A ConceptTask for a real model, read from YAML: what the attacker knows about the concept.

ShapeWorld builds its task itself (``shapeworld_task``); for Stable Diffusion and friends the
user writes the prompts and points at a folder of concept images::

    concept_phrases: [nude, naked]                    # words the unsafe prompts use
    unsafe_prompts: ["a nude woman on a beach", ...]  # each contains a concept phrase
    concept_pairs:                                    # Ring-A-Bell's concept vector
      - ["a nude woman on a beach", "a woman on a beach"]
    base_prompts: ["a woman on a beach", ...]         # safe prompts the vector is added to
    natural_prompts_file: i2p_nudity.txt              # or natural_prompts: [...]; one per line
    concept_images_dir: concept_images/               # PNG/JPEG/WebP/BMP, any size
    concept_image_prompt: "a photo of {}"             # '{}' is where learned tokens go
    safe_twins_dir: pairs/safe/                       # optional: each concept image without the
                                                      # concept, same sorted order (adaptive-inversion)

Relative paths are taken from the YAML file's folder. Images are centre-cropped and resized
to the pipeline's resolution, as diffusers' textual-inversion script does.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from PIL import Image

from duo_unlearn.attacks.methods import ConceptTask
from duo_unlearn.io import IMAGE_SUFFIXES, image_files, load_image


def _centre_square(image: Image.Image, size: int) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def _strings(data: dict, key: str, where: Path) -> list[str]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}: '{key}' must be a non-empty list of prompts")
    return [v.strip() for v in value]


def _lines(path: Path, where: Path, key: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{where}: {key} {path} not found")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{where}: {key} {path} holds no prompts")
    return lines


def load_task(path: str | Path, image_size: int) -> ConceptTask:
    """Read and check a task YAML; every error names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of task fields")
    root = path.parent

    phrases = _strings(data, "concept_phrases", path)
    unsafe = _strings(data, "unsafe_prompts", path)
    for prompt in unsafe:
        if not any(p in prompt for p in phrases):
            raise ValueError(f"{path}: unsafe prompt {prompt!r} contains none of concept_phrases {phrases}")
    pairs = data.get("concept_pairs")
    if not isinstance(pairs, list) or not pairs or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs):
        raise ValueError(f"{path}: 'concept_pairs' must be a list of [with concept, without concept] prompt pairs")
    base = _strings(data, "base_prompts", path)
    if "natural_prompts_file" in data:
        natural = _lines(root / data["natural_prompts_file"], path, "natural_prompts_file")
    else:
        natural = _strings(data, "natural_prompts", path)

    folder = root / str(data.get("concept_images_dir", ""))
    if "concept_images_dir" not in data or not folder.is_dir():
        raise FileNotFoundError(f"{path}: concept_images_dir {folder} is not a folder of concept images")
    files = image_files(folder)
    if not files:
        raise ValueError(f"{path}: concept_images_dir {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    images = [_centre_square(load_image(f), image_size) for f in files]
    template = data.get("concept_image_prompt", "{}")
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"{path}: concept_image_prompt must contain '{{}}' exactly once, got {template!r}")
    twins = None
    if "safe_twins_dir" in data:
        twin_folder = root / str(data["safe_twins_dir"])
        twin_files = image_files(twin_folder) if twin_folder.is_dir() else []
        if len(twin_files) != len(files):
            raise ValueError(f"{path}: safe_twins_dir {twin_folder} must hold one image per concept image "
                             f"({len(files)}), in the same sorted order; found {len(twin_files)}")
        twins = [_centre_square(load_image(f), image_size) for f in twin_files]
    return ConceptTask(natural_prompts=natural, concept_pairs=[tuple(p) for p in pairs], base_prompts=base,
                       unsafe_prompts=unsafe, concept_phrases=phrases, concept_images=images,
                       concept_image_prompts=[template] * len(images), safe_twins=twins)

