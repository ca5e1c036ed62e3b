"""duo-unlearn: make a text-to-image diffusion model forget an unsafe visual concept.

Direct Unlearning Optimization (Park et al., NeurIPS 2024): preference optimisation on
(unsafe image, safe SDEdit twin) pairs, with an output-preserving regulariser, as a LoRA
on the denoiser of a diffusers pipeline.
"""

__version__ = "0.1.0"

from duo_unlearn.config import DUOConfig
from duo_unlearn.losses import duo_loss, output_preservation_loss
from duo_unlearn.pipelines import load_pipeline

__all__ = ["DUOConfig", "duo_loss", "output_preservation_loss", "load_pipeline", "__version__"]
