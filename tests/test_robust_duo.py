"""Robust DUO (``adversarial_conditioning``): the step's loss is its formula, the adversary
finds conditionings that reproduce the unsafe images better, and a resumed run is exact."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from duo_unlearn.config import DUOConfig
from duo_unlearn.families import Conditioning, scale_latents
from duo_unlearn.lora import LORA_WEIGHTS_NAME
from duo_unlearn.testing import random_pair_dataset, tiny_sd_pipeline
from duo_unlearn.trainer import UnlearningTrainer


def _config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), max_train_steps=2, train_batch_size=2, lora_rank=4, lora_alpha=4,
                learning_rate=1e-2, checkpointing_steps=0, adversarial_conditioning=True, adversarial_steps=2,
                beta=50.0, preservation_weight=3.0, adversarial_weight=0.7, prompt_preference_weight=0.4, seed=3)
    return DUOConfig(**{**base, **kw})


def _trainer(cfg):
    return UnlearningTrainer(cfg, pipe=tiny_sd_pipeline(), dataset=random_pair_dataset())


def _mse(a, b):
    return (a.double() - b.double()).pow(2).flatten(1).mean(1)


def _recorded_step_loss(trainer):
    """The step's loss and logs, every denoiser call (inputs, timesteps, conditioning, output) and
    every noise draw it made, in order."""
    calls, draws = [], []
    predict, randn = trainer.family.predict, trainer._randn

    def recording_predict(model, x_t, t, cond):
        out = predict(model, x_t, t, cond)
        calls.append((x_t.detach(), t, cond.hidden_states.detach(), out.detach()))
        return out

    def recording_randn(shape):
        draws.append(randn(shape))
        return draws[-1]

    trainer.family.predict, trainer._randn = recording_predict, recording_randn
    loss, logs = trainer.duo_step_loss()
    return loss, logs, calls, draws


@pytest.mark.parametrize("adversarial_beta,space", [(None, "conditioning"), (20.0, "conditioning"), (None, "tokens")])
def test_robust_step_loss_equals_its_formula(tmp_path, adversarial_beta, space):
    trainer = _trainer(_config(tmp_path, adversarial_beta=adversarial_beta, adversary_space=space,
                               adversary_tokens=3))
    trainer.step()  # move the LoRA off zero so policy and reference differ
    loss, logs, calls, draws = _recorded_step_loss(trainer)
    cfg = trainer.config
    n = cfg.train_batch_size
    assert len(calls) == cfg.adversarial_steps + 2  # inner steps, then one policy and one reference call
    (_, _, cond, pred), (_, _, ref_cond, ref) = calls[-2], calls[-1]
    assert torch.equal(cond, ref_cond)
    noise = draws[2]  # unsafe latents, safe latents, the shared noise, the regulariser's pure noise
    # rows: unsafe, safe (empty prompt) | pure noise (empty prompt) | unsafe, safe (adversarial)
    null = trainer.null_cond.hidden_states[0]
    assert all(torch.equal(cond[i], null) for i in range(3 * n))
    adversary = trainer.adversarial_embeds.detach()[0]
    if space == "tokens":  # 3 learned input tokens, through the text encoder
        assert adversary.shape == (3, trainer.pipe.text_encoder.get_input_embeddings().embedding_dim)
        with torch.no_grad():
            adversary = trainer.token_slots.encode(adversary[None])[0]
    assert all(torch.equal(cond[i], adversary) for i in range(3 * n, 5 * n))
    assert not torch.equal(adversary, null)

    def preference(p_u, r_u, p_s, r_s, beta):
        diff = (_mse(p_s, noise) - _mse(r_s, noise)) - (_mse(p_u, noise) - _mse(r_u, noise))
        return -F.logsigmoid(-beta * diff).mean()

    u, s, a_u, a_s = slice(0, n), slice(n, 2 * n), slice(3 * n, 4 * n), slice(4 * n, 5 * n)
    adversarial = preference(pred[a_u], ref[a_u], pred[a_s], ref[a_s], adversarial_beta or cfg.beta)
    expected = (cfg.prompt_preference_weight * preference(pred[u], ref[u], pred[s], ref[s], cfg.beta)
                + cfg.preservation_weight * (pred[2 * n:3 * n].double() - ref[2 * n:3 * n].double()).pow(2).mean()
                + cfg.adversarial_weight * adversarial)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.tensor(logs["adversarial_duo_loss"], dtype=torch.float64), adversarial,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("space", ["conditioning", "tokens"])
def test_shared_adversary_step_loss_equals_its_formula(tmp_path, space):
    """With ``shared_adversary`` the step moves the per-pair adversaries, then the shared one, and
    adds a second preference on the same (unsafe, safe) rows under the shared conditioning."""
    trainer = _trainer(_config(tmp_path, adversary_per_pair=True, shared_adversary=True, adversary_space=space,
                               adversary_tokens=2, adversarial_beta=30.0))
    trainer.step()
    shared_before = trainer.shared_embeds.detach().clone()
    loss, logs, calls, draws = _recorded_step_loss(trainer)
    cfg = trainer.config
    n = cfg.train_batch_size
    # per-pair adversary steps, shared adversary steps, then one policy and one reference call
    assert len(calls) == 2 * cfg.adversarial_steps + 2
    (x, t, cond, pred), (_, _, ref_cond, ref) = calls[-2], calls[-1]
    assert torch.equal(cond, ref_cond) and len(x) == 7 * n
    assert not torch.equal(trainer.shared_embeds.detach(), shared_before)  # the step moved it
    noise = draws[2]
    u, s = slice(0, n), slice(n, 2 * n)
    a_u, a_s, sh_u, sh_s = (slice(k * n, (k + 1) * n) for k in (3, 4, 5, 6))
    for rows in (a_u, sh_u):
        assert torch.equal(x[rows], x[u]) and torch.equal(t[rows], t[u])
    for rows in (a_s, sh_s):
        assert torch.equal(x[rows], x[s]) and torch.equal(t[rows], t[s])
    shared = trainer.shared_embeds.detach()[0]
    with torch.no_grad():
        pairs = trainer._adversary_hidden_states(torch.arange(len(trainer.dataset)))
        if space == "tokens":
            shared = trainer.token_slots.encode(shared[None])[0]
    assert all(torch.equal(cond[i], shared) for i in range(5 * n, 7 * n))
    assert all(any(torch.equal(cond[i], p) for p in pairs) for i in range(3 * n, 5 * n))
    assert not any(torch.equal(shared, p) for p in pairs)

    def preference(p_u, r_u, p_s, r_s, beta):
        diff = (_mse(p_s, noise) - _mse(r_s, noise)) - (_mse(p_u, noise) - _mse(r_u, noise))
        return -F.logsigmoid(-beta * diff).mean()

    shared_term = preference(pred[sh_u], ref[sh_u], pred[sh_s], ref[sh_s], 30.0)
    expected = (cfg.prompt_preference_weight * preference(pred[u], ref[u], pred[s], ref[s], cfg.beta)
                + cfg.preservation_weight * (pred[2 * n:3 * n].double() - ref[2 * n:3 * n].double()).pow(2).mean()
                + cfg.adversarial_weight * preference(pred[a_u], ref[a_u], pred[a_s], ref[a_s], 30.0)
                + cfg.adversarial_weight * shared_term)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.tensor(logs["shared_adversary_duo_loss"], dtype=torch.float64), shared_term,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("pipeline", ["sd-epsilon", "sd-v", "sd3", "flux"])
def test_predicted_x0_inverts_the_noising_in_every_family(pipeline):
    """The exact prediction (the noise, the velocity, or noise − x0 for flows) gives back x0, and
    SNR falls with the timestep: what the twin term's x0 estimate and weights stand on."""
    from duo_unlearn.families import family_for
    from duo_unlearn.testing import tiny_flux_pipeline, tiny_sd3_pipeline

    pipe = {"sd-epsilon": lambda: tiny_sd_pipeline(), "sd-v": lambda: tiny_sd_pipeline("v_prediction"),
            "sd3": tiny_sd3_pipeline, "flux": tiny_flux_pipeline}[pipeline]()
    fam = family_for(pipe)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn((3, 4, 8, 8), generator=g), torch.randn((3, 4, 8, 8), generator=g)
    t = torch.tensor([1, 400, 900])
    x_t = fam.add_noise(x0, noise, t)
    if pipeline == "sd-v":
        exact = fam.noise_scheduler.get_velocity(x0, noise, t)
    elif pipeline in ("sd3", "flux"):
        exact = noise - x0
    else:
        exact = noise
    torch.testing.assert_close(fam.predicted_x0(exact, x_t, t), x0, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(fam.predicted_x0(torch.zeros_like(exact), x_t, t), x0, atol=1e-2)
    snr = fam.snr(t)
    assert snr.shape == (3,) and snr[0] > 1 > snr[2] and snr[1] > snr[2]


def test_twin_term_step_loss_equals_its_formula(tmp_path):
    """With ``adversarial_twin_weight`` the loss gains, under each adversary (per pair and shared),
    min(SNR, 1)·mse(x̂0 of the noised unsafe image, the safe twin's latent)."""
    trainer = _trainer(_config(tmp_path, adversary_per_pair=True, shared_adversary=True,
                               adversarial_twin_weight=0.3))
    trainer.step()
    latents, randn = [], trainer._sample_latents

    def recording_latents(mean, std, index):
        latents.append(randn(mean, std, index))
        return latents[-1]

    trainer._sample_latents = recording_latents
    loss, logs, calls, draws = _recorded_step_loss(trainer)
    cfg, fam = trainer.config, trainer.family
    n = cfg.train_batch_size
    (x, t, _, pred), (_, _, _, ref) = calls[-2], calls[-1]
    noise, x0_safe = draws[2], latents[1]
    abar = fam.noise_scheduler.alphas_cumprod[t[:n]].double().view(-1, 1, 1, 1)
    u, s = slice(0, n), slice(n, 2 * n)

    def preference(p_u, r_u, p_s, r_s, beta):
        diff = (_mse(p_s, noise) - _mse(r_s, noise)) - (_mse(p_u, noise) - _mse(r_u, noise))
        return -F.logsigmoid(-beta * diff).mean()

    def twin(rows):  # x̂0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ against the twin, weighted by min(ᾱ/(1−ᾱ), 1)
        x0_hat = (x[rows].double() - (1 - abar).sqrt() * pred[rows].double()) / abar.sqrt()
        weights = (abar / (1 - abar)).clamp(max=1.0).flatten()
        return (weights * _mse(x0_hat, x0_safe)).mean()

    groups = [slice(k * n, (k + 1) * n) for k in range(7)]  # prompt u, s | noise | pair adv u, s | shared u, s
    twins = twin(groups[3]) + twin(groups[5])
    expected = (cfg.prompt_preference_weight * preference(pred[u], ref[u], pred[s], ref[s], cfg.beta)
                + cfg.preservation_weight * (pred[2 * n:3 * n].double() - ref[2 * n:3 * n].double()).pow(2).mean()
                + cfg.adversarial_weight * preference(pred[groups[3]], ref[groups[3]], pred[groups[4]],
                                                      ref[groups[4]], cfg.beta)
                + cfg.adversarial_weight * preference(pred[groups[5]], ref[groups[5]], pred[groups[6]],
                                                      ref[groups[6]], cfg.beta)
                + 0.3 * twins)
    assert twins > 0
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.tensor(logs["adversarial_twin_loss"], dtype=torch.float64), twins,
                               rtol=1e-5, atol=1e-7)


