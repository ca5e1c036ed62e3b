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
import sys
import types
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
    "EvalConfig": ("duo_unlearn.evaluate", "EvalConfig"),
    "load_pipeline": ("duo_unlearn.pipelines", "load_pipeline"),
    "duo_loss": ("duo_unlearn.losses", "duo_loss"),
    "output_preservation_loss": ("duo_unlearn.losses", "output_preservation_loss"),
}

__all__ = [*_EXPORTS, "evaluate", "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'duo_unlearn' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return self.run_eval(*args, **kwargs)


class _Package(types.ModuleType):
    """``duo_unlearn.evaluate`` names both the eval submodule and, as the public API promises,
    the eval entry point: it is the submodule, made callable (``evaluate(cfg)`` runs
    ``run_eval(cfg)``), so ``from duo_unlearn import evaluate``, ``evaluate.EvalConfig`` and
    ``import duo_unlearn.evaluate as m`` all work whichever is imported first."""

    @property
    def evaluate(self):
        module = importlib.import_module("duo_unlearn.evaluate")
        module.__class__ = _CallableModule
        return module

    @evaluate.setter
    def evaluate(self, value) -> None:  # the import system binds the submodule here; the property serves it
        pass


sys.modules[__name__].__class__ = _Package
