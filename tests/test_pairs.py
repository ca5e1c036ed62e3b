"""SDEdit pairs: filtering, bounded retries, resume, and clear errors on bad data."""

import json

import numpy as np
import pytest
from PIL import Image

from duo_unlearn.pairs import PairDataset, PairsConfig, make_pairs
from duo_unlearn.testing import tiny_sd_pipeline


class BrightnessDetector:
    """A stand-in detector: the 'concept' is a bright image. Counts its calls."""

    name = "brightness"

    def __init__(self, threshold):
        self.threshold = threshold
        self.calls = 0

    def scores(self, images):
        self.calls += 1
        return np.array([np.asarray(img, dtype=np.float64).mean() / 255 for img in images])

    def settings(self):
        return {"detector": self.name, "threshold": self.threshold}


def _cfg(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "pairs"), unsafe_prompts=("u1", "u2"), safe_prompts=("s1", "s2"),
                num_pairs=6, num_inference_steps=2, max_retries=2, batch_size=3, strength=0.5)
    base.update(kw)
    return PairsConfig(**base)


def test_pairs_are_filtered_recorded_and_loadable(tmp_path):
    pipe = tiny_sd_pipeline()
    summary = make_pairs(_cfg(tmp_path), pipe=pipe, detector=BrightnessDetector(threshold=-1.0))
    assert summary["attempted"] == 6
    # threshold -1: every unsafe image "shows" the concept, and no twin can escape it
    assert summary["kept"] == 0
    records = [json.loads(line) for line in (tmp_path / "pairs" / "metadata.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(6))
    assert all(not r["kept"] and r["safe_score"] is not None for r in records)
    assert records[1]["unsafe_prompt"] == "u2" and records[1]["safe_prompt"] == "s2"


def test_kept_pairs_round_trip_and_resume_skips_finished(tmp_path):
    pipe = tiny_sd_pipeline()

    class Alternating(BrightnessDetector):
        """Unsafe generations score 1, img2img twins 0: every pair is kept."""

        def scores(self, images):
            self.calls += 1
            return np.full(len(images), 1.0 if self.calls % 2 == 1 else 0.0)

    det = Alternating(threshold=0.5)
    summary = make_pairs(_cfg(tmp_path), pipe=pipe, detector=det)
    assert summary == {"attempted": 6, "kept": 6, "rejected": 0, "keep_rate": 1.0}
    data = PairDataset.load(tmp_path / "pairs")
    assert len(data) == 6 and data.unsafe.shape == data.safe.shape == (6, 3, 32, 32)
    assert data.unsafe.min() >= -1 and data.unsafe.max() <= 1
    assert not np.allclose(data.unsafe.numpy(), data.safe.numpy())

    calls = det.calls
    again = make_pairs(_cfg(tmp_path, num_pairs=8), pipe=pipe, detector=det)
    assert again["attempted"] == 8
    assert det.calls == calls + 2  # only the two new indices were generated (one batch, two sides)


def test_twins_that_change_more_than_the_concept_are_retried_then_rejected(tmp_path):
    pipe = tiny_sd_pipeline()

    class Judging(BrightnessDetector):
        """Unsafe generations score 1, twins 0; ``same_content`` accepts only pair index 0."""

        def __init__(self):
            super().__init__(threshold=0.5)
            self.judged = 0

        def scores(self, images):
            self.calls += 1
            return np.full(len(images), 1.0 if self.calls == 1 else 0.0)

        def same_content(self, unsafe, twins):
            self.judged += 1
            verdict = np.zeros(len(twins), dtype=bool)
            verdict[0] = self.judged == 1  # the first twin of the first call keeps its content
            return verdict

    det = Judging()
    summary = make_pairs(_cfg(tmp_path, num_pairs=3, max_retries=2), pipe=pipe, detector=det)
    assert summary["kept"] == 1 and det.judged == 2  # the two inconsistent twins were retried once
    records = [json.loads(line) for line in (tmp_path / "pairs" / "metadata.jsonl").read_text().splitlines()]
    assert [r["same_content"] for r in records] == [True, False, False]
    assert [r["kept"] for r in records] == [True, False, False]
    off = make_pairs(_cfg(tmp_path / "off", num_pairs=3, require_same_content=False), pipe=pipe, detector=Judging())
    assert off["kept"] == 3


def test_user_images_must_be_valid(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.new("RGB", (32, 32)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="b.png"):
        make_pairs(_cfg(tmp_path, unsafe_images_dir=str(folder)), pipe=tiny_sd_pipeline(),
                   detector=BrightnessDetector(0.5))
    (folder / "b.png").unlink()
    Image.new("RGB", (48, 48)).save(folder / "c.png")
    with pytest.raises(ValueError, match="c.png is 48x48, expected 32x32"):
        make_pairs(_cfg(tmp_path, unsafe_images_dir=str(folder)), pipe=tiny_sd_pipeline(),
                   detector=BrightnessDetector(0.5))
    assert not (tmp_path / "pairs" / "metadata.jsonl").exists()


def _write_pair_folder(root, n=2, size=16):
    (root / "unsafe").mkdir(parents=True)
    (root / "safe").mkdir()
    lines = []
    for i in range(n):
        Image.new("RGB", (size, size), (255, 0, 0)).save(root / "unsafe" / f"{i:05d}.png")
        Image.new("RGB", (size, size), (0, 0, 255)).save(root / "safe" / f"{i:05d}.png")
        lines.append(json.dumps({"index": i, "kept": True, "unsafe_image": f"unsafe/{i:05d}.png",
                                 "safe_image": f"safe/{i:05d}.png", "unsafe_prompt": "u", "safe_prompt": "s"}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def test_pair_dataset_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metadata.jsonl"):
        PairDataset.load(tmp_path)
    _write_pair_folder(tmp_path / "ok")
    assert len(PairDataset.load(tmp_path / "ok")) == 2

    _write_pair_folder(tmp_path / "missing")
    (tmp_path / "missing" / "safe" / "00001.png").unlink()
    with pytest.raises(ValueError, match="1 safe|2 unsafe images but 1 safe"):
        PairDataset.load(tmp_path / "missing")

    _write_pair_folder(tmp_path / "corrupt")
    (tmp_path / "corrupt" / "unsafe" / "00000.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="corrupt.*00000.png"):
        PairDataset.load(tmp_path / "corrupt")

    _write_pair_folder(tmp_path / "sizes")
    Image.new("RGB", (20, 20)).save(tmp_path / "sizes" / "safe" / "00001.png")
    with pytest.raises(ValueError, match="00001.png is 20x20, expected 16x16"):
        PairDataset.load(tmp_path / "sizes")

    _write_pair_folder(tmp_path / "badjson")
    with open(tmp_path / "badjson" / "metadata.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match="metadata.jsonl:3"):
        PairDataset.load(tmp_path / "badjson")
