"""White-box attacks that *learn* a conditioning against the target model itself.

- **Concept Inversion** (Pham et al., ICLR 2024): textual inversion of 1-4 new tokens on the
  unlearned model, on images of the concept; the images are then generated with the tokens.
  The learned embedding is exported in diffusers' textual-inversion format
  (``learned_embeds.safetensors``, ``{"<concept>": (n_tokens, dim)}``), so
  ``pipe.load_textual_inversion(path)`` loads it and ``"a photo of <concept>"`` works.
- **Adaptive inversion**: an inversion built against DUO's defence (see its docstring).
- **Conditioning-space probe**: the whole sequence of text hidden states the denoiser attends
  to, optimised freely, with no projection to tokens. No prompt can reach beyond what this can,
  so it is an *upper bound* on text-side attacks: a diagnostic, not a target.

Every attack here records a **budget curve**: the learned state is kept at a few checkpoints
(e.g. 50, 200, 500 of 1000 steps) and each is rendered with the final result's prompts and
seeds, so the report can say at which budget a model falls. The images of a checkpoint are
made exactly as the final ones are; only the learned vectors differ.
"""

from __future__ import annotations

import numpy as np
import torch

from duo_unlearn.attacks.base import AttackConfig, AttackResult, register_attack
from duo_unlearn.attacks.text import Placeholders, encode_ids, frozen, tokenize, word_init_vectors
from duo_unlearn.families import Conditioning, family_for, scale_latents
from duo_unlearn.losses import inversion_contrast_loss, per_sample_mse

TEXTUAL_INVERSION_TOKEN = "<concept>"
"""The token name the exported embedding loads under (``load_textual_inversion``)."""


