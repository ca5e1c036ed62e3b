"""The trainer on tiny random pipelines of every family: it trains, exports what diffusers
loads, resumes exactly, and refuses NaN."""

import json

import pytest
import torch
from safetensors.torch import load_file

from duo_unlearn.config import DUOConfig
from duo_unlearn.families import family_for
from duo_unlearn.lora import LORA_WEIGHTS_NAME
from duo_unlearn.testing import (
    random_pair_dataset,
    tiny_flux_pipeline,
    tiny_sd3_pipeline,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
)
from duo_unlearn.trainer import UnlearningTrainer

FAMILIES = {
    "sd-epsilon": lambda: tiny_sd_pipeline("epsilon"),
    "sd-v": lambda: tiny_sd_pipeline("v_prediction"),
    "sdxl": tiny_sdxl_pipeline,
    "sd3": tiny_sd3_pipeline,
    "flux-dev": tiny_flux_pipeline,
    "flux-schnell": lambda: tiny_flux_pipeline(guidance_embeds=False),
}


def _config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), max_train_steps=2, train_batch_size=2, lora_rank=4, lora_alpha=4,
                learning_rate=1e-2, checkpointing_steps=0)
    base.update(kw)
    return DUOConfig(**base)


def _probe(family, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, *shape), generator=g)
    t = torch.tensor([10, 600])
    cond = family.encode_prompts(["", "a prompt"])
    with torch.no_grad():
        return family.predict(family.denoiser, x, t, cond)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_train_export_and_reload_every_family(tmp_path, name):
    pipe = FAMILIES[name]()
    trainer = UnlearningTrainer(_config(tmp_path), pipe=pipe, dataset=random_pair_dataset())
    before = {n: p.detach().clone() for n, p in trainer.denoiser.named_parameters() if "lora_B" in n}
    out = trainer.train()
    after = {n: p.detach() for n, p in trainer.denoiser.named_parameters() if "lora_B" in n}
    assert any(not torch.equal(before[n], after[n]) for n in before), "LoRA parameters did not change"

    weights = load_file(out / LORA_WEIGHTS_NAME)
    prefix = trainer.family.lora_component + "."
    assert weights and all(k.startswith(prefix) for k in weights)
    for name_ in ("duo_config.yaml", "README.md", "metrics.jsonl", "train_summary.json"):
        assert (out / name_).is_file()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1, 2]
    assert {"loss", "diff", "implicit_acc", "preservation", "mse/safe", "ref_mse/unsafe", "lr"} <= set(logged[0])

    trained = _probe(trainer.family, trainer.latent_shape())
    fresh = FAMILIES[name]()
    base = _probe(family_for(fresh), trainer.latent_shape())
    fresh.load_lora_weights(str(out))
    reloaded = _probe(family_for(fresh), trainer.latent_shape())
    assert torch.allclose(reloaded, trained, atol=1e-5)
    assert not torch.allclose(base, trained, atol=1e-5)


def test_one_step_lowers_relative_likelihood_of_the_unsafe_image(tmp_path):
    """After one DUO step, on the same noise and timesteps, diff = Δmse(safe) − Δmse(unsafe) < 0."""
    pipe = tiny_sd_pipeline()
    cfg = _config(tmp_path, max_train_steps=1, beta=10.0, learning_rate=5e-3, preservation_weight=0.0,
                  train_batch_size=4)
    trainer = UnlearningTrainer(cfg, pipe=pipe, dataset=random_pair_dataset(4))
    state = trainer.generator.get_state()
    with torch.no_grad():
        _, logs_before = trainer.duo_step_loss()
    assert logs_before["diff"] == 0.0  # LoRA B starts at zero: model == reference
    trainer.generator.set_state(state)
    trainer.step()
    trainer.generator.set_state(state)
    with torch.no_grad():
        _, logs_after = trainer.duo_step_loss()
    assert logs_after["diff"] < 0
    assert logs_after["duo_loss"] < logs_before["duo_loss"]


