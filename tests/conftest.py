import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def world_pipe():
    from duo_unlearn.pipelines import load_shapeworld

    return load_shapeworld()


@pytest.fixture(scope="session")
def world_detector():
    from duo_unlearn.detectors import ShapeWorldDetector

    return ShapeWorldDetector()

