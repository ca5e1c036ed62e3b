"""Paired data for DUO by SDEdit: an unsafe image and its safe twin.

For each pair an unsafe image is generated from an unsafe prompt (or taken from a user's
folder), then noised part-way (``strength``) and denoised with the safe prompt, the unsafe
prompt as negative prompt (Meng et al., SDEdit, ICLR 2022). The twin keeps everything
unrelated to the concept: pose, background, colours. A detector keeps a pair only when the
unsafe image shows the concept and the twin does not (and, when the detector can judge it,
the twin kept shape, colour and background), retrying with new seeds a bounded number of
times.

Output folder::

    unsafe/00000.png  safe/00000.png  ...
    metadata.jsonl    one record per pair index, kept or rejected, with prompts, seeds,
                      strength and detector scores
    pairs_config.yaml the resolved PairsConfig

Every file is written atomically and ``metadata.jsonl`` only after its images, so a
re-run skips what is finished and a crash leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from duo_unlearn.configs import InferenceDtype, check_choices, config_to_yaml
from duo_unlearn.io import (
    IMAGE_SUFFIXES,
    atomic_save_image,
    atomic_write_text,
    image_files,
    load_image,
    read_jsonl,
    to_signed_tensor,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PairsConfig:
    """Settings of `duo pairs`."""

    output_dir: str = "duo-pairs"
    """Folder of the pair dataset (created; re-running resumes it)."""
    pretrained_model: str = "shapeworld"
    """'shapeworld', a local diffusers pipeline folder, or a hub id."""
    dtype: InferenceDtype = "fp32"
    """Inference precision: 'fp32' (default), 'bf16', or 'fp16' (GPU only; refused on a CPU)."""
    variant: str | None = None
    """Weight-file variant of a folder or hub model, e.g. 'fp16' (loads ``*.fp16.safetensors``)."""
    revision: str | None = None
    """Hub branch, tag or commit of pretrained_model."""
    unsafe_prompts: tuple[str, ...] = ("a red circle with a black x over it",)
    """Prompts that show the concept; pair i uses prompt i modulo their number."""
    safe_prompts: tuple[str, ...] = ("a red circle",)
    """The safe counterpart of each unsafe prompt (same count)."""
    num_pairs: int = 64
    """Pair indices to attempt (the paper uses 64 for nudity)."""
    unsafe_images_dir: str | None = None
    """Use these images as the unsafe side instead of generating them (sorted by name)."""
    strength: float = 0.75
    """SDEdit strength: the share of the diffusion trajectory re-run for the twin."""
    guidance_scale: float = 7.5
    """Classifier-free guidance for both sides (the paper: 7.5)."""
    num_inference_steps: int = 25
    """Denoising steps (SD: 50; ShapeWorld is fine with 25)."""
    detector: str = "shapeworld"
    """Concept detector ('shapeworld', 'nudenet', or a registered one)."""
    detector_threshold: float | None = None
    """Override the detector's calibrated threshold."""
    max_retries: int = 4
    """New seeds tried per side before a pair index is rejected."""
    require_same_content: bool = True
    """Also reject a twin that changed more than the concept, when the detector can tell
    (``same_content``; ShapeWorld: shape, colour, background). SDEdit at 0.75 often redraws
    the whole object in a small model, and such a pair teaches "change everything"."""
    seed: int = 0
    """Seeds every image; pair i, attempt a gets its own derived seed."""
    batch_size: int = 16
    """Images generated per pipeline call."""
    resolution: int | None = None
    """Image size; default: the pipeline's native size. User images must already have it."""

    def __post_init__(self) -> None:
        self.unsafe_prompts, self.safe_prompts = tuple(self.unsafe_prompts), tuple(self.safe_prompts)
        if not self.unsafe_prompts or len(self.unsafe_prompts) != len(self.safe_prompts):
            raise ValueError(f"PairsConfig: unsafe_prompts ({len(self.unsafe_prompts)}) and safe_prompts "
                             f"({len(self.safe_prompts)}) must be non-empty and of equal length")
        if not 0 < self.strength <= 1:
            raise ValueError(f"PairsConfig.strength must be in (0, 1], got {self.strength}")
        check_choices(self)
        if self.num_pairs <= 0 or self.max_retries <= 0 or self.batch_size <= 0:
            raise ValueError("PairsConfig: num_pairs, max_retries and batch_size must be positive")


def _seed(cfg: PairsConfig, index: int, attempt: int, side: int) -> int:
    return cfg.seed * 1_000_003 + index * 1009 + attempt * 17 + side


