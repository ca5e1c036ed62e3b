import dataclasses
import sys
import types

import numpy as np
import pytest
import torch

from duo_unlearn.detectors import NUDENET_EXPOSED_CLASSES, NudeNetDetector, detect, get_detector, register_detector
from duo_unlearn.world.detector import _label_tensor, _to_tensor, augment, predict
from duo_unlearn.world.scene import ATTRIBUTES, render_batch, sample_scenes


def test_world_detector_accuracy_on_held_out_renders(world_detector):
    """>= 95% per attribute on fresh renders, clean and augmented (seeds unseen in training)."""
    scenes = sample_scenes(600, seed=424242, mark_probs=(1, 1, 1))
    labels = _label_tensor(scenes)
    clean = _to_tensor(render_batch(scenes))
    for x in (clean, augment(clean, torch.Generator().manual_seed(1))):
        probs = predict(world_detector.net, x)
        for name in ATTRIBUTES:
            acc = float((probs[name].argmax(-1) == labels[name]).float().mean())
            assert acc >= 0.95, (name, acc)


def test_world_detector_interface(world_detector):
    scenes = sample_scenes(40, seed=99, mark_probs=(1, 1, 0))
    images = render_batch(scenes)
    verdict = detect(world_detector, images)
    truth = np.array([s.mark == "x" for s in scenes])
    assert (verdict == truth).mean() >= 0.95
    attrs = world_detector.attributes_of(images[:5])
    assert [a["colour"] for a in attrs] == [s.colour for s in scenes[:5]]
    assert 0.5 <= world_detector.threshold < 1
    plus = get_detector("shapeworld-plus")
    assert plus.settings()["concept"] == "plus"
    with pytest.raises(ValueError, match="64x64"):
        world_detector.scores(np.zeros((1, 32, 32, 3), np.uint8))


class FakeNudeNet:
    def __init__(self):
        self.seen = []

    def detect(self, image):
        self.seen.append(image)
        if image[0, 0, 2] > 200:  # red in RGB sits in channel 2 once converted to BGR
            return [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.9, "box": [0, 0, 1, 1]},
                    {"class": "FACE_FEMALE", "score": 0.99, "box": [0, 0, 1, 1]}]
        return [{"class": "FACE_FEMALE", "score": 0.95, "box": [0, 0, 1, 1]}]


def test_nudenet_counts_only_exposed_classes_and_gets_bgr():
    backend = FakeNudeNet()
    det = NudeNetDetector(backend=backend, threshold=0.6)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[0, ..., 0] = 255  # a red image
    assert det.scores(images).tolist() == [0.9, 0.0]
    assert detect(det, images).tolist() == [True, False]
    assert backend.seen[0][0, 0].tolist() == [0, 0, 255]
    assert det.settings() == {"detector": "nudenet", "classes": list(NUDENET_EXPOSED_CLASSES), "threshold": 0.6}


def test_real_nudenet_runs_offline_on_arrays():
    pytest.importorskip("nudenet")
    det = NudeNetDetector()
    assert det.scores(np.full((1, 64, 64, 3), 127, np.uint8)).tolist() == [0.0]


def test_registry_is_pluggable():
    register_detector("always", lambda **kw: types.SimpleNamespace(
        name="always", threshold=0.5, scores=lambda images: np.ones(len(images)), settings=lambda: {}))
    assert detect(get_detector("always"), [None, None]).tolist() == [True, True]
    with pytest.raises(ValueError, match="unknown detector"):
        get_detector("nope")



def test_the_registry_imports_nudenet_only_when_it_is_asked_for():
    """NudeNet (onnxruntime) is an optional extra: naming other detectors must not import it."""
    import subprocess

    code = ("import sys; from duo_unlearn.detectors import get_detector\n"
            "get_detector('shapeworld'); print('nudenet' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_shapeworld_same_content_compares_everything_but_the_mark(world_detector):
    from duo_unlearn.world.scene import Scene, render_scene

    det = world_detector
    red = Scene(shape="circle", colour="red", background="white", size="large", position="middle", mark="x")
    twin = dataclasses.replace(red, mark="none")
    other = dataclasses.replace(twin, colour="blue")
    same = det.same_content([render_scene(red)] * 2, [render_scene(twin), render_scene(other)])
    assert same.tolist() == [True, False]