def curve_points(budget: int) -> list[int]:
    """Budgets at which an optimising attack's state is rendered: 1/20, 1/5, 1/2 and all of it."""
    return sorted({max(1, budget // 20), max(1, budget // 5), max(1, budget // 2), budget})


def curve_entry(budget: int, result: AttackResult) -> dict:
    """One point of a budget curve: the images judged and how many showed the concept."""
    return {"budget": int(budget), "n": len(result.scores), "successes": int(result.success.sum())}


def _latent_batch(pipe, mean: torch.Tensor, std: torch.Tensor, idx: torch.Tensor, gen: torch.Generator):
    return scale_latents(pipe.vae, mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen))


def _draw(pipe, family, mean: torch.Tensor, std: torch.Tensor, batch_size: int, gen: torch.Generator):
    """One optimisation batch: image indices, sampled latents, noise and timesteps, all from ``gen``."""
    idx = torch.randint(len(mean), (batch_size,), generator=gen)
    latents = _latent_batch(pipe, mean, std, idx, gen)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, family.num_train_timesteps, (batch_size,), generator=gen)
    return idx, latents, noise, t


def _descend(opt: torch.optim.Optimizer, loss: torch.Tensor, losses: list[float]) -> None:
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    losses.append(loss.item())


def _mse_per_sample(pipe, family, latents: torch.Tensor, cond: Conditioning, noise: torch.Tensor,
                    t: torch.Tensor) -> torch.Tensor:
    """Per-sample denoising error of ``latents`` under ``cond`` (the quantity DUO's preference compares)."""
    device = family.denoiser.device
    latents, noise, t = latents.to(device), noise.to(device), t.to(device)
    x_t = family.add_noise(latents, noise, t)
    pred = family.predict(family.denoiser, x_t, t, cond)
    return per_sample_mse(*family.loss_space(pred, x_t, latents, noise, t))


def _token_inversion(pipe, detector, task, cfg: AttackConfig, method: str, num_tokens: int, init_words: list[str],
                     lr: float, batch_size: int, contrast: float, extra: dict) -> AttackResult:
    """Textual inversion of ``num_tokens`` tokens, rendered at every curve point.

    Loss per batch: the mean denoising error of concept images under the prompt with the tokens,
    plus, when ``contrast`` > 0, ``softplus(contrast · (mse_unsafe − mse_safe)) / contrast`` on the
    same noise and timesteps for the images' safe twins (the adaptive attack's term)."""
    from duo_unlearn.attacks.methods import _image_latents, _render, effective_budget

    steps = effective_budget(cfg, method)
    family = family_for(pipe)
    gen = torch.Generator().manual_seed(cfg.seed)
    mean, std = _image_latents(pipe, task.concept_images)
    if contrast > 0:
        if not task.safe_twins or len(task.safe_twins) != len(task.concept_images):
            raise ValueError(f"{method}: the task needs one safe twin per concept image (ConceptTask.safe_twins; "
                             "in a task file, safe_twins_dir)")
        twin_mean, twin_std = _image_latents(pipe, task.safe_twins)
    checkpoints = set(curve_points(steps))
    curve, losses = [], []
    init = word_init_vectors(pipe, init_words, num_tokens).to(pipe.text_encoder.device)
    with frozen(pipe.text_encoder, family.denoiser), \
            Placeholders(pipe, num_tokens, init=init, prefix="concept") as token:
        opt = torch.optim.AdamW([token.vectors], lr=lr, weight_decay=0.0)
        prompts = [p.format(token.text) for p in task.concept_image_prompts[: cfg.num_prompts]]
        for step in range(1, steps + 1):
            idx, latents, noise, t = _draw(pipe, family, mean, std, batch_size, gen)
            batch_prompts = [task.concept_image_prompts[i].format(token.text) for i in idx.tolist()]
            cond = Conditioning(encode_ids(pipe, tokenize(pipe, batch_prompts)))
            if contrast > 0:
                twins = _latent_batch(pipe, twin_mean, twin_std, idx, gen)
                mse = _mse_per_sample(pipe, family, torch.cat([latents, twins]), Conditioning.cat([cond, cond]),
                                      torch.cat([noise, noise]), torch.cat([t, t]))
                loss = inversion_contrast_loss(mse[:batch_size], mse[batch_size:], contrast)
            else:
                loss = _mse_per_sample(pipe, family, latents, cond, noise, t).mean()
            _descend(opt, loss, losses)
            if step in checkpoints and step < steps:
                with torch.no_grad():
                    curve.append(curve_entry(step, _render(pipe, cfg, prompts, detector, method, {})))
        result = _render(pipe, cfg, prompts, detector, method,
                         {**extra, "steps": steps, "num_tokens": num_tokens, "lr": lr, "batch_size": batch_size,
                          "initial_loss": float(np.mean(losses[:20])), "final_loss": float(np.mean(losses[-20:])),
                          "init_words": init_words})
        vectors = token.vectors.detach().float().cpu().clone()
    result.extra["curve"] = curve + [curve_entry(steps, result)]
    # the prompts name the portable token: load the embedding under TEXTUAL_INVERSION_TOKEN to reuse them
    result.prompts = [p.replace(token.text, TEXTUAL_INVERSION_TOKEN) for p in result.prompts]
    result.tensors["learned_embeds"] = {TEXTUAL_INVERSION_TOKEN: vectors}
    return result


@register_attack("concept-inversion")
def concept_inversion(pipe, detector, task, cfg: AttackConfig, lr: float = 5e-3, batch_size: int = 4,
                      init_word: str = "mark") -> AttackResult:
    """Paper: one token, ~5000 steps, lr 5e-3, ~25 images. Here ``budget`` steps (default 1000)
    and ``num_tokens`` tokens (default 1), initialised from a neutral word ('mark')."""
    num_tokens = cfg.num_tokens or 1
    return _token_inversion(pipe, detector, task, cfg, "concept-inversion", num_tokens, [init_word], lr,
                            batch_size, contrast=0.0, extra={})


@register_attack("adaptive-inversion")
def adaptive_inversion(pipe, detector, task, cfg: AttackConfig, lr: float = 5e-3, batch_size: int = 4,
                       contrast: float = 100.0) -> AttackResult:
    """An inversion that knows DUO's defence, so a DUO model is not credited for beating a
    generic attack only.

    Why adaptive: DUO trains the model to prefer each image's *safe twin* over the unsafe image
    (lower denoising error on the twin, relative to the base model). A generic inversion only
    lowers the error on concept images, and an unlearned model can satisfy it with embeddings
    that draw the twin, which is as close to the concept image as anything can be once the
    concept is gone. This attack optimises the *reverse* of DUO's preference: besides the
    inversion loss it pays ``softplus(κ·(mse(unsafe) − mse(twin)))/κ`` on the same noise and
    timestep, so only conditionings under which the model prefers the unsafe image over its
    twin (exactly what DUO removed) score well; the term vanishes once that preference is back,
    so it never rewards simply wrecking the twin. It also uses more capacity than the paper's
    attack (``num_tokens``, default 4) and starts from what the attacker knows names the concept
    (the task's concept words), not from a neutral word. Twins: ShapeWorld renders each scene
    without its mark; for a real model, the task file's ``safe_twins_dir`` (e.g. the SDEdit
    twins `duo pairs` makes)."""
    from duo_unlearn.attacks.methods import concept_words

    num_tokens = cfg.num_tokens or 4
    words = sorted(concept_words(task)) or ["mark"]
    return _token_inversion(pipe, detector, task, cfg, "adaptive-inversion", num_tokens, words, lr, batch_size,
                            contrast=contrast, extra={"contrast": contrast})


@register_attack("embedding-probe")
def embedding_probe(pipe, detector, task, cfg: AttackConfig, lr: float = 1e-2, batch_size: int = 4) -> AttackResult:
    """The conditioning-space probe: one free sequence of text hidden states (what the denoiser
    cross-attends to), initialised from the empty prompt's and optimised to lower the model's
    denoising error on the concept images. Any prompt, learned token or text-encoder trick ends
    up as such a sequence, so none can do better than this on the same loss: a model that
    withstands it has lost the concept on the conditioning side. A diagnostic (no prompt reaches
    it), reported beside the attacks and never a target. Exported as ``prompt_embeds.safetensors``
    for ``pipe(prompt_embeds=...)``. ``budget`` steps (default 1000)."""
    from duo_unlearn.attacks.methods import _image_latents, _render, effective_budget

    steps = effective_budget(cfg, "embedding-probe")
    family = family_for(pipe)
    gen = torch.Generator().manual_seed(cfg.seed)
    mean, std = _image_latents(pipe, task.concept_images)
    null = family.encode_prompts([""])
    embeds = torch.nn.Parameter(null.hidden_states.detach().float().clone())

    def render(step_budget: int) -> AttackResult:
        return _render(pipe, cfg, ["<prompt_embeds>"] * cfg.num_prompts, detector, "embedding-probe", {},
                       prompt_embeds=embeds.detach().to(null.hidden_states.dtype))

    checkpoints, curve, losses = set(curve_points(steps)), [], []
    opt = torch.optim.Adam([embeds], lr=lr)
    with frozen(family.denoiser):
        for step in range(1, steps + 1):
            _, latents, noise, t = _draw(pipe, family, mean, std, batch_size, gen)
            cond = Conditioning(embeds.expand(batch_size, -1, -1), null.select([0] * batch_size).extra)
            _descend(opt, _mse_per_sample(pipe, family, latents, cond, noise, t).mean(), losses)
            if step in checkpoints and step < steps:
                curve.append(curve_entry(step, render(step)))
    result = render(steps)
    result.extra = {"steps": steps, "lr": lr, "batch_size": batch_size, "initial_loss": float(np.mean(losses[:20])),
                    "final_loss": float(np.mean(losses[-20:])),
                    "diagnostic": True, "curve": curve + [curve_entry(steps, result)]}
    result.tensors["prompt_embeds"] = {"prompt_embeds": embeds.detach().float().cpu()[0]}
    return result