def _user_images(cfg: PairsConfig, resolution: int) -> list[Path]:
    folder = Path(cfg.unsafe_images_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"unsafe_images_dir not found: {folder}")
    files = image_files(folder)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    for f in files:  # fail before any work if one is corrupt or mis-sized
        load_image(f, resolution)
    return files


def make_pairs(cfg: PairsConfig, pipe=None, detector=None) -> dict:
    """Build (or resume) the pair dataset; returns counts of kept and rejected pairs."""
    from duo_unlearn.preflight import check_pairs

    check_pairs(cfg, load_model=pipe is None, load_detector=detector is None)  # before any model loads
    from diffusers import AutoPipelineForImage2Image

    from duo_unlearn.detectors import get_detector
    from duo_unlearn.distributed import gather_objects, process_state
    from duo_unlearn.pipelines import default_device, inference_dtype, load_pipeline, native_resolution

    out = Path(cfg.output_dir)
    if pipe is None:
        pipe = load_pipeline(cfg.pretrained_model, torch_dtype=inference_dtype(cfg.dtype), variant=cfg.variant,
                             revision=cfg.revision).to(default_device())
    out.mkdir(parents=True, exist_ok=True)
    pipe.set_progress_bar_config(disable=True)
    img2img = AutoPipelineForImage2Image.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    if detector is None:
        kwargs = {} if cfg.detector_threshold is None else {"threshold": cfg.detector_threshold}
        detector = get_detector(cfg.detector, **kwargs)
    judge = detector if cfg.require_same_content and hasattr(detector, "same_content") else None
    resolution = cfg.resolution or native_resolution(pipe)
    user_files = _user_images(cfg, resolution) if cfg.unsafe_images_dir else None
    num_pairs = len(user_files) if user_files else cfg.num_pairs

    state = process_state()
    size, rank, main = state.num_processes, state.process_index, state.is_main_process
    if main:
        atomic_write_text(out / "pairs_config.yaml", config_to_yaml(cfg))
    meta_path = out / "metadata.jsonl"
    records = {r["index"]: r for r in read_jsonl(meta_path)} if meta_path.exists() else {}
    todo = [i for i in range(num_pairs) if i not in records]
    if len(todo) < num_pairs:
        logger.info("resuming %s: %d of %d pair indices already done", out, num_pairs - len(todo), num_pairs)

    # one batch per process per round; the main process writes the round's images, then metadata.jsonl
    batches = [todo[s : s + cfg.batch_size] for s in range(0, len(todo), cfg.batch_size)]
    for first in tqdm(range(0, len(batches), size), desc="pairs", disable=not main):
        mine = batches[first + rank] if first + rank < len(batches) else []
        made = gather_objects(_pair_batch(cfg, mine, pipe, img2img, detector, judge, user_files, resolution)
                              if mine else [])
        for record, unsafe_image, safe_image in made:
            if main and record["kept"]:
                atomic_save_image(unsafe_image, out / record["unsafe_image"])
                atomic_save_image(safe_image, out / record["safe_image"])
            records[record["index"]] = record
        if main:
            atomic_write_text(meta_path, "".join(json.dumps(records[k]) + "\n" for k in sorted(records)))

    kept = sum(r["kept"] for r in records.values())
    summary = {"attempted": len(records), "kept": kept, "rejected": len(records) - kept,
               "keep_rate": kept / max(len(records), 1)}
    logger.info("pairs in %s: %s", out, summary)
    return summary


