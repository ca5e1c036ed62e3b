"""duo-unlearn: make a text-to-image diffusion model forget an unsafe visual concept.

Direct Unlearning Optimization (Park et al., NeurIPS 2024): preference optimisation on
(unsafe image, safe SDEdit twin) pairs, with an output-preserving regulariser, as a LoRA
on the denoiser of a diffusers pipeline.

Everything a notebook needs is importable from here; the names resolve on first use, so
``import duo_unlearn`` (and ``duo --help``) does not import torch or diffusers::

    from duo_unlearn import PairsConfig, make_pairs, DUOConfig, train, AttackConfig, attack
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("duo-unlearn")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

# public name -> (module, attribute)
_EXPORTS = {
    "DUOConfig": ("duo_unlearn.config", "DUOConfig"),
    "train": ("duo_unlearn.trainer", "train"),
    "PairsConfig": ("duo_unlearn.pairs", "PairsConfig"),
    "make_pairs": ("duo_unlearn.pairs", "make_pairs"),
    "AttackConfig": ("duo_unlearn.attacks.base", "AttackConfig"),
    "attack": ("duo_unlearn.attacks", "run_attack"),
    "EvalConfig": ("duo_unlearn.evaluation.config", "EvalConfig"),
    "evaluate": ("duo_unlearn.evaluation", "run_eval"),
    "TuneConfig": ("duo_unlearn.tuning", "TuneConfig"),
    "tune": ("duo_unlearn.tuning", "run_tune"),
    "load_pipeline": ("duo_unlearn.pipelines", "load_pipeline"),
    "duo_loss": ("duo_unlearn.losses", "duo_loss"),
    "output_preservation_loss": ("duo_unlearn.losses", "output_preservation_loss"),
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'duo_unlearn' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

