"""Validation grids reach accelerate's trackers, under the configured project name."""

import numpy as np
import pytest
from accelerate.tracking import GeneralTracker
from PIL import Image

from duo_unlearn.config import DUOConfig
from duo_unlearn.testing import random_pair_dataset, tiny_sd_pipeline
from duo_unlearn.trainer import UnlearningTrainer


class RecordingTracker(GeneralTracker):
    """A tracker that keeps what it is given (accelerate accepts custom GeneralTracker instances)."""

    name = "recording"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.images = []

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        pass

    def log(self, values, step=None, **kwargs):
        pass

    def log_images(self, values, step=None, **kwargs):
        self.images.append((step, values))


def _trainer(tmp_path, **kw):
    cfg = DUOConfig(output_dir=str(tmp_path / "out"), max_train_steps=1, train_batch_size=2, lora_rank=4,
                    lora_alpha=4, checkpointing_steps=0, validation_prompts=("a red circle", "a blue square"),
                    num_validation_images=2, **kw)
    return UnlearningTrainer(cfg, pipe=tiny_sd_pipeline(), dataset=random_pair_dataset())


def test_validation_grid_goes_to_every_image_tracker(tmp_path):
    trainer = _trainer(tmp_path)
    recorder = RecordingTracker()
    trainer.accelerator.trackers.append(recorder)
    trainer.global_step = 3
    path = trainer.validate()
    [(step, values)] = recorder.images
    assert step == 3 and list(values) == ["validation"]
    np.testing.assert_array_equal(values["validation"][0], np.asarray(Image.open(path).convert("RGB")))


def test_tensorboard_event_file_holds_the_grid(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    trainer = _trainer(tmp_path, report_to="tensorboard", validation_steps=1, tracker_project_name="my-project")
    trainer.train()
    logdir = tmp_path / "out" / "my-project"
    assert logdir.is_dir(), list((tmp_path / "out").iterdir())
    events = EventAccumulator(str(logdir), size_guidance={IMAGES: 0})
    events.Reload()
    assert "validation" in events.Tags()["images"]
    [image] = events.Images("validation")
    grid = Image.open(next((tmp_path / "out" / "validation").glob("*.png")))
    assert image.step == 1 and (image.width, image.height) == grid.size
    assert "loss" in events.Tags()["scalars"]