def test_twin_term_needs_the_adversarial_preference(tmp_path):
    with pytest.raises(ValueError, match="adversarial_twin_weight"):
        _config(tmp_path, adversarial_conditioning=False, adversarial_twin_weight=1.0)
    with pytest.raises(ValueError, match="adversarial_twin_weight"):
        _config(tmp_path, adversarial_objective="negative_guidance", adversarial_twin_weight=1.0)


def test_shared_adversary_needs_per_pair_adversaries(tmp_path):
    with pytest.raises(ValueError, match="shared_adversary"):
        _config(tmp_path, shared_adversary=True)
    with pytest.raises(ValueError, match="shared_adversary"):
        _config(tmp_path, shared_adversary=True, adversary_per_pair=True, adversarial_objective="negative_guidance")


@pytest.mark.parametrize("target", ["adversary", "unsafe_prompt"])
def test_negative_guidance_step_loss_equals_its_formula(tmp_path, target):
    """Under 'negative_guidance' the adversarial term is ESD's target on the noised unsafe images:
    the reference's unconditional prediction pushed away from its prediction under the adversary
    ('adversary') or under each pair's unsafe prompt ('unsafe_prompt')."""
    trainer = _trainer(_config(tmp_path, adversarial_objective="negative_guidance", esd_eta=1.5,
                               negative_guidance_target=target))
    trainer.step()
    loss, logs, calls, draws = _recorded_step_loss(trainer)
    cfg = trainer.config
    n = cfg.train_batch_size
    # inner steps, the policy and reference calls, the reference's unconditional (and prompted) call
    assert len(calls) == cfg.adversarial_steps + 3
    (x, t, cond, pred), (_, _, _, ref), (x_ref, t_ref, ref_cond, last) = calls[-3:]
    noise = draws[2]
    u, s, a = slice(0, n), slice(n, 2 * n), slice(3 * n, 4 * n)
    # rows: unsafe, safe (empty prompt) | pure noise (empty prompt) | unsafe (adversarial)
    assert len(x) == 4 * n and torch.equal(x[a], x[u]) and torch.equal(x_ref[:n], x[u])
    assert torch.equal(t_ref[:n], t[u])
    adversary = trainer.adversarial_embeds.detach()[0]
    assert all(torch.equal(cond[i], adversary) for i in range(3 * n, 4 * n))
    null = trainer.null_cond.hidden_states[0]
    assert all(torch.equal(ref_cond[i], null) for i in range(n))
    ref_null = last[:n]
    if target == "adversary":
        assert len(x_ref) == n
        pull = ref[a]
    else:  # the same noised unsafe images under their pairs' unsafe prompt, in the same call
        assert len(x_ref) == 2 * n and torch.equal(x_ref[n:], x[u]) and torch.equal(t_ref[n:], t[u])
        prompt = trainer.unsafe_cond.hidden_states[0]
        assert not torch.equal(prompt, null) and not torch.equal(prompt, adversary)
        assert all(torch.equal(ref_cond[i], prompt) for i in range(n, 2 * n))
        pull = last[n:]
        assert not torch.allclose(pull, ref[a])

    def preference(p_u, r_u, p_s, r_s, beta):
        diff = (_mse(p_s, noise) - _mse(r_s, noise)) - (_mse(p_u, noise) - _mse(r_u, noise))
        return -F.logsigmoid(-beta * diff).mean()

    target_eps = ref_null.double() - cfg.esd_eta * (pull.double() - ref_null.double())
    guidance = (pred[a].double() - target_eps).pow(2).mean()
    expected = (cfg.prompt_preference_weight * preference(pred[u], ref[u], pred[s], ref[s], cfg.beta)
                + cfg.preservation_weight * (pred[2 * n:3 * n].double() - ref[2 * n:3 * n].double()).pow(2).mean()
                + cfg.adversarial_weight * guidance)
    assert guidance > 0 and not torch.allclose(pull, ref_null)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.tensor(logs["adversarial_guidance_loss"], dtype=torch.float64), guidance,
                               rtol=1e-5, atol=1e-7)


