"""The baselines' defining properties on tiny models."""

import torch

from duo_unlearn.config import DUOConfig
from duo_unlearn.testing import tiny_sd_pipeline
from duo_unlearn.trainer import UnlearningTrainer, train
from duo_unlearn.uce import UCEConfig, _token_vectors, apply_uce, cross_attention_projections, uce_weights


def test_uce_closed_form_maps_concept_to_target_and_keeps_preserved():
    torch.manual_seed(0)
    w0 = torch.randn(8, 12)
    concept, target, preserve = torch.randn(3, 12), torch.randn(3, 12), torch.randn(4, 12)
    w = uce_weights(w0, concept, target, preserve, lam=1e-4).float()
    assert torch.allclose(concept @ w.T, target @ w0.T, atol=1e-3)
    assert torch.allclose(preserve @ w.T, preserve @ w0.T, atol=1e-3)
    # with a huge ridge weight nothing moves
    assert torch.allclose(uce_weights(w0, concept, target, preserve, lam=1e8).float(), w0, atol=1e-4)


def test_uce_edit_of_a_pipeline_exports_as_an_exact_lora(tmp_path):
    pipe = tiny_sd_pipeline()
    before = {n: m.weight.detach().clone() for n, m in cross_attention_projections(pipe.unet).items()}
    cfg = DUOConfig(method="uce", output_dir=str(tmp_path / "uce"), uce_erase_prompts=("an unsafe thing",),
                    uce_target_prompts=("a safe thing",), uce_preserve_prompts=("a cat",), uce_lambda=0.01)
    train(cfg, pipe=pipe)
    c = _token_vectors(pipe, ["an unsafe thing"])
    ct = _token_vectors(pipe, ["a safe thing"])
    cp = _token_vectors(pipe, ["a cat"])
    fresh = tiny_sd_pipeline()
    fresh.load_lora_weights(str(tmp_path / "uce"))
    for name, module in cross_attention_projections(fresh.unet).items():
        with torch.no_grad():
            edited = module(c)
            goal = ct @ before[name].T
            kept = module(cp)
        err_before = (c @ before[name].T - goal).norm() / goal.norm()
        err_after = (edited - goal).norm() / goal.norm()
        assert err_after < 0.1 * err_before, name
        assert (kept - cp @ before[name].T).norm() / (cp @ before[name].T).norm() < 0.1
    deltas = apply_uce(tiny_sd_pipeline(), UCEConfig(("an unsafe thing",), ("a safe thing",), ("a cat",), lam=0.01))
    assert set(deltas) == set(before)


def _esd_cfg(tmp_path, variant):
    return DUOConfig(method="esd", output_dir=str(tmp_path / variant), esd_variant=variant, esd_eta=1.0,
                     esd_concept_prompt="a forbidden thing", max_train_steps=6, train_batch_size=2, lora_rank=4,
                     lora_alpha=4, learning_rate=5e-3, checkpointing_steps=0, seed=1)


def test_esd_moves_concept_prediction_toward_negatively_guided_target(tmp_path):
    trainer = UnlearningTrainer(_esd_cfg(tmp_path, "x"), pipe=tiny_sd_pipeline())
    trained = [n for n, p in trainer.denoiser.named_parameters() if p.requires_grad]
    assert trained and all(".attn2." in n for n in trained)  # ESD-x: cross-attention only
    g = torch.Generator().manual_seed(5)
    x = torch.randn((4, *trainer.latent_shape()), generator=g)
    t = torch.tensor([100, 300, 500, 700])
    fam = trainer.family
    concept, null = trainer.concept_cond.select([0] * 4), trainer.null_cond.select([0] * 4)
    with torch.no_grad():
        e_c, e_0 = fam.predict(fam.denoiser, x, t, concept), fam.predict(fam.denoiser, x, t, null)
        target = e_0 - 1.0 * (e_c - e_0)  # the frozen model's negatively guided prediction
    before = (e_c - target).pow(2).mean()
    trainer.train()
    with torch.no_grad():
        after = (fam.predict(fam.denoiser, x, t, concept) - target).pow(2).mean()
    assert after < before


def test_esd_u_trains_everything_but_cross_attention(tmp_path):
    trainer = UnlearningTrainer(_esd_cfg(tmp_path, "u"), pipe=tiny_sd_pipeline())
    trained = [n for n, p in trainer.denoiser.named_parameters() if p.requires_grad]
    assert trained and not any(".attn2." in n for n in trained)