def _pair_batch(cfg: PairsConfig, batch: list[int], pipe, img2img, detector, judge, user_files, resolution):
    """One batch of pair indices: (record, unsafe image, safe image) per index, images None
    where the pair was rejected. Depends on nothing but the batch, so any process may run it."""
    import torch

    from duo_unlearn.sampling import generate

    unsafe_p = {i: cfg.unsafe_prompts[i % len(cfg.unsafe_prompts)] for i in batch}
    safe_p = {i: cfg.safe_prompts[i % len(cfg.safe_prompts)] for i in batch}
    unsafe_img, unsafe_seed, unsafe_score = {}, {}, {}
    if user_files:
        imgs = [load_image(user_files[i], resolution) for i in batch]
        for i, img, s in zip(batch, imgs, detector.scores(imgs)):
            unsafe_img[i], unsafe_seed[i], unsafe_score[i] = img, None, float(s)
    else:
        pending = list(batch)
        for attempt in range(cfg.max_retries):
            if not pending:
                break
            seeds = [_seed(cfg, i, attempt, 0) for i in pending]
            imgs = generate(pipe, [unsafe_p[i] for i in pending], seeds, cfg.num_inference_steps,
                            cfg.guidance_scale, batch_size=cfg.batch_size)
            scores = detector.scores(imgs)
            for i, img, seed, s in zip(pending, imgs, seeds, scores):
                unsafe_img[i], unsafe_seed[i], unsafe_score[i] = img, seed, float(s)
            pending = [i for i, s in zip(pending, scores) if s < detector.threshold]
    # safe twins by SDEdit, only for unsafe images that show the concept
    safe_img, safe_seed, safe_score, same_content = {}, {}, {}, {}
    pending = [i for i in batch if unsafe_score[i] >= detector.threshold]
    for attempt in range(cfg.max_retries):
        if not pending:
            break
        seeds = [_seed(cfg, i, attempt, 1) for i in pending]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        imgs = img2img(prompt=[safe_p[i] for i in pending], negative_prompt=[unsafe_p[i] for i in pending],
                       image=[unsafe_img[i] for i in pending], strength=cfg.strength,
                       guidance_scale=cfg.guidance_scale, num_inference_steps=cfg.num_inference_steps,
                       generator=gens).images
        scores = detector.scores(imgs)
        consistent = (judge.same_content([unsafe_img[i] for i in pending], imgs) if judge
                      else np.ones(len(imgs), dtype=bool))
        for i, img, seed, s, same in zip(pending, imgs, seeds, scores, consistent):
            safe_img[i], safe_seed[i], safe_score[i], same_content[i] = img, seed, float(s), bool(same)
        pending = [i for i, s, same in zip(pending, scores, consistent) if s >= detector.threshold or not same]
    made = []
    for i in batch:
        kept = (unsafe_score[i] >= detector.threshold and safe_score.get(i, 1.0) < detector.threshold
                and same_content.get(i, False))
        record = {"index": i, "kept": bool(kept), "unsafe_prompt": unsafe_p[i], "safe_prompt": safe_p[i],
                  "unsafe_seed": unsafe_seed[i], "safe_seed": safe_seed.get(i), "strength": cfg.strength,
                  "guidance_scale": cfg.guidance_scale, "unsafe_score": unsafe_score[i],
                  "safe_score": safe_score.get(i), "same_content": same_content.get(i),
                  "detector": detector.settings()}
        if user_files:
            record["source_image"] = str(user_files[i])
        if kept:
            record["unsafe_image"] = f"unsafe/{i:05d}.png"
            record["safe_image"] = f"safe/{i:05d}.png"
        made.append((record, unsafe_img[i] if kept else None, safe_img.get(i) if kept else None))
    return made


@dataclasses.dataclass
class PairDataset:
    """Kept pairs of a pair folder, as float tensors in [-1, 1]."""

    unsafe: torch.Tensor
    safe: torch.Tensor
    unsafe_prompts: list[str]
    safe_prompts: list[str]
    records: list[dict]

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def load(cls, folder: str | Path, resolution: int | None = None) -> "PairDataset":
        """Validate everything before training starts: missing, corrupt or mis-sized images,
        unequal sides and empty datasets are errors that name the file."""
        folder = Path(folder)
        meta = folder / "metadata.jsonl"
        if not meta.is_file():
            raise FileNotFoundError(f"{folder} is not a pair dataset: no metadata.jsonl (make one with `duo pairs`)")
        records = [r for r in read_jsonl(meta) if r.get("kept", True)]
        if not records:
            raise ValueError(f"{meta} lists no kept pairs")
        for r in records:
            missing = [k for k in ("unsafe_image", "safe_image") if not r.get(k)]
            if missing:
                raise ValueError(f"{meta}: pair {r.get('index')} has no {missing[0]}")
        n_unsafe = len(list((folder / "unsafe").glob("*.png"))) if (folder / "unsafe").is_dir() else 0
        n_safe = len(list((folder / "safe").glob("*.png"))) if (folder / "safe").is_dir() else 0
        if n_unsafe != n_safe:
            raise ValueError(f"{folder}: {n_unsafe} unsafe images but {n_safe} safe images; pairs must match")
        unsafe, safe = [], []
        for r in records:
            u = load_image(folder / r["unsafe_image"], resolution)
            s = load_image(folder / r["safe_image"], resolution or u.size[0])  # raises on a size mismatch
            if resolution is None:
                resolution = u.size[0]
            unsafe.append(u)
            safe.append(s)
        return cls(to_signed_tensor(unsafe), to_signed_tensor(safe), [r.get("unsafe_prompt", "") for r in records],
                   [r.get("safe_prompt", "") for r in records], records)