def test_negative_guidance_target_needs_the_negative_guidance_objective(tmp_path):
    with pytest.raises(ValueError, match="negative_guidance_target"):
        _config(tmp_path, negative_guidance_target="unsafe_prompt")


@pytest.mark.parametrize("space,drop", [("conditioning", 0.97), ("tokens", 0.985)])
def test_adversary_lowers_the_models_error_on_the_unsafe_images(tmp_path, space, drop):
    # tokens pass through the tiny random text encoder, which passes little of their change on
    # (measured: 2.4 % lower after 30 steps, against 3 %+ for the conditioning itself)
    trainer = _trainer(_config(tmp_path, adversarial_steps=1, adversarial_lr=5e-2, adversary_space=space))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((4, 4, 8, 8), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([100, 300, 500, 700])
    x_t = trainer.family.add_noise(x0, noise, t)
    errors = [trainer._adversarial_conditioning(x_t, t, x0, noise)[1] for _ in range(30)]
    # a random tiny UNet listens little to its conditioning: a steady, not a large, decrease
    assert errors[-1] < drop * errors[0] and sorted(errors, reverse=True) == errors, errors
    assert all(p.grad is None for p in trainer.lora_params)  # the LoRA got no gradient from the adversary


@pytest.mark.parametrize("shared", [False, True])
def test_robust_run_resumes_exactly(tmp_path, shared):
    kw = dict(adversary_per_pair=True, shared_adversary=True) if shared else {}
    full = _trainer(_config(tmp_path / "full", max_train_steps=4, **kw)).train()
    _trainer(_config(tmp_path / "cut", max_train_steps=4, checkpointing_steps=2, **kw)).train()
    torch.manual_seed(1234)  # a resumed process starts with another global RNG state
    resumed = _trainer(_config(tmp_path / "cut", max_train_steps=4, checkpointing_steps=2, **kw,
                               resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-2")))
    out = resumed.train()
    a, b = load_file(full / LORA_WEIGHTS_NAME), load_file(out / LORA_WEIGHTS_NAME)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if shared:  # the checkpoint holds the shared adversary and its optimiser state
        saved = load_file(tmp_path / "cut" / "out" / "checkpoint-2" / "trainer_state.safetensors")
        assert {"shared_adversary.embeds", "shared_adversary.optimizer.exp_avg"} <= saved.keys()


def test_per_pair_adversary_moves_only_the_drawn_pairs_conditionings(tmp_path):
    trainer = _trainer(_config(tmp_path, adversary_per_pair=True, adversarial_steps=1))
    table = trainer.adversarial_embeds
    assert table.shape[0] == len(trainer.dataset)
    before = table.detach().clone()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((2, 4, 8, 8), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([100, 700])
    index = torch.tensor([1, 3])
    cond, _ = trainer._adversarial_conditioning(trainer.family.add_noise(x0, noise, t), t, x0, noise, index)
    moved = [i for i in range(len(before)) if not torch.equal(before[i], table.detach()[i])]
    assert moved == [1, 3]
    assert torch.equal(cond.hidden_states, table.detach()[index])


def test_adversaries_can_start_at_each_pairs_unsafe_prompt(tmp_path):
    from duo_unlearn.pairs import PairDataset

    data = random_pair_dataset()
    prompts = ["a red circle with a black x", "a blue square, an x on it", "x", "a green triangle crossed out"]
    data = PairDataset(data.unsafe, data.safe, prompts, ["safe"] * 4, data.records)
    cfg = _config(tmp_path, adversary_per_pair=True, adversary_init="unsafe_prompt")
    trainer = UnlearningTrainer(cfg, pipe=tiny_sd_pipeline(), dataset=data)
    start = trainer.adversarial_embeds.detach().clone()
    assert torch.equal(start, trainer.family.encode_prompts(prompts).hidden_states.float())
    assert not torch.equal(start[0], start[1])
    assert not torch.equal(start[0], trainer.null_cond.hidden_states[0])
    trainer.step()  # descends from there
    assert not torch.equal(start, trainer.adversarial_embeds.detach())


def test_a_pair_drawn_twice_moves_its_adversary_the_same_way_every_time(tmp_path):
    """On ShapeWorld's real sizes and two threads: the gradient of a pair's adversarial conditioning
    sums the rows that drew it in a fixed order, so repeating the same adversary step from the same
    state gives the same bits (summed with parallel atomic adds, about one repeat in eight differed)."""
    from duo_unlearn.pipelines import load_shapeworld

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = _config(tmp_path, adversary_per_pair=True, adversarial_steps=1, resolution=64)
        trainer = UnlearningTrainer(cfg, pipe=load_shapeworld(), dataset=random_pair_dataset(n=4, size=64))
        g = torch.Generator().manual_seed(0)
        x0 = torch.randn((8, 4, 16, 16), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (8,), generator=g)
        x_t = trainer.family.add_noise(x0, noise, t)
        index = torch.tensor([0, 0, 0, 1, 0, 2, 0, 1])  # pair 0 five times, pair 1 twice
        start = trainer.adversarial_embeds.detach().clone()
        results = set()
        for _ in range(12):
            with torch.no_grad():
                trainer.adversarial_embeds.copy_(start)
            trainer.adversarial_optimizer.state.clear()
            trainer._adversarial_conditioning(x_t, t, x0, noise, index)
            results.add(trainer.adversarial_embeds.detach().numpy().tobytes())
        assert not torch.equal(trainer.adversarial_embeds.detach(), start)  # the step moved it
        assert len(results) == 1
    finally:
        torch.set_num_threads(threads)


def test_token_slots_encode_what_a_textual_inversion_prompt_encodes():
    """A token adversary is something Concept Inversion can express: row i's hidden states equal
    those of the prompt "<adv0> <adv1> <adv2>" with its vectors as the placeholders', bit for bit,
    and the gradient reaches the vectors through the frozen text encoder."""
    from duo_unlearn.attacks.text import Placeholders, TokenSlots, encode_ids, tokenize

    pipe = tiny_sd_pipeline()
    pipe.text_encoder.requires_grad_(False)
    slots = TokenSlots(pipe, 3)
    table = pipe.text_encoder.get_input_embeddings().weight.detach()
    vectors = torch.nn.Parameter(table[torch.tensor([[5, 9, 14], [20, 3, 7]])].clone())
    hidden = slots.encode(vectors)
    for row in range(2):
        with torch.no_grad(), Placeholders(pipe, 3, init=vectors[row]) as adv:
            expected = encode_ids(pipe, tokenize(pipe, [adv.text]))
        assert torch.equal(hidden[row], expected[0])
    assert not torch.equal(hidden[0], hidden[1])
    with torch.no_grad():  # the filler prompt itself when the vectors are the filler's
        filler_prompt = encode_ids(pipe, tokenize(pipe, ["a a a"]))[0]
        assert torch.equal(slots.encode(slots.filler_vectors()[None])[0], filler_prompt)
    hidden.pow(2).sum().backward()
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0


def test_token_adversaries_can_start_at_each_pairs_unsafe_prompt(tmp_path):
    from duo_unlearn.pairs import PairDataset

    data = random_pair_dataset()
    prompts = ["a red circle with a black x", "a blue square, an x on it", "x", "a green triangle crossed out"]
    data = PairDataset(data.unsafe, data.safe, prompts, ["safe"] * 4, data.records)
    cfg = _config(tmp_path, adversary_per_pair=True, adversary_init="unsafe_prompt", adversary_space="tokens",
                  adversary_tokens=2)
    trainer = UnlearningTrainer(cfg, pipe=tiny_sd_pipeline(), dataset=data)
    table = trainer.pipe.text_encoder.get_input_embeddings().weight.detach().float()
    for row, prompt in enumerate(prompts):
        ids = trainer.pipe.tokenizer(prompt, add_special_tokens=False).input_ids
        assert torch.equal(trainer.adversarial_embeds.detach()[row], table[[ids[0], ids[1 % len(ids)]]])


def test_token_adversary_is_refused_where_several_text_encoders_condition(tmp_path):
    from duo_unlearn.testing import tiny_sdxl_pipeline

    with pytest.raises(ValueError, match="adversary_space='tokens'"):
        UnlearningTrainer(_config(tmp_path, adversary_space="tokens"), pipe=tiny_sdxl_pipeline(),
                          dataset=random_pair_dataset())


@pytest.mark.parametrize("robust", [False, True])
def test_retain_term_step_loss_equals_its_formula(tmp_path, robust):
    """With ``retain_weight`` the step adds, on the last rows, the base model's retain images noised
    at any timestep under their own prompts, and the loss gains retain_weight·‖ε_θ − ε_ref‖² there."""
    prompts = ("a red square", "a blue circle with a plus over it")
    trainer = _trainer(_config(tmp_path, adversarial_conditioning=robust, retain_prompts=prompts,
                               retain_weight=5.0, retain_images_per_prompt=2, retain_num_inference_steps=3))
    assert (tmp_path / "out" / "retain_images.png").is_file()
    assert trainer.retain_mean.shape[0] == 4
    trainer.step()
    loss, logs, calls, draws = _recorded_step_loss(trainer)
    cfg = trainer.config
    n = cfg.train_batch_size
    (x, _, cond, pred), (_, _, _, ref) = calls[-2], calls[-1]
    rows = 5 * n if robust else 3 * n  # pairs (2n), pure noise (n), [adversary (2n)]
    assert len(x) == rows + n
    retain_conds = trainer.retain_cond.hidden_states
    for row in cond[rows:]:  # each retain row is conditioned on one of the retain prompts
        assert any(torch.equal(row, c) for c in retain_conds)
    noise = draws[2]

    def preference(p_u, r_u, p_s, r_s, beta):
        diff = (_mse(p_s, noise) - _mse(r_s, noise)) - (_mse(p_u, noise) - _mse(r_u, noise))
        return -F.logsigmoid(-beta * diff).mean()

    u, s = slice(0, n), slice(n, 2 * n)
    expected = (cfg.prompt_preference_weight * preference(pred[u], ref[u], pred[s], ref[s], cfg.beta)
                + cfg.preservation_weight * (pred[2 * n:3 * n].double() - ref[2 * n:3 * n].double()).pow(2).mean())
    if robust:
        a_u, a_s = slice(3 * n, 4 * n), slice(4 * n, 5 * n)
        expected = expected + cfg.adversarial_weight * preference(pred[a_u], ref[a_u], pred[a_s], ref[a_s], cfg.beta)
    retain = (pred[rows:].double() - ref[rows:].double()).pow(2).mean()
    assert retain > 0
    torch.testing.assert_close(loss.double(), expected + 5.0 * retain, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.tensor(logs["retain"], dtype=torch.float64), retain, rtol=1e-5, atol=1e-7)


def test_rows_of_a_zero_weight_prompt_preference_are_left_out_with_the_same_draws(tmp_path):
    """Robust DUO's recipe (prompt_preference_weight 0): the policy and reference calls hold only the
    pure noise, the adversary's (unsafe, safe) and the retain rows, the loss is the formula of those
    groups, and the step draws the same noise, timesteps and retain rows as with the prompt rows."""
    prompts = ("a red square", "a blue circle with a plus over it")
    kw = dict(adversary_per_pair=True, retain_prompts=prompts, retain_weight=5.0, retain_num_inference_steps=3,
              adversarial_beta=20.0)
    recorded = {}
    for weight in (0.0, 0.4):
        trainer = _trainer(_config(tmp_path / str(weight), prompt_preference_weight=weight, **kw))
        trainer.step()
        recorded[weight] = (trainer, *_recorded_step_loss(trainer))
    trainer, loss, logs, calls, draws = recorded[0.0]
    _, _, with_logs, with_calls, with_draws = recorded[0.4]
    assert len(draws) == len(with_draws) and all(torch.equal(a, b) for a, b in zip(draws, with_draws))
    cfg = trainer.config
    n = cfg.train_batch_size
    (x, t, cond, pred), (_, _, _, ref) = calls[-2], calls[-1]
    with_x, with_t = with_calls[-2][0], with_calls[-2][1]
    assert len(x) == 4 * n and len(with_x) == 6 * n  # noise | adversary u, s | retain, against 2n more
    assert torch.equal(x, with_x[2 * n:]) and torch.equal(t, with_t[2 * n:])  # the same rows, in the same order
    assert all(torch.equal(cond[i], trainer.null_cond.hidden_states[0]) for i in range(n))
    assert "duo_loss" not in logs and "duo_loss" in with_logs
    noise = draws[2]

    def preference(p_u, r_u, p_s, r_s, beta):
        diff = (_mse(p_s, noise) - _mse(r_s, noise)) - (_mse(p_u, noise) - _mse(r_u, noise))
        return -F.logsigmoid(-beta * diff).mean()

    reg, a_u, a_s, kept = (slice(k * n, (k + 1) * n) for k in range(4))
    expected = (cfg.preservation_weight * (pred[reg].double() - ref[reg].double()).pow(2).mean()
                + cfg.adversarial_weight * preference(pred[a_u], ref[a_u], pred[a_s], ref[a_s], 20.0)
                + 5.0 * (pred[kept].double() - ref[kept].double()).pow(2).mean())
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)


def test_retain_images_are_the_base_models_drawings_of_the_retain_prompts(tmp_path):
    """The retain latents encode what the pipeline, without adapters, draws for each prompt and seed:
    drawing them again with the same seeds gives the same posterior means."""
    from duo_unlearn.families import encode_latents
    from duo_unlearn.sampling import generate

    prompts = ("a red square", "a green triangle")
    trainer = _trainer(_config(tmp_path, adversarial_conditioning=False, retain_prompts=prompts, retain_weight=1.0,
                               retain_num_inference_steps=3))
    pipe = tiny_sd_pipeline()
    seeds = [trainer.config.seed * 1_000_003 + 7919 + i for i in range(2)]
    images = generate(pipe, list(prompts), seeds, num_inference_steps=3)
    pixels = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 127.5 - 1
    mean, _ = encode_latents(pipe.vae, pixels)
    torch.testing.assert_close(trainer.retain_mean, mean)
    assert not torch.equal(trainer.retain_mean[0], trainer.retain_mean[1])


def test_retain_weight_needs_retain_prompts(tmp_path):
    with pytest.raises(ValueError, match="retain_prompts"):
        _config(tmp_path, retain_weight=1.0)


@pytest.mark.parametrize("seed", [0, 2])
def test_demo_retain_term_holds_the_preserve_prompts_and_never_an_evaluation_prompt(tmp_path, seed):
    """`duo demo --retain-weight` trains on the seed's preserve prompts (UCE's in the study), less any
    wording that recurs among the demo's evaluation prompts: at seed 2 and 64 prompts per group,
    three of the 32 do ("a green triangle" ...), and preservation must not be scored on them."""
    from duo_unlearn.demo import DemoConfig, demo_train_config, preserve_prompts
    from duo_unlearn.world.quality import NUM_INFERENCE_STEPS, prompt_groups

    demo = DemoConfig(seed=seed, num_eval_prompts=64, retain_weight=1e3)
    cfg = demo_train_config(demo, tmp_path / "pairs", tmp_path / "out")
    evaluated = {r["prompt"] for group in prompt_groups(64, seed).values() for r in group}
    preserve = preserve_prompts(seed)
    assert (cfg.retain_weight, cfg.retain_num_inference_steps) == (1e3, NUM_INFERENCE_STEPS)
    assert cfg.retain_prompts == tuple(p for p in preserve if p not in evaluated)
    assert not set(cfg.retain_prompts) & evaluated
    assert len(cfg.retain_prompts) == {0: 32, 2: 29}[seed]  # the collisions are real, and removed
    assert sum("plus" in p for p in cfg.retain_prompts) >= 15  # the close concept is held
    off = demo_train_config(DemoConfig(seed=seed, retain_weight=0.0), tmp_path / "pairs", tmp_path / "out")
    assert (off.retain_weight, off.retain_prompts) == (0.0, ())


def test_the_demo_trains_the_studys_retain_recipe_by_default(tmp_path):
    """`duo demo` trains what the study's retain recipe trains
    (configs/eval_robustness_retain_1e4_400_steps.yaml) on the demo's pairs: the same steps,
    adversaries, learning rate, λ and retain weight, and the study's adversarial β as the demo's
    only acting β (the study's own β of 500 sets only its learning rate and λ)."""
    from pathlib import Path

    from duo_unlearn.configs import load_config
    from duo_unlearn.demo import DemoConfig, demo_train_config
    from duo_unlearn.evaluation.config import EvalConfig

    configs = Path(__file__).parent.parent / "configs"
    study = load_config(EvalConfig, configs / "eval_robustness_retain_1e4_400_steps.yaml")
    cfg = demo_train_config(DemoConfig(), tmp_path / "pairs", tmp_path / "out")
    beta = study.robust_betas[0]
    assert cfg.prompt_preference_weight == study.robust_prompt_preference_weight == 0  # β acts only here:
    assert (cfg.adversarial_beta or cfg.beta) == study.adversarial_beta
    assert (cfg.max_train_steps, cfg.train_batch_size, cfg.adversarial_weight, cfg.retain_weight) == (
        study.train_steps, study.train_batch_size, study.adversarial_weight, study.robust_retain_weight)
    assert cfg.resolved_preservation_weight == study.base_preservation_weight * beta / 100
    assert cfg.resolved_learning_rate == pytest.approx(study.base_learning_rate * 100 / beta)
    assert (cfg.adversarial_steps, cfg.adversary_per_pair, cfg.adversary_space, cfg.use_prompts) == (
        study.adversarial_steps, study.adversary_per_pair, study.adversary_space, study.use_prompts)
    assert cfg.adversarial_conditioning and cfg.retain_prompts


def test_the_former_demo_recipe_is_the_studys_robust_duo(tmp_path):
    """``ROBUST_DUO_200_STEPS`` (`duo demo --beta 500 --max-train-steps 200 --adversarial-weight 2
    --preservation-weight 5e6 --retain-weight 0`) trains what the study's robust DUO trains
    (configs/eval_robustness.yaml)."""
    from pathlib import Path

    from duo_unlearn.configs import load_config
    from duo_unlearn.demo import ROBUST_DUO_200_STEPS, DemoConfig, demo_train_config
    from duo_unlearn.evaluation.config import EvalConfig

    study = load_config(EvalConfig, Path(__file__).parent.parent / "configs" / "eval_robustness.yaml")
    cfg = demo_train_config(DemoConfig(**ROBUST_DUO_200_STEPS), tmp_path / "pairs", tmp_path / "out")
    beta = study.robust_betas[0]
    assert (cfg.beta, cfg.adversarial_beta, study.adversarial_beta) == (beta, None, None)
    assert (cfg.max_train_steps, cfg.adversarial_weight, cfg.retain_weight) == (
        study.train_steps, study.adversarial_weight, study.robust_retain_weight)
    assert cfg.resolved_preservation_weight == study.base_preservation_weight * beta / 100
    assert cfg.resolved_learning_rate == pytest.approx(study.base_learning_rate * 100 / beta)


def _captioned_pairs():
    from duo_unlearn.pairs import PairDataset

    data = random_pair_dataset()
    safe = ["a red circle", "a blue square on grass", "a green triangle", "two yellow stars"]
    return PairDataset(data.unsafe, data.safe, [p + " with a black x" for p in safe], safe, data.records)


def _pool_trainer(tmp_path, **kw):
    pool = dict(adversary_per_pair=True, adversarial_beta=30.0, inversion_pool_every=2, inversion_pool_steps=3,
                inversion_pool_size=2)
    cfg = _config(tmp_path, **{**pool, **kw})
    return UnlearningTrainer(cfg, pipe=tiny_sd_pipeline(), dataset=_captioned_pairs())


def test_token_slots_after_a_context_encode_what_concept_inversions_prompt_encodes():
    """A pooled inversion's token after a pair's safe caption is what Concept Inversion's prompt
    "<caption> <concept>" encodes, bit for bit, for captions of different lengths in one batch."""
    from duo_unlearn.attacks.text import Placeholders, TokenSlots, encode_ids, tokenize

    pipe = tiny_sd_pipeline()
    pipe.text_encoder.requires_grad_(False)
    captions = ["a red circle", "two yellow stars on grass, small", ""]
    slots = TokenSlots(pipe, 2, captions)
    table = pipe.text_encoder.get_input_embeddings().weight.detach()
    vectors = torch.nn.Parameter(table[torch.tensor([[5, 9], [20, 3], [7, 7], [11, 4]])].clone())
    contexts = torch.tensor([1, 0, 2, 1])
    hidden = slots.encode(vectors, contexts)
    for row, context in enumerate(contexts.tolist()):
        with torch.no_grad(), Placeholders(pipe, 2, init=vectors[row]) as adv:
            expected = encode_ids(pipe, tokenize(pipe, [f"{captions[context]} {adv.text}".strip()]))
        assert torch.equal(hidden[row], expected[0])
    hidden.pow(2).sum().backward()
    assert vectors.grad is not None and vectors.grad.abs().sum(dim=(1, 2)).min() > 0
    with pytest.raises(ValueError, match="too long"):
        TokenSlots(pipe, 2, [" ".join(["circle"] * 200)])


@pytest.mark.parametrize("pool_weight", [None, 4.5])
def test_inversion_pool_step_loss_equals_its_formula(tmp_path, pool_weight):
    """With ``inversion_pool_every`` the step adds the preference (the adversary's β; its weight,
    or ``inversion_pool_weight`` when set) on the same (unsafe, safe) rows under a pooled
    inversion's token after each pair's safe caption."""
    trainer = _pool_trainer(tmp_path, inversion_pool_weight=pool_weight)
    trainer.step()  # step 0 runs the first inversion
    assert len(trainer.inversion_pool) == 1
    indices, randint = [], torch.randint

    def recording_randint(*args, **kw):
        indices.append(randint(*args, **kw))
        return indices[-1]

    torch.randint = recording_randint
    try:
        loss, logs, calls, draws = _recorded_step_loss(trainer)
    finally:
        torch.randint = randint
    cfg = trainer.config
    n = cfg.train_batch_size
    (x, t, cond, pred), (_, _, _, ref) = calls[-2], calls[-1]
    assert len(x) == 7 * n  # prompt u, s | noise | pair adversary u, s | pool u, s
    pair_index = indices[0]
    with torch.no_grad():
        expected_cond = trainer.pool_slots[1].encode(trainer.inversion_pool[0][None].expand(n, -1, -1), pair_index)
    p_u, p_s = slice(5 * n, 6 * n), slice(6 * n, 7 * n)
    assert torch.equal(cond[p_u], expected_cond) and torch.equal(cond[p_s], expected_cond)
    assert torch.equal(x[p_u], x[:n]) and torch.equal(x[p_s], x[n:2 * n]) and torch.equal(t[p_u], t[:n])
    noise = draws[2]

    def preference(rows_u, rows_s, beta):
        diff = ((_mse(pred[rows_s], noise) - _mse(ref[rows_s], noise))
                - (_mse(pred[rows_u], noise) - _mse(ref[rows_u], noise)))
        return -F.logsigmoid(-beta * diff).mean()

    g = [slice(k * n, (k + 1) * n) for k in range(7)]
    pool_term = preference(g[5], g[6], 30.0)
    expected = (cfg.prompt_preference_weight * preference(g[0], g[1], cfg.beta)
                + cfg.preservation_weight * (pred[g[2]].double() - ref[g[2]].double()).pow(2).mean()
                + cfg.adversarial_weight * preference(g[3], g[4], 30.0)
                + (cfg.adversarial_weight if pool_weight is None else pool_weight) * pool_term)
    assert cfg.adversarial_weight != 4.5 and pool_term.item() > 0  # so the two weights give different losses
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.tensor(logs["inversion_pool_duo_loss"], dtype=torch.float64), pool_term,
                               rtol=1e-5, atol=1e-7)


def test_inversion_pool_is_refreshed_every_k_steps_and_keeps_the_newest(tmp_path):
    """A fresh inversion at steps 0, k, 2k…, the pool capped at its size (the oldest leaves), each
    a token that reproduces the unsafe images better than the word it started from, found
    without touching the LoRA."""
    trainer = _pool_trainer(tmp_path, inversion_pool_steps=25, inversion_pool_lr=5e-2)
    seen = []
    for step in range(5):
        logs = trainer.step()
        seen.append([v.clone() for v in trainer.inversion_pool])
        assert ("inversion_pool_mse" in logs) == (step % 2 == 0)
    assert [len(p) for p in seen] == [1, 1, 2, 2, 2]
    assert torch.equal(seen[2][0], seen[0][0]) and torch.equal(seen[4][0], seen[2][1])  # oldest left first
    assert not torch.equal(seen[2][1], seen[0][0])

    fam, pipe = trainer.family, trainer.pipe
    model = trainer.accelerator.unwrap_model(trainer.model)
    g = torch.Generator().manual_seed(0)
    index = torch.arange(4)
    x0 = scale_latents(pipe.vae, trainer.unsafe_mean[index])
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([100, 300, 500, 700])
    trainer.config.inversion_pool_size = 1
    with torch.no_grad():
        word = pipe.tokenizer("mark", add_special_tokens=False).input_ids[0]
        start = pipe.text_encoder.get_input_embeddings().weight[[word]][None].float()

        def error(token):
            cond = Conditioning(trainer.pool_slots[1].encode(token.expand(4, -1, -1), index),
                                trainer.null_cond.select([0] * 4).extra)
            return _mse(fam.predict(model, fam.add_noise(x0, noise, t), t, cond), noise).mean()

    before = {k: v.clone() for k, v in model.state_dict().items() if "lora" in k}
    trainer.config.inversion_pool_steps = 60
    trainer._refresh_inversion_pool()
    with torch.no_grad():
        assert error(trainer.inversion_pool[0][None]) < error(start)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in trainer.lora_params)


def test_inversion_pool_with_contrast_takes_the_adaptive_inversions_step(tmp_path):
    """With ``inversion_pool_contrast`` κ an inversion starts at the given words' embeddings
    (cycled over its tokens) and descends the adaptive inversion's objective: the unsafe images'
    error plus softplus(κ·(mse_u − mse_safe))/κ, each pair's safe image on the same noise, timestep
    and prompt. Replayed here: the first AdamW step from the worked-out gradient."""
    kappa, lr = 50.0, 1e-2
    trainer = _pool_trainer(tmp_path, inversion_pool_contrast=kappa, inversion_pool_tokens=3,
                            inversion_pool_init_word="black crossed", inversion_pool_steps=1, inversion_pool_lr=lr)
    fam, pipe, n = trainer.family, trainer.pipe, trainer.config.train_batch_size
    model = trainer.accelerator.unwrap_model(trainer.model)
    state = trainer.generator.get_state()
    trainer._refresh_inversion_pool()
    token = trainer.inversion_pool[0]

    trainer.generator.set_state(state)  # the same draws, in the trainer's order
    index = torch.randint(len(trainer.dataset), (trainer._global_batch,), generator=trainer.generator)[trainer.rows]
    x0_u = trainer._sample_latents(trainer.unsafe_mean, trainer.unsafe_std, index)
    noise = trainer._randn(x0_u.shape[1:])
    t = trainer._timesteps(0, fam.num_train_timesteps)
    x0_s = trainer._sample_latents(trainer.safe_mean, trainer.safe_std, index)
    ids = [pipe.tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("black", "crossed")]
    table = pipe.text_encoder.get_input_embeddings().weight.detach()

    def first_step(with_contrast: bool) -> torch.Tensor:
        vectors = torch.nn.Parameter(table[[ids[0], ids[1], ids[0]]].float()[None].clone())
        cond = Conditioning(trainer.pool_slots[3].encode(vectors.expand(n, -1, -1), index),
                            trainer.null_cond.select([0] * n).extra)
        mse_u = _mse(fam.predict(model, fam.add_noise(x0_u, noise, t), t, cond), noise)
        mse_s = _mse(fam.predict(model, fam.add_noise(x0_s, noise, t), t, cond), noise)
        objective = mse_u.mean()
        if with_contrast:
            objective = objective + torch.log1p(torch.exp(kappa * (mse_u - mse_s))).mean() / kappa
        vectors.grad = torch.autograd.grad(objective, vectors)[0]
        torch.optim.AdamW([vectors], lr=lr, weight_decay=0.0).step()
        return vectors.detach()[0]

    expected, plain = first_step(True), first_step(False)
    torch.testing.assert_close(token, expected, rtol=0, atol=lr * 1e-3)
    assert (token - plain).abs().max() > lr  # the contrast term moved the step: a plain inversion's differs
    with pytest.raises(ValueError, match="inversion_pool_contrast"):
        _config(tmp_path, inversion_pool_every=5, inversion_pool_contrast=-1.0)


def test_inversion_pool_run_resumes_exactly(tmp_path):
    kw = dict(max_train_steps=5)
    full = _pool_trainer(tmp_path / "full", **kw).train()
    _pool_trainer(tmp_path / "cut", checkpointing_steps=2, **kw).train()
    torch.manual_seed(1234)
    resumed = _pool_trainer(tmp_path / "cut", checkpointing_steps=2, **kw,
                            resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-2"))
    out = resumed.train()
    a, b = load_file(full / LORA_WEIGHTS_NAME), load_file(out / LORA_WEIGHTS_NAME)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = load_file(tmp_path / "cut" / "out" / "checkpoint-2" / "trainer_state.safetensors")
    assert "inversion_pool.0" in saved and "inversion_pool.1" not in saved  # step 0's; step 2's runs after the resume


def test_alternating_pool_recipes_resume_exactly_also_from_the_stacked_format(tmp_path):
    """A pool whose inversions alternate recipes of 1 and 2 tokens is saved entry by entry and
    resumes to the same bits; so does a checkpoint in the earlier format (one stacked tensor)."""
    kw = dict(max_train_steps=4, inversion_pool_every=1, inversion_pool_steps=2,
              inversion_pool_alternate={"tokens": 2, "init_word": "black crossed", "contrast": 50.0})
    full = _pool_trainer(tmp_path / "full", **kw).train()
    _pool_trainer(tmp_path / "cut", checkpointing_steps=2, **kw).train()
    checkpoint = tmp_path / "cut" / "out" / "checkpoint-2"
    saved = load_file(checkpoint / "trainer_state.safetensors")
    assert [saved[f"inversion_pool.{i}"].shape[0] for i in range(2)] == [1, 2]  # steps 0 and 1: both recipes
    resumed = _pool_trainer(tmp_path / "cut", checkpointing_steps=2, **kw, resume_from_checkpoint=str(checkpoint))
    out = resumed.train()
    a, b = load_file(full / LORA_WEIGHTS_NAME), load_file(out / LORA_WEIGHTS_NAME)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    one_token = dict(max_train_steps=4, inversion_pool_every=1, inversion_pool_steps=2)
    full = _pool_trainer(tmp_path / "full-1", **one_token).train()
    _pool_trainer(tmp_path / "old", checkpointing_steps=2, **one_token).train()
    checkpoint = tmp_path / "old" / "out" / "checkpoint-2"
    state = load_file(checkpoint / "trainer_state.safetensors")
    pool = [state.pop(f"inversion_pool.{i}") for i in range(2)]
    save_file({**state, "inversion_pool": torch.stack(pool)}, checkpoint / "trainer_state.safetensors")
    out = _pool_trainer(tmp_path / "old", checkpointing_steps=2, **one_token,
                        resume_from_checkpoint=str(checkpoint)).train()
    a, b = load_file(full / LORA_WEIGHTS_NAME), load_file(out / LORA_WEIGHTS_NAME)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_other_pool_inversion_takes_the_alternate_recipe(tmp_path):
    """The k-th inversion (k = step // inversion_pool_every) takes the alternate recipe when k is
    odd: it is bit for bit the inversion of a trainer whose only recipe is the alternate one, on
    the same model and draws; an even k takes the pool settings."""
    alternate = {"tokens": 2, "init_word": "black crossed", "contrast": 50.0, "steps": 2, "lr": 2e-2}
    mixed = _pool_trainer(tmp_path / "mixed", inversion_pool_alternate=alternate)
    only = _pool_trainer(tmp_path / "only", **{f"inversion_pool_{k}": v for k, v in alternate.items()})
    assert mixed.config.inversion_pool_recipe(4) == mixed.config.inversion_pool_recipe(0) != \
        mixed.config.inversion_pool_recipe(3) == only.config.inversion_pool_recipe(0)
    mixed.global_step = 2  # every 2 steps: the 2nd inversion, k = 1
    mixed._refresh_inversion_pool()
    only._refresh_inversion_pool()
    assert mixed.inversion_pool[0].shape == (2, only.inversion_pool[0].shape[1])
    assert torch.equal(mixed.inversion_pool[0], only.inversion_pool[0])
    plain = _pool_trainer(tmp_path / "plain")
    mixed.global_step = 4  # k = 2: the pool settings again
    state = mixed.generator.get_state()
    mixed._refresh_inversion_pool()
    plain.generator.set_state(state)
    plain._refresh_inversion_pool()
    assert torch.equal(mixed.inversion_pool[1], plain.inversion_pool[0])


def test_pool_members_of_different_token_counts_are_each_encoded_after_their_caption(tmp_path):
    """A step's pooled rows may draw inversions of 1 and 2 tokens: each row holds what its own
    inversion encodes after its pair's safe caption."""
    trainer = _pool_trainer(tmp_path, inversion_pool_alternate={"tokens": 2})
    table = trainer.pipe.text_encoder.get_input_embeddings().weight.detach()
    trainer.inversion_pool = [table[[5]].clone(), table[[9, 3]].clone(), table[[12]].clone()]
    members, contexts = [1, 0, 2, 1], torch.tensor([3, 0, 1, 2])
    with torch.no_grad():
        hidden = trainer._encode_pool_members(members, contexts)
        for row, (i, c) in enumerate(zip(members, contexts.tolist())):
            vectors = trainer.inversion_pool[i]
            expected = trainer.pool_slots[len(vectors)].encode(vectors[None], torch.tensor([c]))
            torch.testing.assert_close(hidden[row], expected[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(hidden[0], hidden[3])  # the same inversion after different captions


@pytest.mark.parametrize("alternate, match", [({"size": 3}, "unknown settings"),
                                              ({"tokens": "two"}, "tokens must be int"),
                                              ({"steps": 0}, "inversion_pool_steps must be positive \\(in inversion"),
                                              (["tokens=2", "init_word"], "NAME=VALUE"),
                                              ({"contrast": -1}, "inversion_pool_contrast must be >= 0")])
def test_a_bad_alternate_recipe_is_named_before_any_model_loads(tmp_path, alternate, match):
    from duo_unlearn.evaluation.config import EvalConfig

    with pytest.raises(ValueError, match=match) as err:
        _config(tmp_path, inversion_pool_every=5, inversion_pool_alternate=alternate)
    assert str(err.value).startswith("DUOConfig.inversion_pool_")
    with pytest.raises(ValueError, match=match) as err:
        EvalConfig(output_dir=str(tmp_path), inversion_pool_alternate=alternate)
    assert str(err.value).startswith("EvalConfig.inversion_pool_")
    cli = DUOConfig(inversion_pool_alternate=["tokens=2", "init_word=black x", "contrast=100"])
    assert cli.inversion_pool_alternate == {"tokens": 2, "init_word": "black x", "contrast": 100.0}


def test_inversion_pool_needs_robust_duo_and_one_text_encoder(tmp_path):
    with pytest.raises(ValueError, match="inversion_pool_every"):
        _config(tmp_path, adversarial_conditioning=False, inversion_pool_every=5)
    with pytest.raises(ValueError, match="inversion_pool_steps"):
        _config(tmp_path, inversion_pool_every=5, inversion_pool_steps=0)
    from duo_unlearn.evaluation.config import EvalConfig

    for owner, make in (("DUOConfig", lambda: _config(tmp_path, inversion_pool_every=5, inversion_pool_weight=-1.0)),
                        ("EvalConfig", lambda: EvalConfig(output_dir=str(tmp_path), inversion_pool_weight=-1.0))):
        with pytest.raises(ValueError, match=f"{owner}.inversion_pool_weight must be >= 0"):
            make()
    from duo_unlearn.testing import tiny_sd3_pipeline

    with pytest.raises(ValueError, match="inversion_pool_every needs one text encoder"):
        UnlearningTrainer(_config(tmp_path, inversion_pool_every=5), pipe=tiny_sd3_pipeline(),
                          dataset=random_pair_dataset())
