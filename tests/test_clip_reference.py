"""Our CLIP score equals torchmetrics' CLIPScore on the same (tiny, random) CLIP model.

torchmetrics is not in the pinned install (it runs here without torchvision; add it to run
this test). Its 1.9 release expects ``get_*_features`` to return tensors, which transformers 5
wraps in a model output, so the model is handed over with a thin unwrapping shim."""

import numpy as np
import pytest
import torch
from PIL import Image

from duo_unlearn.clip_metrics import CLIPMetrics, _tensor
from duo_unlearn.testing import save_tiny_clip_model


class _Unwrapped(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        return _tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs):
        return _tensor(self.model.get_text_features(*args, **kwargs))


def test_clip_score_matches_torchmetrics(tmp_path):
    pytest.importorskip("torchmetrics")
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    folder = tmp_path / "clip"
    save_tiny_clip_model(folder)
    model = CLIPModel.from_pretrained(str(folder))
    with torch.no_grad():  # this random model's cosines are all negative (score 0); flipped, they are not
        model.text_projection.weight.neg_()
    model.save_pretrained(str(folder))

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(8)]
    prompts = [f"a photo of {w}" for w in ("a dog", "a cat", "red", "blue")] * 2
    ours = CLIPMetrics(folder).clip_scores(images, prompts)
    assert (ours > 0).any()

    reference = CLIPScore(model_name_or_path=lambda: (_Unwrapped(CLIPModel.from_pretrained(str(folder))),
                                                      CLIPProcessor.from_pretrained(str(folder))))
    pixels = torch.stack([torch.from_numpy(np.asarray(im)).permute(2, 0, 1) for im in images])
    assert float(ours.mean()) == pytest.approx(float(reference(pixels, prompts)), rel=1e-5)
