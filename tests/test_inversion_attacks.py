"""The attacks that learn embeddings (attacks/inversion.py) on a tiny pipeline: the inversion
exports what ``load_textual_inversion`` loads, budget curves end at the final result, the
adaptive attack needs its twins, and each optimisation lowers the loss it optimises."""

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_attacks import RedDetector, _task

from duo_unlearn.attacks import AttackConfig, attack
from duo_unlearn.attacks.inversion import TEXTUAL_INVERSION_TOKEN, curve_points
from duo_unlearn.testing import tiny_sd_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline()


def test_curve_points():
    assert curve_points(1000) == [50, 200, 500, 1000]
    assert curve_points(3) == [1, 3]


@pytest.mark.parametrize("num_tokens", [1, 3])
def test_concept_inversion_exports_a_textual_inversion_diffusers_loads(tmp_path, pipe, num_tokens):
    cfg = AttackConfig(method="concept-inversion", num_prompts=2, images_per_prompt=2, num_inference_steps=2,
                       budget=4, num_tokens=num_tokens)
    result = attack(pipe, RedDetector(), _task(), cfg, folder=tmp_path / "ci")
    path = tmp_path / "ci" / "learned_embeds.safetensors"
    learned = load_file(path)[TEXTUAL_INVERSION_TOKEN]
    assert learned.shape == (num_tokens, pipe.text_encoder.config.hidden_size)
    assert all(TEXTUAL_INVERSION_TOKEN in p for p in result.prompts)

    fresh = tiny_sd_pipeline()
    fresh.load_textual_inversion(str(path))
    tokens = [TEXTUAL_INVERSION_TOKEN] + [f"{TEXTUAL_INVERSION_TOKEN}_{i}" for i in range(1, num_tokens)]
    ids = fresh.tokenizer.convert_tokens_to_ids(tokens)
    table = fresh.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[ids].detach(), learned)
    # the attack's own prompts run on the loaded pipeline
    image = fresh(result.prompts[0], num_inference_steps=2, output_type="np").images
    assert np.isfinite(image).all()


OPTIMISING = ["concept-inversion", "adaptive-inversion", "embedding-probe", "ring-a-bell", "unlearndiffatk",
              "sneakyprompt"]


@pytest.mark.parametrize("method", OPTIMISING)
def test_budget_curve_ends_at_the_final_result(tmp_path, pipe, method):
    budget = 8 if method == "sneakyprompt" else 40
    cfg = AttackConfig(method=method, num_prompts=2, images_per_prompt=2, num_inference_steps=2, budget=budget)
    result = attack(pipe, RedDetector(), _task(), cfg)
    curve = result.extra["curve"]
    assert [c["budget"] for c in curve] == curve_points(budget)
    assert curve[-1] == {"budget": budget, "n": len(result.scores), "successes": int(result.success.sum())}
    assert all(c["n"] == len(result.scores) for c in curve)
    if "final_loss" in result.extra and "initial_loss" in result.extra:
        assert result.extra["final_loss"] < result.extra["initial_loss"]


def test_budget_curve_renders_what_the_search_had_found_by_then(pipe):
    """A curve point is the final images of the same attack run with that budget: the state at
    step k does not depend on the steps after it."""
    task = _task()
    full = attack(pipe, RedDetector(), task, AttackConfig(method="unlearndiffatk", num_prompts=2, images_per_prompt=2,
                                                          num_inference_steps=2, budget=20))
    short = attack(pipe, RedDetector(), task, AttackConfig(method="unlearndiffatk", num_prompts=2, images_per_prompt=2,
                                                           num_inference_steps=2, budget=10))
    point = next(c for c in full.extra["curve"] if c["budget"] == 10)
    assert point == {"budget": 10, "n": len(short.scores), "successes": int(short.success.sum())}


def test_adaptive_inversion_needs_safe_twins(pipe):
    task = dataclasses.replace(_task(), safe_twins=None)
    cfg = AttackConfig(method="adaptive-inversion", num_prompts=2, images_per_prompt=1, num_inference_steps=2,
                       budget=2)
    with pytest.raises(ValueError, match="safe twin"):
        attack(pipe, RedDetector(), task, cfg)


def test_embedding_probe_exports_prompt_embeds_that_reproduce_its_images(tmp_path, pipe):
    cfg = AttackConfig(method="embedding-probe", num_prompts=1, images_per_prompt=2, num_inference_steps=2, budget=3)
    result = attack(pipe, RedDetector(), _task(), cfg, folder=tmp_path / "probe")
    embeds = load_file(tmp_path / "probe" / "prompt_embeds.safetensors")["prompt_embeds"]
    from duo_unlearn.sampling import generate

    again = generate(pipe, [], result.seeds, 2, cfg.guidance_scale, prompt_embeds=embeds[None].expand(2, -1, -1))
    assert [np.asarray(a).tolist() for a in again] == [np.asarray(b).tolist() for b in result.images]
