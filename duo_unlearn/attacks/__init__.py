"""Red-teaming attacks against unlearned models, behind one interface (`duo attack`).

The attacks themselves (``methods``, which needs torch) load on first use, so the CLI can
build its parser from ``AttackConfig`` without importing torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from duo_unlearn.attacks.base import ATTACKS as _REGISTRY
from duo_unlearn.attacks.base import AttackConfig, AttackResult, cached_result

if TYPE_CHECKING:
    from duo_unlearn.attacks.methods import ConceptTask

_FROM_METHODS = ("ConceptTask", "effective_budget", "shapeworld_task")

__all__ = ["ATTACKS", "AttackConfig", "AttackResult", "ConceptTask", "attack", "load_task_for", "run_attack",
           "shapeworld_task"]


def __getattr__(name: str):
    if name == "ATTACKS":  # the registry, filled by importing the attacks
        importlib.import_module("duo_unlearn.attacks.methods")
        return _REGISTRY
    if name in _FROM_METHODS:
        return getattr(importlib.import_module("duo_unlearn.attacks.methods"), name)
    raise AttributeError(f"module 'duo_unlearn.attacks' has no attribute {name!r}")


def attack(pipe, detector, task: ConceptTask, cfg: AttackConfig, folder: str | Path | None = None,
           settings: dict | None = None) -> AttackResult:
    """Run one attack on a loaded pipeline; with ``folder``, reuse or save the result there
    (the main process saves; under `accelerate launch` every process must call this)."""
    from duo_unlearn.attacks.methods import effective_budget  # importing it registers the attacks
    from duo_unlearn.distributed import is_main_process, wait_for_everyone

    if cfg.method not in _REGISTRY:
        raise ValueError(f"unknown attack {cfg.method!r}; one of {sorted(_REGISTRY)}")
    settings = settings if settings is not None else {**cfg.settings(), "detector": detector.settings()}
    # the budget actually spent and the task attacked: a changed default or task is recomputed, not reused
    settings = {**settings, "effective_budget": effective_budget(cfg), "task": task.fingerprint()}
    if folder is not None:
        cached = cached_result(folder, settings)
        if cached is not None:
            return cached
    result = _REGISTRY[cfg.method](pipe, detector, task, cfg)
    if folder is not None:
        if is_main_process():
            result.save(folder, settings)
        wait_for_everyone()
    return result


def load_task_for(pipe, task_file: str | None, n: int, seed: int) -> ConceptTask:
    """The task in ``task_file`` (images at the pipeline's resolution), or ShapeWorld's own."""
    if task_file:
        from duo_unlearn.attacks.task_file import load_task
        from duo_unlearn.pipelines import native_resolution

        return load_task(task_file, native_resolution(pipe))
    from duo_unlearn.attacks.methods import shapeworld_task

    return shapeworld_task(n, seed=seed)


def run_attack(cfg: AttackConfig) -> AttackResult:
    """`duo attack`: load the target (base + optional LoRA), the detector and the task, attack.
    Under `accelerate launch` the images are rendered in batches shared across processes
    (``distributed.split_generation``), identical to one process's; the searches themselves
    still run whole on every process."""
    from duo_unlearn.preflight import check_attack

    check_attack(cfg)  # every input, before the pipeline loads
    from duo_unlearn.detectors import get_detector
    from duo_unlearn.distributed import is_main_process, split_generation
    from duo_unlearn.grids import save_grid
    from duo_unlearn.pipelines import default_device, inference_dtype, load_pipeline

    pipe = load_pipeline(cfg.pretrained_model, torch_dtype=inference_dtype(cfg.dtype), variant=cfg.variant,
                         revision=cfg.revision).to(default_device())
    pipe.set_progress_bar_config(disable=True)
    if cfg.lora:
        pipe.load_lora_weights(cfg.lora)
    kwargs = {} if cfg.detector_threshold is None else {"threshold": cfg.detector_threshold}
    detector = get_detector(cfg.detector, **kwargs)
    task = load_task_for(pipe, cfg.task_file, max(cfg.num_prompts, 8), cfg.seed)
    with split_generation():
        result = attack(pipe, detector, task, cfg, folder=Path(cfg.output_dir) / cfg.method)
    if is_main_process():
        save_grid(Path(cfg.output_dir) / cfg.method / "grid.png", result.images[:32], 8)
    return result
