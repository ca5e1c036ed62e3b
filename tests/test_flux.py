"""FLUX.1 as a family: the transformer is called with packed latents, position ids, σ and
(dev only) guidance; DUO's x0 space and pure-noise input are SD3's; the tiny pipeline generates.
Training, export and reload are in test_trainer.py with the other families."""

import pytest
import torch

from duo_unlearn.families import FluxFamily, family_for
from duo_unlearn.sampling import generate
from duo_unlearn.testing import tiny_flux_pipeline


class _Recorder:
    """Stands in for the transformer: returns its packed input unchanged and keeps the kwargs."""

    def __call__(self, **kwargs):
        self.kwargs = kwargs
        return (kwargs["hidden_states"],)


@pytest.fixture(scope="module")
def dev():
    return family_for(tiny_flux_pipeline())


def test_family_for_picks_flux(dev):
    assert isinstance(dev, FluxFamily) and dev.lora_component == "transformer"


@pytest.mark.parametrize("guidance_embeds", [True, False])
def test_transformer_call_conventions(guidance_embeds):
    fam = family_for(tiny_flux_pipeline(guidance_embeds=guidance_embeds))
    cond = fam.encode_prompts(["a prompt", "another"])
    x = torch.randn((2, 4, 6, 8), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 999])
    model = _Recorder()
    out = fam.predict(model, x, t, cond)
    kw = model.kwargs

    # 2×2 patches of 4 channels: 3×4 tokens of 16 channels, and back to the same layout
    assert kw["hidden_states"].shape == (2, 12, 16)
    assert torch.equal(kw["hidden_states"][1, 4 + 2], x[1, :, 2:4, 4:6].reshape(-1))
    assert torch.equal(out, x)
    # image tokens carry (0, row, col) of their patch, text tokens zeros
    assert kw["img_ids"].tolist()[4 + 2] == [0.0, 1.0, 2.0]
    assert kw["img_ids"].shape == (12, 3)
    assert kw["txt_ids"].shape == (cond.hidden_states.shape[1], 3) and not kw["txt_ids"].any()
    # σ itself, not σ·1000 (the transformer scales it); 999 is σ = 1
    assert kw["timestep"].tolist() == pytest.approx([fam.sigma_grid[0].item(), 1.0])
    if guidance_embeds:
        assert kw["guidance"].tolist() == [FluxFamily.guidance_scale] * 2
    else:
        assert kw["guidance"] is None
    assert torch.equal(kw["encoder_hidden_states"], cond.hidden_states)
    assert torch.equal(kw["pooled_projections"], cond.extra["pooled_projections"])


def test_x0_space_and_pure_noise(dev):
    """x_t = (1 − σ)·x0 + σ·ε and x0̂ = x_t − σ·v̂: the exact velocity ε − x0 gives x0̂ = x0;
    at k = 999 (σ = 1) x_t is the noise itself, which is what the regulariser feeds."""
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn((3, 4, 4, 4), generator=g), torch.randn((3, 4, 4, 4), generator=g)
    t = torch.tensor([0, 500, 999])
    sigma = dev.sigma_grid[t].view(-1, 1, 1, 1)
    assert dev.sigma_grid[999] == 1.0 and torch.all(dev.sigma_grid[1:] > dev.sigma_grid[:-1])

    x_t = dev.add_noise(x0, noise, t)
    assert torch.allclose(x_t, (1 - sigma) * x0 + sigma * noise)
    assert torch.equal(x_t[2], noise[2])
    assert torch.equal(dev.pure_noise_input(noise), noise)

    x0_hat, target = dev.loss_space(noise - x0, x_t, x0, noise, t)
    assert torch.equal(target, x0)
    assert torch.allclose(x0_hat, x0, atol=1e-6)
    v_hat = torch.randn((3, 4, 4, 4), generator=g)  # any prediction: x_t − σ·v̂, by hand
    x0_hat, _ = dev.loss_space(v_hat, x_t, x0, noise, t)
    assert torch.allclose(x0_hat, x_t - sigma * v_hat)


def test_sigma_grid_ignores_a_previous_generation(dev):
    """The pipeline's scheduler holds the σ of its last call; training uses the full grid."""
    pipe = tiny_flux_pipeline()
    pipe.scheduler.set_timesteps(3, mu=0.5)
    assert torch.equal(family_for(pipe).sigma_grid, dev.sigma_grid)


def test_tiny_pipeline_generates_seeded_images():
    pipe = tiny_flux_pipeline()
    images = generate(pipe, ["a prompt", "a prompt", "a prompt"], [0, 0, 1], num_inference_steps=2,
                      guidance_scale=3.5, max_sequence_length=16)
    assert [im.size for im in images] == [(32, 32)] * 3
    a, b, c = (torch.tensor(list(im.getdata()), dtype=torch.float32) for im in images)
    assert torch.equal(a, b) and not torch.equal(a, c)
