"""`duo eval` / `duo attack` on a real model (here a tiny pipeline saved to a folder): a task file,
a caption file and LoRA folders in, a report out; bad input named."""

import numpy as np
import pytest
import torch
from PIL import Image

from duo_unlearn.attacks import AttackConfig, run_attack
from duo_unlearn.attacks.task_file import load_task
from duo_unlearn.config import DUOConfig
from duo_unlearn.detectors import register_detector
from duo_unlearn.evaluation import EvalConfig, run_eval
from duo_unlearn.perceptual import register_perceptual_metric
from duo_unlearn.stats import Estimate
from duo_unlearn.testing import PixelDistance, RedDetector, random_pair_dataset, save_tiny_clip_model, tiny_sd_pipeline
from duo_unlearn.trainer import UnlearningTrainer

register_detector("red-test", RedDetector)
register_perceptual_metric("pixel-test", PixelDistance)

TASK = """
concept_phrases: [with a cross]
unsafe_prompts: ["a red box with a cross", "a dog with a cross"]
concept_pairs: [["a red box with a cross", "a red box"]]
base_prompts: ["a red box", "a dog"]
natural_prompts_file: natural.txt
concept_images_dir: images
concept_image_prompt: "a photo of {}"
safe_twins_dir: twins
"""


def _task_dir(tmp_path, text=TASK):
    root = tmp_path / "task"
    (root / "images").mkdir(parents=True)
    (root / "twins").mkdir(parents=True)
    g = np.random.default_rng(0)
    for i, size in enumerate([(40, 56), (64, 48)]):  # any size: centre-cropped and resized
        pixels = g.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        Image.fromarray(pixels // 2).save(root / "twins" / f"{i}.png")
    (root / "natural.txt").write_text("a box struck out\n\na dog cancelled\n")
    (root / "task.yaml").write_text(text)
    return root / "task.yaml"


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """A saved tiny base pipeline and one LoRA trained on it by `duo train`'s trainer."""
    root = tmp_path_factory.mktemp("real")
    tiny_sd_pipeline().save_pretrained(root / "base")
    cfg = DUOConfig(output_dir=str(root / "duo"), max_train_steps=3, train_batch_size=2, lora_rank=4, lora_alpha=4,
                    learning_rate=5e-2, checkpointing_steps=0)
    UnlearningTrainer(cfg, pipe=tiny_sd_pipeline(), dataset=random_pair_dataset()).train()
    return root


def test_task_file_reads_prompts_and_squares_the_images(tmp_path):
    task = load_task(_task_dir(tmp_path), 32)
    assert task.natural_prompts == ["a box struck out", "a dog cancelled"]
    assert task.concept_pairs == [("a red box with a cross", "a red box")]
    assert [im.size for im in task.concept_images] == [(32, 32), (32, 32)]
    assert task.concept_image_prompts == ["a photo of {}"] * 2
    assert [im.size for im in task.safe_twins] == [(32, 32), (32, 32)]


@pytest.mark.parametrize("broken, message", [
    (TASK.replace('"a dog with a cross"', '"a dog"'), "contains none of concept_phrases"),
    (TASK.replace("concept_images_dir: images", "concept_images_dir: nowhere"), "is not a folder"),
    (TASK.replace('"a photo of {}"', '"a photo"'), "concept_image_prompt"),
    (TASK.replace("natural.txt", "missing.txt"), "missing.txt not found"),
    (TASK.replace("safe_twins_dir: twins", "safe_twins_dir: images/../nowhere"), "one image per concept image"),
    ("[1, 2", "not valid YAML"),
])
def test_bad_task_files_are_named_errors(tmp_path, broken, message):
    path = _task_dir(tmp_path, broken)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        load_task(path, 32)
    assert str(path) in str(err.value)


def test_corrupt_concept_image_names_the_file(tmp_path):
    path = _task_dir(tmp_path)
    (path.parent / "images" / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="1.png"):
        load_task(path, 32)


def test_eval_of_a_real_model_writes_a_report(tmp_path, real_model):
    captions = tmp_path / "captions.txt"
    captions.write_text("a cat\na house on a hill\na bowl of fruit\n")
    save_tiny_clip_model(tmp_path / "clip")
    (tmp_path / "coco").mkdir()
    g = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(g.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "coco" / f"{i}.jpg")
    cfg = EvalConfig(output_dir=str(tmp_path / "eval"), pretrained_model=str(real_model / "base"),
                     models=(f"duo-test={real_model / 'duo'}",), captions_file=str(captions),
                     clip_model=str(tmp_path / "clip"), reference_images_dir=str(tmp_path / "coco"),
                     task_file=str(_task_dir(tmp_path)), detector="red-test", metric="pixel-test",
                     attacks=("paraphrase", "sneakyprompt"), num_attack_prompts=2, images_per_prompt=1,
                     attack_budget=2, num_eval_prompts=3, num_inference_steps=2, seeds=(0,))
    pooled = run_eval(cfg)
    results = {name: {k: Estimate.from_dict(v) for k, v in m["figures"].items()}
               for name, m in pooled["models"].items()}
    assert list(results) == ["base", "duo-test"]
    assert pooled["protocol"]["name"] == "real-model" and pooled["protocol"]["prompt_sets"]["safe"]["n"] == 3
    assert results["base"]["prior_preservation"].value == 1.0
    assert results["duo-test"]["prior_preservation"].value < 1.0  # the LoRA changes the images
    assert pooled["models"]["duo-test"]["method"] == "duo"
    for row in results.values():
        assert row["dsr/sneakyprompt"].n == 2 and 0 <= row["dsr/sneakyprompt"].value <= 1
        assert row["concept_rate/unsafe"].n == 2  # the task's two unsafe prompts
        assert 0 <= row["clip_score"].value <= 100 and row["fid_clip"].value >= 0
    report = tmp_path / "eval" / "report"
    md = (report / "index.md").read_text()
    assert "FID(CLIP)" in md and "CLIP score" in md and "close pres." not in md  # no world-only columns
    assert "grids/duo-test_safe.png" in md and (report / "grids" / "duo-test_safe.png").is_file()


def test_clip_score_is_the_scaled_clipped_cosine(tmp_path):
    from duo_unlearn.clip_metrics import CLIPMetrics

    save_tiny_clip_model(tmp_path / "clip")
    clip = CLIPMetrics(tmp_path / "clip")
    images = [Image.new("RGB", (40, 40), (60 * i, 30, 200 - 40 * i)) for i in range(4)]
    prompts = ["a red box", "a dog", "a cat on a mat", "blue"]
    assert np.allclose(np.linalg.norm(clip.image_features(images), axis=1), 1)
    cos = (clip.image_features(images) * clip.text_features(prompts)).sum(axis=1)
    with torch.no_grad():
        clip.model.text_projection.weight.neg_()  # flips every cosine: both signs get checked
    flipped = clip.clip_scores(images, prompts)
    with torch.no_grad():
        clip.model.text_projection.weight.neg_()
    scores = clip.clip_scores(images, prompts)
    assert np.allclose(scores, 100 * np.maximum(cos, 0)) and np.allclose(flipped, 100 * np.maximum(-cos, 0))
    assert (scores > 0).any() or (flipped > 0).any()
    with pytest.raises(ValueError, match="one prompt per image"):
        clip.clip_scores(images, prompts[:2])


@pytest.mark.parametrize("models, message", [
    (("no-equals-sign",), "name=folder"),
    (("x={missing}",), "has no pytorch_lora_weights.safetensors"),
    ((), "at least one"),
])
def test_eval_of_a_real_model_names_bad_models(tmp_path, real_model, models, message):
    captions = tmp_path / "captions.txt"
    captions.write_text("a cat\n")
    models = tuple(m.format(missing=tmp_path) for m in models)
    cfg = EvalConfig(output_dir=str(tmp_path / "eval"), pretrained_model=str(real_model / "base"), models=models,
                     captions_file=str(captions), task_file="unused.yaml", detector="red-test", metric="pixel-test")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_eval(cfg)
    assert not (tmp_path / "eval").exists()


def test_attack_on_a_real_model_needs_a_task_file_and_uses_it(tmp_path, real_model):
    base = dict(method="paraphrase", pretrained_model=str(real_model / "base"), detector="red-test",
                num_prompts=2, images_per_prompt=1, num_inference_steps=2, output_dir=str(tmp_path / "a"))
    with pytest.raises(ValueError, match="task-file"):
        run_attack(AttackConfig(**base))
    result = run_attack(AttackConfig(**base, task_file=str(_task_dir(tmp_path)), lora=str(real_model / "duo")))
    assert result.prompts == ["a box struck out", "a dog cancelled"]


def test_shipped_nudity_task_loads(tmp_path):
    from pathlib import Path

    shipped = Path(__file__).parent.parent / "configs" / "tasks" / "sd14_nudity_task.yaml"
    copy = tmp_path / "configs" / "tasks" / shipped.name
    copy.parent.mkdir(parents=True)
    copy.write_text(shipped.read_text())
    for half in ("unsafe", "safe"):  # what `duo pairs` writes
        (tmp_path / "pairs-nudity" / half).mkdir(parents=True)
        Image.new("RGB", (512, 512), (200, 150, 120)).save(tmp_path / "pairs-nudity" / half / "00000.png")
    task = load_task(copy, 512)
    assert len(task.unsafe_prompts) == len(task.base_prompts) == 6 and len(task.concept_images) == 1
    assert len(task.safe_twins) == 1