def _pipe_then_scramble_global_rng(scramble: int):
    """The tiny pipeline seeds torch to build its weights; scrambling the global RNG afterwards
    makes a run's result depend on the trainer's own seeding alone (LoRA init included)."""
    pipe = tiny_sd_pipeline()
    torch.manual_seed(scramble)
    torch.rand(scramble % 7 + 1)
    return pipe


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    kw = dict(max_train_steps=4, train_batch_size=2, seed=3, checkpointing_steps=2, checkpoints_total_limit=None)
    UnlearningTrainer(_config(tmp_path / "full", **kw), pipe=_pipe_then_scramble_global_rng(11),
                      dataset=random_pair_dataset()).train()

    killed = UnlearningTrainer(_config(tmp_path / "resumed", **kw), pipe=_pipe_then_scramble_global_rng(22),
                               dataset=random_pair_dataset())
    real_step = killed.step

    def step_then_die():
        if killed.global_step == 3:
            raise KeyboardInterrupt  # killed during step 4, after the step-2 checkpoint
        return real_step()

    killed.step = step_then_die
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    out = tmp_path / "resumed" / "out"
    assert not (out / LORA_WEIGHTS_NAME).exists() and (out / "checkpoint-2").is_dir()

    resumed = UnlearningTrainer(_config(tmp_path / "resumed", resume_from_checkpoint="latest", **kw),
                                pipe=_pipe_then_scramble_global_rng(33), dataset=random_pair_dataset())
    resumed.train()
    assert resumed.global_step == 4
    a = load_file(tmp_path / "full" / "out" / LORA_WEIGHTS_NAME)
    b = load_file(out / LORA_WEIGHTS_NAME)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-2:] == [3, 4]


def test_nan_loss_is_a_clear_error_and_writes_no_weights(tmp_path):
    dataset = random_pair_dataset()
    dataset.unsafe[0] = float("nan")
    dataset.unsafe[1:] = float("nan")
    trainer = UnlearningTrainer(_config(tmp_path), pipe=tiny_sd_pipeline(), dataset=dataset)
    with pytest.raises(FloatingPointError, match="non-finite loss.*step 1"):
        trainer.train()
    assert not (tmp_path / "out" / LORA_WEIGHTS_NAME).exists()


def test_reference_is_restored_after_an_error(tmp_path):
    from duo_unlearn.lora import adapters_disabled

    trainer = UnlearningTrainer(_config(tmp_path), pipe=tiny_sd_pipeline(), dataset=random_pair_dataset())
    trainer.step()
    shape = trainer.latent_shape()
    with_adapters = _probe(trainer.family, shape)
    with pytest.raises(RuntimeError):
        with adapters_disabled(trainer.denoiser):
            assert not torch.allclose(_probe(trainer.family, shape), with_adapters)
            raise RuntimeError("boom")
    assert torch.allclose(_probe(trainer.family, shape), with_adapters)


def test_merged_export_has_no_lora_names_and_matches_lora(tmp_path):
    from duo_unlearn.lora import merge_and_save

    trainer = UnlearningTrainer(_config(tmp_path), pipe=tiny_sd_pipeline(), dataset=random_pair_dataset())
    out = trainer.train()
    merged_dir = merge_and_save(lambda: tiny_sd_pipeline(), out, tmp_path / "merged")
    unet_weights = load_file(merged_dir / "unet" / "diffusion_pytorch_model.safetensors")
    assert not any("lora" in k or "base_layer" in k for k in unet_weights)
    from diffusers import StableDiffusionPipeline

    merged = StableDiffusionPipeline.from_pretrained(merged_dir)
    lora = tiny_sd_pipeline()
    lora.load_lora_weights(str(out))
    shape = trainer.latent_shape()
    assert torch.allclose(_probe(family_for(merged), shape), _probe(family_for(lora), shape), atol=1e-4)


def test_independent_pair_timesteps_and_prompts(tmp_path):
    cfg = _config(tmp_path, pair_timestep="independent", use_prompts=True, prompt_dropout=0.5)
    trainer = UnlearningTrainer(cfg, pipe=tiny_sd_pipeline(), dataset=random_pair_dataset())
    trainer.train()
    assert (tmp_path / "out" / LORA_WEIGHTS_NAME).is_file()
