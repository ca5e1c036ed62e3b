"""The unlearning trainer: one loop for DUO and the ESD baseline, each supplying its loss.

    duo train --config configs/shapeworld_duo.yaml

Setup (accelerate, model family, LoRA, cached latents and prompt embeddings) -> train
(with checkpoints that resume exactly, validation grids, metrics) -> export
(``pytorch_lora_weights.safetensors``, resolved config, model card, optional merged pipeline).

Why it is fast: VAE latents of the pairs are encoded once (mean and std kept, a new latent
is sampled every step), prompt embeddings are computed once, the policy forward for
(unsafe, safe, pure noise) is one batched call and the reference is one no-grad call of
the same network with its adapters switched off (no second copy in memory).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from duo_unlearn.config import DUOConfig
from duo_unlearn.configs import config_to_yaml
from duo_unlearn.families import Conditioning, encode_latents, family_for, scale_latents
from duo_unlearn.hub import model_card, push_to_hub
from duo_unlearn.io import atomic_dir, atomic_save_safetensors, atomic_write_json, atomic_write_text
from duo_unlearn.lora import ADAPTER_STATE_NAME, adapters_disabled, add_lora, load_adapter_state_dict, save_lora
from duo_unlearn.losses import (
    duo_loss_terms,
    esd_loss,
    inversion_contrast_loss,
    output_preservation_loss,
    per_sample_mse,
    twin_regression_loss,
)

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


def saved_inversion_pool(tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The pooled inversions a checkpoint's trainer state holds, oldest first ([] if none): one
    key each, ``inversion_pool.<i>`` (recipes may differ in token count), or the one stacked
    tensor checkpoints had before the recipes could alternate."""
    if "inversion_pool" in tensors:
        return list(tensors["inversion_pool"].unbind(0))
    count = sum(key.startswith("inversion_pool.") for key in tensors)
    return [tensors[f"inversion_pool.{i}"] for i in range(count)]


class UnlearningTrainer:
    """Owns the training loop. ``pipe`` and ``dataset`` may be passed in (tests, notebooks);
    otherwise they are loaded from ``config.pretrained_model`` and ``config.pairs_dir``."""

    def __init__(self, config: DUOConfig, pipe=None, dataset=None) -> None:
        from accelerate import Accelerator

        self.config = config
        self.output_dir = Path(config.output_dir)
        _reset_accelerate_state()
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,  # None: the launcher's (accelerate launch --mixed_precision)
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            log_with=None if config.report_to == "none" else config.report_to,
            project_dir=str(self.output_dir),
        )
        self.resume_folder = self._check_resume() if config.resume_from_checkpoint else None
        if pipe is None:
            from duo_unlearn.pipelines import load_pipeline

            pipe = load_pipeline(config.pretrained_model)
        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        self.family = family_for(pipe)
        self.dataset = dataset
        self.global_step = 0
        self._setup()

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg, acc = self.config, self.accelerator
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
        for name, component in self.pipe.components.items():
            if isinstance(component, torch.nn.Module):
                component.requires_grad_(False)
                component.to(acc.device)
                if weight_dtype != torch.float32 and name != "vae":
                    component.to(dtype=weight_dtype)
        self.denoiser = self.family.denoiser
        if cfg.gradient_checkpointing:
            self.denoiser.enable_gradient_checkpointing()

        if cfg.method == "duo" and cfg.retain_weight > 0:
            self._cache_retain()  # drawn by the base model, before any adapter exists
        if cfg.method == "esd":
            targets = self._esd_target_modules()
        else:
            targets = cfg.lora_target_modules
        self.lora_params = add_lora(self.denoiser, cfg.lora_rank, cfg.lora_alpha, targets, seed=cfg.seed)
        self.null_cond = self.family.encode_prompts([""]).to(acc.device)
        if cfg.method == "duo":
            self._cache_pairs()
        self.adversarial_embeds = self.shared_embeds = self.inversion_pool = None
        if cfg.method == "duo" and cfg.adversarial_conditioning:
            rows = len(self.dataset) if cfg.adversary_per_pair else 1
            self.token_slots = self._token_slots(cfg.adversary_tokens) if cfg.adversary_space == "tokens" else None
            start = self._adversary_start(rows, from_prompts=cfg.adversary_init == "unsafe_prompt")
            self.adversarial_embeds = torch.nn.Parameter(start.to(acc.device).clone())
            self.adversarial_optimizer = torch.optim.Adam([self.adversarial_embeds], lr=cfg.adversarial_lr)
            if cfg.shared_adversary:
                self.shared_embeds = torch.nn.Parameter(self._adversary_start(1, from_prompts=False).to(acc.device))
                self.shared_optimizer = torch.optim.Adam([self.shared_embeds], lr=cfg.adversarial_lr)
            if cfg.inversion_pool_every:
                counts = {cfg.inversion_pool_recipe(k).tokens for k in (0, 1)}  # by token count: one per recipe
                self.pool_slots = {k: self._token_slots(k, contexts=self.dataset.safe_prompts,
                                                        option="inversion_pool_every") for k in sorted(counts)}
                self.inversion_pool: list[torch.Tensor] = []
        else:
            self.concept_cond = self.family.encode_prompts([cfg.esd_concept_prompt]).to(acc.device)

        from diffusers.optimization import get_scheduler

        self.optimizer = torch.optim.AdamW(self.lora_params, lr=cfg.resolved_learning_rate,
                                           weight_decay=cfg.adam_weight_decay)
        # not passed to accelerate.prepare: its scheduler wrapper steps num_processes times per
        # call, which would run the warm-up N times too fast on N processes; step() calls it
        # once per optimiser step, so lr_warmup_steps means optimiser steps whatever the launch
        self.lr_scheduler = get_scheduler(cfg.lr_scheduler, self.optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                                          num_training_steps=cfg.max_train_steps)
        self.model, self.optimizer = acc.prepare(self.denoiser, self.optimizer)
        # data order, noise and timesteps: every process draws the *global* batch from this one
        # generator (same seed everywhere) and keeps its own rows, so N processes x batch b see
        # exactly the samples of 1 process x batch N*b. Anything that still reads torch's global
        # RNG (dropout in a real denoiser) is seeded per process, as diffusers' scripts do.
        self.generator = torch.Generator().manual_seed(cfg.seed)
        n = cfg.train_batch_size
        self.rows = slice(acc.process_index * n, (acc.process_index + 1) * n)
        from accelerate.utils import set_seed

        set_seed(cfg.seed, device_specific=True)

    def _esd_target_modules(self) -> list[str]:
        """ESD-x: cross-attention projections; ESD-u: every attention projection but those."""
        cross = self.config.esd_variant == "x"
        names = []
        for name, module in self.denoiser.named_modules():
            if isinstance(module, torch.nn.Linear) and re.search(r"attn\d?\.(to_q|to_k|to_v|to_out\.0)$", name):
                is_cross = ".attn2." in f".{name}"
                if is_cross == cross:
                    names.append(name)
        if not names:
            raise ValueError(f"ESD-{self.config.esd_variant}: no matching attention projections in the denoiser")
        return names

    def _cache_pairs(self) -> None:
        from duo_unlearn.pairs import PairDataset

        cfg, acc = self.config, self.accelerator
        if self.dataset is None:
            self.dataset = PairDataset.load(cfg.pairs_dir, cfg.resolution)
        vae = self.pipe.vae
        self.unsafe_mean, self.unsafe_std = encode_latents(vae, self.dataset.unsafe)
        self.safe_mean, self.safe_std = encode_latents(vae, self.dataset.safe)
        if cfg.use_prompts or cfg.negative_guidance_target == "unsafe_prompt":
            self.unsafe_cond = self.family.encode_prompts(self.dataset.unsafe_prompts).to(acc.device)
        if cfg.use_prompts:
            self.safe_cond = self.family.encode_prompts(self.dataset.safe_prompts).to(acc.device)

    def _cache_retain(self) -> None:
        """The base model's own images of ``retain_prompts`` (fixed seeds from ``seed``), as VAE
        posteriors like the pairs, with their prompts' conditioning; a grid of them for the user."""
        from duo_unlearn.io import to_signed_tensor
        from duo_unlearn.sampling import generate

        cfg, acc = self.config, self.accelerator
        k = cfg.retain_images_per_prompt
        prompts = [p for p in cfg.retain_prompts for _ in range(k)]
        seeds = [cfg.seed * 1_000_003 + 7919 + i for i in range(len(prompts))]
        size = {"height": cfg.resolution, "width": cfg.resolution} if cfg.resolution else {}
        images = generate(self.pipe, prompts, seeds, num_inference_steps=cfg.retain_num_inference_steps, **size)
        self.retain_mean, self.retain_std = encode_latents(self.pipe.vae, to_signed_tensor(images))
        self.retain_cond = self.family.encode_prompts(prompts).to(acc.device)
        if acc.is_main_process:
            from duo_unlearn.grids import save_grid

            save_grid(self.output_dir / "retain_images.png", images, k, row_labels=list(cfg.retain_prompts))

    # ------------------------------------------------------------------ one step
    @property
    def _global_batch(self) -> int:
        return self.config.train_batch_size * self.accelerator.num_processes

    def _randn(self, sample_shape) -> torch.Tensor:
        """Noise of this process's rows, drawn for the global batch (see ``_setup``)."""
        draw = torch.randn((self._global_batch, *sample_shape), generator=self.generator)
        return draw[self.rows].to(self.accelerator.device)

    def _sample_latents(self, mean: torch.Tensor, std: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        z = mean[index] + std[index] * self._randn(mean.shape[1:]).to(mean.device)
        return scale_latents(self.pipe.vae, z).to(self.accelerator.device)

    def _timesteps(self, low: int | None = None, high: int | None = None) -> torch.Tensor:
        """This process's rows of one timestep draw for the global batch, from ``timestep_range``
        unless [low, high) is given."""
        if low is None:
            low, high = self.config.timestep_range
        draw = torch.randint(low, high, (self._global_batch,), generator=self.generator)
        return draw[self.rows].to(self.accelerator.device)

    def _conds(self, index: torch.Tensor) -> tuple[Conditioning, Conditioning]:
        n = len(index)
        null = self.null_cond.select([0] * n)
        if not self.config.use_prompts:
            return null, null
        unsafe, safe = self.unsafe_cond.select(index.cpu()), self.safe_cond.select(index.cpu())
        if self.config.prompt_dropout > 0:  # a pair keeps or drops its prompts together
            drop = (torch.rand(self._global_batch, generator=self.generator)[self.rows]
                    < self.config.prompt_dropout).tolist()
            unsafe = Conditioning.cat([null.select([i]) if drop[i] else unsafe.select([i]) for i in range(n)])
            safe = Conditioning.cat([null.select([i]) if drop[i] else safe.select([i]) for i in range(n)])
        return unsafe, safe

    def _token_slots(self, k: int, contexts=("",), option: str = "adversary_space='tokens'"):
        """The token positions a token-space adversary fills (one text encoder only)."""
        from duo_unlearn.attacks.text import TokenSlots

        if self.family.name != "sd":
            hint = ": use adversary_space='conditioning'" if option.startswith("adversary_space") else ""
            raise ValueError(f"DUOConfig.{option} needs one text encoder (SD 1.x/2.x); "
                             f"{type(self.pipe).__name__} has more{hint}")
        return TokenSlots(self.pipe, k, contexts)

    def _adversary_start(self, rows: int, from_prompts: bool) -> torch.Tensor:
        """Where ``rows`` adversaries start: the empty prompt (the filler tokens), or each pair's unsafe prompt."""
        if self.token_slots is not None:
            return self._token_adversary_start(rows, from_prompts)
        if from_prompts:
            return self.family.encode_prompts(self.dataset.unsafe_prompts).hidden_states.detach().float()
        return self.null_cond.hidden_states[:1].detach().float().repeat(rows, 1, 1)

    def _token_adversary_start(self, rows: int, from_prompts: bool) -> torch.Tensor:
        """(rows, k, dim) input-token vectors: the filler's, or each pair's unsafe prompt's first tokens."""
        start = self.token_slots.filler_vectors().repeat(rows, 1, 1)
        if from_prompts:
            table = self.pipe.text_encoder.get_input_embeddings().weight
            for row, prompt in enumerate(self.dataset.unsafe_prompts):
                ids = self.pipe.tokenizer(prompt, add_special_tokens=False).input_ids or [self.token_slots.filler_id]
                start[row] = table[[ids[i % len(ids)] for i in range(self.config.adversary_tokens)]].detach().float()
        return start

    def _adversary_hidden_states(self, rows: torch.Tensor, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """The adversaries of ``rows`` (of ``embeds``, default the per-pair table) as text hidden
        states (through the text encoder for tokens)."""
        vectors = torch.index_select(self.adversarial_embeds if embeds is None else embeds, 0, rows)
        return vectors if self.token_slots is None else self.token_slots.encode(vectors)

    def _adversarial_conditioning(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
                                  index: torch.Tensor | None = None, shared: bool = False
                                  ) -> tuple[Conditioning, float]:
        """Move the persistent adversarial conditioning ``adversarial_steps`` Adam steps down the
        current model's denoising error on the unsafe images ``x0`` (noised to ``x_t``), and
        return it (detached) with the last error. With ``adversary_per_pair`` each pair has its own
        conditioning (rows ``index`` of the table), else one is shared; ``shared`` moves the
        ``shared_adversary`` instead. Each step is ``_descend_input``: gradients reach the
        conditioning only, and N processes x batch b move it as one process with batch N*b does."""
        cfg = self.config
        embeds, optimizer = ((self.shared_embeds, self.shared_optimizer) if shared
                             else (self.adversarial_embeds, self.adversarial_optimizer))
        dtype = next(self.model.parameters()).dtype
        n = len(x_t)
        extra = self.null_cond.select([0] * n).extra
        device = embeds.device
        per_pair = cfg.adversary_per_pair and not shared
        rows = index.to(device) if per_pair else torch.zeros(n, dtype=torch.long, device=device)
        error = 0.0
        for _ in range(cfg.adversarial_steps):
            # index_select, not [rows]: a batch may draw a pair twice, and the backward of [rows]
            # sums such rows with parallel atomic adds on a multi-threaded CPU (different bits from
            # run to run); index_select's sums them in order, as one thread always did
            cond = Conditioning(self._adversary_hidden_states(rows, embeds).to(dtype), extra)
            error = self._descend_input(embeds, optimizer, x_t, t, x0, noise, cond).mean().item()
        with torch.no_grad():
            final = self._adversary_hidden_states(rows, embeds)
        return Conditioning(final.detach().to(dtype), extra), error

    def _descend_input(self, params: torch.nn.Parameter, optimizer: torch.optim.Optimizer, x_t: torch.Tensor,
                       t: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, cond: Conditioning,
                       contrast: float = 0.0) -> torch.Tensor:
        """One ``optimizer`` step on ``params`` (an adversary's or an inversion's vectors, which
        ``cond`` was built from) down the current model's denoising error of ``x0`` noised to
        ``x_t``; returns this process's per-sample errors. Gradients reach ``params`` only, never
        the LoRA. The error is summed over this process's rows and divided by the global batch,
        and the gradients summed over processes: N processes x batch b move ``params`` as one
        process with batch N*b does. With ``contrast`` > 0 the rows are (unsafe, twin) halves on
        the same noise and timesteps, the objective is the adaptive inversion's
        (``inversion_contrast_loss``, weighted by this process's share of the global batch), and
        the unsafe half's errors are returned."""
        fam, acc = self.family, self.accelerator
        model = acc.unwrap_model(self.model)  # no DDP hooks: no parameter gradient is made here
        dtype = next(model.parameters()).dtype
        pred, target = fam.loss_space(fam.predict(model, x_t.to(dtype), t, cond).float(), x_t, x0, noise, t)
        per_sample = per_sample_mse(pred, target)
        if contrast > 0:
            n = len(per_sample) // 2
            objective = inversion_contrast_loss(per_sample[:n], per_sample[n:], contrast) * (n / self._global_batch)
            per_sample = per_sample[:n]
        else:
            objective = per_sample.sum() / self._global_batch
        (grad,) = torch.autograd.grad(objective, params)
        params.grad = acc.reduce(grad, "sum") if acc.num_processes > 1 else grad
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return per_sample.detach()

    def _refresh_inversion_pool(self) -> float:
        """Run one fresh inversion against the current model and add its tokens to the pool
        (dropping the oldest past ``inversion_pool_size``); returns its last error. Concept
        Inversion's recipe (or the adaptive inversion's; with ``inversion_pool_alternate``, every
        other inversion takes the second recipe) on the training pairs:
        ``inversion_pool_tokens`` vectors started at the input embeddings of
        ``inversion_pool_init_word``'s words, placed after each drawn pair's safe caption,
        ``inversion_pool_steps`` AdamW steps down the denoising error of the batch's unsafe images
        at any timestep (with ``inversion_pool_contrast``, the adaptive inversion's objective
        against each pair's safe image on the same noise and timestep), each step
        ``_descend_input`` as for the adversaries: each process takes its rows of the global batch
        and the gradients are summed over processes, so every process holds the same pool and N
        processes x batch b invert as 1 process x batch N*b."""
        from duo_unlearn.attacks.text import word_init_vectors

        cfg, fam = self.config, self.family
        dtype = next(self.model.parameters()).dtype
        n = cfg.train_batch_size
        recipe = cfg.inversion_pool_recipe(self.global_step // cfg.inversion_pool_every)
        init = word_init_vectors(self.pipe, recipe.init_word.split(), recipe.tokens)
        vectors = torch.nn.Parameter(init.float()[None].clone())
        optimizer = torch.optim.AdamW([vectors], lr=recipe.lr, weight_decay=0.0)
        extra = self.null_cond.select([0] * n).extra
        contrast, slots = recipe.contrast, self.pool_slots[recipe.tokens]
        errors = []
        for _ in range(recipe.steps):
            index = torch.randint(len(self.dataset), (self._global_batch,), generator=self.generator)[self.rows]
            x0 = self._sample_latents(self.unsafe_mean, self.unsafe_std, index)
            noise = self._randn(x0.shape[1:])
            t = self._timesteps(0, fam.num_train_timesteps)
            x_t = fam.add_noise(x0, noise, t)
            cond = Conditioning(slots.encode(vectors.expand(n, -1, -1), index).to(dtype), extra)
            if contrast:  # each pair's safe image on the same noise and timestep, under the same prompt
                x0_safe = self._sample_latents(self.safe_mean, self.safe_std, index)
                x_t = torch.cat([x_t, fam.add_noise(x0_safe, noise, t)])
                x0, noise, t = torch.cat([x0, x0_safe]), torch.cat([noise, noise]), torch.cat([t, t])
                cond = Conditioning.cat([cond, cond])
            errors.append(self._descend_input(vectors, optimizer, x_t, t, x0, noise, cond, contrast).mean().item())
        self.inversion_pool = (self.inversion_pool + [vectors.detach()[0].clone()])[-cfg.inversion_pool_size:]
        return sum(errors[-10:]) / len(errors[-10:])

    def _encode_pool_members(self, members: list[int], contexts: torch.Tensor) -> torch.Tensor:
        """Hidden states of each row's pooled inversion after its context (pair's safe caption).
        Members of one token count are encoded together, in one call when the pool has one."""
        hidden = None
        for k, slots in self.pool_slots.items():
            rows = [r for r, i in enumerate(members) if len(self.inversion_pool[i]) == k]
            if not rows:
                continue
            states = slots.encode(torch.stack([self.inversion_pool[members[r]] for r in rows]), contexts[rows])
            if len(rows) == len(members):
                return states
            hidden = states.new_zeros(len(members), *states.shape[1:]) if hidden is None else hidden
            hidden[rows] = states
        return hidden

    def duo_step_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """DUO's loss on one batch of pairs, and what to log.

        One batched policy call and one reference call over row groups: (unsafe, safe) under the
        empty or pair prompt, pure noise under the empty prompt (the regulariser) and, for robust
        DUO, (unsafe, safe) again under the adversarial conditioning (with the 'negative_guidance'
        objective, only the unsafe rows, and one more reference call on them: unconditional and, with
        ``negative_guidance_target`` 'unsafe_prompt', under each pair's unsafe prompt), and with
        ``shared_adversary`` (unsafe, safe) once more under the shared adversary, and with
        ``inversion_pool_every`` once more under a pooled inversion's token after each pair's safe
        caption. The loss is ``prompt_preference_weight·duo(prompt rows) + λ·preservation +
        adversarial_weight·duo(adversarial rows) [+ adversarial_weight·duo(shared adversary rows)]
        [+ inversion_pool_weight·duo(pool rows)] [+
        adversarial_twin_weight·Σ twin_regression(each adversary's unsafe rows)] [+ retain_weight·
        ‖ε_θ − ε_ref‖² on the noised retain images under their prompts, the last rows]``, the third
        term ``esd_loss`` under 'negative_guidance'. A group whose weight is 0 is not computed: with
        ``prompt_preference_weight`` 0 (robust DUO's recipe) the prompt rows, two of the robust
        step's five or six row groups, are left out, and so are their logs (``duo_loss``, ``diff``, ``mse/*``...);
        the random draws are the same either way."""
        cfg, fam = self.config, self.family
        n = cfg.train_batch_size
        index = torch.randint(len(self.dataset), (self._global_batch,), generator=self.generator)[self.rows]
        x0_unsafe = self._sample_latents(self.unsafe_mean, self.unsafe_std, index)
        x0_safe = self._sample_latents(self.safe_mean, self.safe_std, index)
        noise = self._randn(x0_unsafe.shape[1:])  # one noise sample shared by the pair
        t_unsafe = self._timesteps()
        t_safe = t_unsafe if cfg.pair_timestep == "shared" else self._timesteps()
        cond_unsafe, cond_safe = self._conds(index)
        xt_unsafe, xt_safe = fam.add_noise(x0_unsafe, noise, t_unsafe), fam.add_noise(x0_safe, noise, t_safe)
        inputs, timesteps, conds, group = [], [], [], {}

        def add(name: str, x: torch.Tensor, t: torch.Tensor, c: Conditioning) -> None:
            start = sum(len(v) for v in inputs)
            inputs.append(x)
            timesteps.append(t)
            conds.append(c)
            group[name] = slice(start, start + len(x))

        if cfg.prompt_preference_weight > 0:
            add("unsafe", xt_unsafe, t_unsafe, cond_unsafe)
            add("safe", xt_safe, t_safe, cond_safe)
        weight = cfg.resolved_preservation_weight
        if weight > 0:  # pure Gaussian noise at the last timestep, null prompt
            add("preservation", fam.pure_noise_input(self._randn(x0_unsafe.shape[1:])),
                torch.full((n,), fam.num_train_timesteps - 1, device=t_unsafe.device), self.null_cond.select([0] * n))
        logs: dict[str, float] = {}
        guided = cfg.adversarial_objective == "negative_guidance"
        if self.adversarial_embeds is not None:
            adversarial, logs["adversarial_mse"] = self._adversarial_conditioning(xt_unsafe, t_unsafe, x0_unsafe, noise,
                                                                                  index)
            add("adversary_unsafe", xt_unsafe, t_unsafe, adversarial)
            if not guided:
                add("adversary_safe", xt_safe, t_safe, adversarial)
        if self.shared_embeds is not None:  # (unsafe, safe) once more, under the shared adversary
            shared, logs["shared_adversary_mse"] = self._adversarial_conditioning(xt_unsafe, t_unsafe, x0_unsafe,
                                                                                  noise, shared=True)
            add("shared_unsafe", xt_unsafe, t_unsafe, shared)
            add("shared_safe", xt_safe, t_safe, shared)
        if self.inversion_pool:  # (unsafe, safe) once more, each pair's safe caption + a pooled inversion's token
            member = torch.randint(len(self.inversion_pool), (self._global_batch,), generator=self.generator)[self.rows]
            with torch.no_grad():
                pooled = Conditioning(self._encode_pool_members(member.tolist(), index.cpu()),
                                      self.null_cond.select([0] * n).extra)
            add("pool_unsafe", xt_unsafe, t_unsafe, pooled)
            add("pool_safe", xt_safe, t_safe, pooled)
        if cfg.retain_weight > 0:  # the base model's retain images, noised at any timestep, under their prompts
            pick = torch.randint(len(self.retain_mean), (self._global_batch,), generator=self.generator)[self.rows]
            x0_retain = self._sample_latents(self.retain_mean, self.retain_std, pick)
            t_retain = self._timesteps(0, fam.num_train_timesteps)
            add("retain", fam.add_noise(x0_retain, self._randn(x0_retain.shape[1:]), t_retain), t_retain,
                self.retain_cond.select(pick.cpu()))
        x_t, t, cond = torch.cat(inputs), torch.cat(timesteps), Conditioning.cat(conds)
        dtype = next(self.model.parameters()).dtype
        pred = fam.predict(self.model, x_t.to(dtype), t, cond).float()
        with torch.no_grad(), adapters_disabled(self.accelerator.unwrap_model(self.model)):
            ref = fam.predict(self.model, x_t.to(dtype), t, cond).float()

        def preference(u: str, s: str, beta: float):
            u, s = group[u], group[s]
            mp_u, target_u = fam.loss_space(pred[u], x_t[u], x0_unsafe, noise, t_unsafe)
            mp_s, target_s = fam.loss_space(pred[s], x_t[s], x0_safe, noise, t_safe)
            rp_u, _ = fam.loss_space(ref[u], x_t[u], x0_unsafe, noise, t_unsafe)
            rp_s, _ = fam.loss_space(ref[s], x_t[s], x0_safe, noise, t_safe)
            return duo_loss_terms(mp_u, rp_u, mp_s, rp_s, target_u, target_s, beta)

        reg = group.get("preservation")
        preservation = output_preservation_loss(pred[reg], ref[reg]) if reg else pred.new_zeros(())
        loss = weight * preservation
        if "unsafe" in group:
            terms = preference("unsafe", "safe", cfg.beta)
            loss = loss + cfg.prompt_preference_weight * terms.loss
            logs.update({
                "duo_loss": terms.loss.item(), "diff": terms.diff.mean().item(),
                "implicit_acc": terms.implicit_accuracy.item(),
                "mse/safe": terms.mse_safe.mean().item(), "mse/unsafe": terms.mse_unsafe.mean().item(),
                "ref_mse/safe": terms.ref_mse_safe.mean().item(),
                "ref_mse/unsafe": terms.ref_mse_unsafe.mean().item(),
            })
        if self.adversarial_embeds is not None:
            if guided:  # the reference's unconditional prediction on the same noised unsafe images
                adv = group["adversary_unsafe"]
                null = self.null_cond.select([0] * n)
                with torch.no_grad(), adapters_disabled(self.accelerator.unwrap_model(self.model)):
                    if cfg.negative_guidance_target == "unsafe_prompt":  # and under each pair's unsafe prompt
                        both = fam.predict(self.model, torch.cat([x_t[adv], x_t[adv]]).to(dtype),
                                           torch.cat([t[adv], t[adv]]),
                                           Conditioning.cat([null, self.unsafe_cond.select(index.cpu())])).float()
                        ref_null, ref_pull = both[:n], both[n:]
                    else:
                        ref_null = fam.predict(self.model, x_t[adv].to(dtype), t[adv], null).float()
                        ref_pull = ref[adv]
                adv_loss = esd_loss(pred[adv], ref_null, ref_pull, cfg.esd_eta)
                loss = loss + cfg.adversarial_weight * adv_loss
                logs["adversarial_guidance_loss"] = adv_loss.item()
            else:
                adv_terms = preference("adversary_unsafe", "adversary_safe", cfg.adversarial_beta or cfg.beta)
                loss = loss + cfg.adversarial_weight * adv_terms.loss
                logs.update({"adversarial_duo_loss": adv_terms.loss.item(),
                             "adversarial_implicit_acc": adv_terms.implicit_accuracy.item()})
            if self.shared_embeds is not None:
                shared_terms = preference("shared_unsafe", "shared_safe", cfg.adversarial_beta or cfg.beta)
                loss = loss + cfg.adversarial_weight * shared_terms.loss
                logs.update({"shared_adversary_duo_loss": shared_terms.loss.item(),
                             "shared_adversary_implicit_acc": shared_terms.implicit_accuracy.item()})
            if cfg.adversarial_twin_weight > 0:  # each adversary's unsafe rows, pulled onto the twins
                twin = sum(twin_regression_loss(fam.predicted_x0(pred[group[k]], x_t[group[k]], t_unsafe), x0_safe,
                                                fam.snr(t_unsafe))
                           for k in ("adversary_unsafe", "shared_unsafe") if k in group)
                loss = loss + cfg.adversarial_twin_weight * twin
                logs["adversarial_twin_loss"] = twin.item()
        if "pool_unsafe" in group:
            pool_terms = preference("pool_unsafe", "pool_safe", cfg.adversarial_beta or cfg.beta)
            loss = loss + cfg.resolved_inversion_pool_weight * pool_terms.loss
            logs.update({"inversion_pool_duo_loss": pool_terms.loss.item(),
                         "inversion_pool_implicit_acc": pool_terms.implicit_accuracy.item()})
        if "retain" in group:
            retain = output_preservation_loss(pred[group["retain"]], ref[group["retain"]])
            loss = loss + cfg.retain_weight * retain
            logs["retain"] = retain.item()
        logs.update({"loss": loss.item(), "preservation": preservation.item()})
        return loss, logs

    def esd_step_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """ESD: x_t from partial sampling of the frozen model under the concept prompt, then the
        model's concept-conditioned prediction is pulled to the negatively guided target."""
        cfg, fam = self.config, self.family
        n = cfg.train_batch_size
        t = self._timesteps()
        x_t = self._esd_partial_sample(t, n)
        concept, null = self.concept_cond.select([0] * n), self.null_cond.select([0] * n)
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad(), adapters_disabled(self.accelerator.unwrap_model(self.model)):
            ref = fam.predict(self.model, torch.cat([x_t, x_t]).to(dtype), torch.cat([t, t]),
                              Conditioning.cat([null, concept])).float()
        pred = fam.predict(self.model, x_t.to(dtype), t, concept).float()
        loss = esd_loss(pred, ref[:n], ref[n:], cfg.esd_eta)
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def _esd_partial_sample(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """Run the frozen model (guided by the concept prompt) from pure noise down to timestep t."""
        from diffusers import DDIMScheduler

        fam = self.family
        if not hasattr(fam, "noise_scheduler"):
            raise NotImplementedError("ESD is implemented for UNet pipelines (SD 1.x/2.x/XL)")
        sched = DDIMScheduler.from_config(fam.noise_scheduler.config)
        sched.set_timesteps(self.config.esd_sampling_steps)
        x = self._randn(self.latent_shape())
        concept, null = self.concept_cond.select([0] * n), self.null_cond.select([0] * n)
        model = self.accelerator.unwrap_model(self.model)
        with adapters_disabled(model):
            for step_t in sched.timesteps:
                active = (step_t >= t)
                if not active.any():
                    break
                tt = torch.full((n,), int(step_t), device=x.device)
                eps = fam.predict(self.model, torch.cat([x, x]), torch.cat([tt, tt]), Conditioning.cat([null, concept]))
                eps = eps[:n] + 3.0 * (eps[n:] - eps[:n])
                stepped = sched.step(eps, step_t, x).prev_sample
                x = torch.where(active.view(-1, 1, 1, 1), stepped, x)
        return x

    def latent_shape(self) -> tuple[int, ...]:
        """Latent shape (channels, h, w) of one training image."""
        from duo_unlearn.pipelines import native_resolution

        size = (self.config.resolution or native_resolution(self.pipe)) // self.pipe.vae_scale_factor
        return (self.pipe.vae.config.latent_channels, size, size)  # FLUX's transformer sees them packed

    def step(self) -> dict[str, float]:
        """One optimisation step (with gradient accumulation); returns its logged values.
        The last micro-batch syncs gradients and steps the optimiser; the schedule then moves
        once, unless an fp16 overflow made the scaler skip the step (accelerate's convention)."""
        acc = self.accelerator
        logs: dict[str, float] = {}
        inversion_mse = None
        if self.inversion_pool is not None and self.global_step % self.config.inversion_pool_every == 0:
            inversion_mse = self._refresh_inversion_pool()
        for _ in range(self.config.gradient_accumulation_steps):
            with acc.accumulate(self.model):
                loss, logs = self.duo_step_loss() if self.config.method == "duo" else self.esd_step_loss()
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss ({loss.item()}) at step {self.global_step + 1}; lower the learning rate "
                        f"or beta, or check the pairs in {self.config.pairs_dir}. Nothing was written for this step.")
                acc.backward(loss)
                if acc.sync_gradients:
                    logs["grad_norm"] = float(acc.clip_grad_norm_(self.lora_params, self.config.max_grad_norm))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        if not acc.optimizer_step_was_skipped:
            self.lr_scheduler.step()
        self.global_step += 1
        if inversion_mse is not None:
            logs["inversion_pool_mse"] = inversion_mse
        if acc.num_processes > 1:  # every rank has an equal share of the batch: the mean is the global batch's
            keys = sorted(logs)
            means = acc.reduce(torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=acc.device), "mean")
            logs = dict(zip(keys, means.tolist()))
        logs["lr"] = self.lr_scheduler.get_last_lr()[0]
        return logs

    # ------------------------------------------------------------------ the loop
    def train(self) -> Path:
        cfg, acc = self.config, self.accelerator
        if acc.is_main_process:  # the precision accelerate resolved (config, else launcher, else 'no')
            self.output_dir.mkdir(parents=True, exist_ok=True)
            resolved = dataclasses.replace(cfg, mixed_precision=acc.mixed_precision)
            atomic_write_text(self.output_dir / "duo_config.yaml", config_to_yaml(resolved))
        if cfg.report_to != "none":
            acc.init_trackers(cfg.tracker_project_name,
                              config={k: str(v) for k, v in dataclasses.asdict(cfg).items()})
        if self.resume_folder is not None:
            self.load_checkpoint(self.resume_folder)
        metrics_path = self.output_dir / "metrics.jsonl"
        if self.global_step == 0 and acc.is_main_process:
            metrics_path.unlink(missing_ok=True)
        bar = tqdm(range(self.global_step, cfg.max_train_steps), desc=f"{cfg.method} train",
                   disable=not acc.is_local_main_process, initial=self.global_step, total=cfg.max_train_steps)
        started = time.time()
        for _ in range(self.global_step, cfg.max_train_steps):
            logs = self.step()
            bar.update(1)
            shown = ("loss", "implicit_acc", "adversarial_implicit_acc", "preservation")
            bar.set_postfix({k: f"{logs[k]:.4g}" for k in shown if k in logs})
            if acc.is_main_process:
                with metrics_path.open("a") as f:
                    f.write(json.dumps({"step": self.global_step, **logs}) + "\n")
            acc.log(logs, step=self.global_step)
            if cfg.checkpointing_steps and self.global_step % cfg.checkpointing_steps == 0 \
                    and self.global_step < cfg.max_train_steps:
                self.save_checkpoint()
            if cfg.validation_steps and cfg.validation_prompts and self.global_step % cfg.validation_steps == 0:
                self.validate()
        bar.close()
        return self.export(train_seconds=time.time() - started)

    # ------------------------------------------------------------------ outputs
    def validate(self) -> Path | None:
        """A grid of the validation prompts with fixed seeds; rows are prompts."""
        from duo_unlearn.grids import save_grid
        from duo_unlearn.sampling import generate

        if not self.accelerator.is_main_process:
            return None
        cfg = self.config
        k = cfg.num_validation_images
        prompts = [p for p in cfg.validation_prompts for _ in range(k)]
        seeds = [cfg.seed * 1000 + i for _ in cfg.validation_prompts for i in range(k)]
        was_training = self.denoiser.training
        self.denoiser.eval()
        images = generate(self.pipe, prompts, seeds)
        self.denoiser.train(was_training)
        path = save_grid(self.output_dir / "validation" / f"step-{self.global_step:06d}.png", images, k,
                         row_labels=list(cfg.validation_prompts))
        self._log_grid(path)
        return path

    def _log_grid(self, path: Path) -> None:
        """The labelled validation grid, to every tracker that takes images (TensorBoard, W&B, ...)."""
        import numpy as np
        from PIL import Image

        grid = np.asarray(Image.open(path).convert("RGB"))
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":  # SummaryWriter.add_images wants the layout named
                tracker.log_images({"validation": grid[None]}, step=self.global_step, dataformats="NHWC")
            elif hasattr(tracker, "log_images"):
                tracker.log_images({"validation": [grid]}, step=self.global_step)

    def export(self, train_seconds: float = 0.0) -> Path:
        cfg, acc = self.config, self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            save_lora(self.pipe, model, self.family.lora_component, self.output_dir)
            atomic_write_json(self.output_dir / "train_summary.json", {
                "steps": self.global_step, "train_seconds": round(train_seconds, 1),
                "learning_rate": cfg.resolved_learning_rate,
                "preservation_weight": cfg.resolved_preservation_weight if cfg.method == "duo" else None,
                "num_pairs": len(self.dataset) if self.dataset is not None else None,
            })
            atomic_write_text(self.output_dir / "README.md", model_card(cfg, self.output_dir))
            if cfg.merge:
                from duo_unlearn.lora import merge_and_save
                from duo_unlearn.pipelines import load_pipeline

                merge_and_save(lambda: load_pipeline(cfg.pretrained_model), self.output_dir, self.output_dir / "merged")
            if cfg.push_to_hub:
                logger.info("pushed %s to the hub as %s", self.output_dir, push_to_hub(cfg, self.output_dir))
        # every process tears the group down together, after the main one has written: a rank
        # that destroyed its gloo group while rank 0 was still saving once never exited
        # (pytorch#75097: barrier, then destroy_process_group on every rank)
        acc.wait_for_everyone()
        acc.end_training()
        return self.output_dir

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path | None:
        """LoRA (diffusers- and PEFT-keyed), optimizer, scheduler and fp16 scaler state, and every
        process's random state (``rng.<kind>.<rank>``, gathered to the main process, which writes
        once), all without pickle: tensors in safetensors, the rest in JSON."""
        from accelerate.utils import gather_object

        acc = self.accelerator
        every_rank = gather_object([_rng_state(self.generator)])  # a collective: every process calls it
        if not acc.is_main_process:
            acc.wait_for_everyone()
            return None
        folder = self.output_dir / f"{CHECKPOINT_PREFIX}{self.global_step}"
        opt_state = self.optimizer.state_dict()
        tensors = {f"rng.{kind}.{rank}": state for rank, states in enumerate(every_rank) for kind, state in
                   states.items()}
        for pid, state in opt_state["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        for prefix, embeds, optimizer in self._adversaries():  # persistent adversaries resume where they were
            tensors[f"{prefix}.embeds"] = embeds.detach()
            for key, value in optimizer.state_dict()["state"].get(0, {}).items():
                tensors[f"{prefix}.optimizer.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        for i, vectors in enumerate(self.inversion_pool or []):  # the pooled inversions' tokens, oldest first
            tensors[f"inversion_pool.{i}"] = vectors.detach()  # one key each: recipes may differ in token count
        with atomic_dir(folder) as tmp:
            save_lora(self.pipe, acc.unwrap_model(self.model), self.family.lora_component, tmp)
            atomic_save_safetensors(tensors, tmp / "trainer_state.safetensors")
            atomic_write_json(tmp / "trainer_state.json", {
                "global_step": self.global_step,
                "num_processes": acc.num_processes,
                "mixed_precision": acc.mixed_precision,
                "param_groups": opt_state["param_groups"],
                "lr_scheduler": {k: v for k, v in self.lr_scheduler.state_dict().items() if k != "lr_lambdas"},
                "grad_scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
            })
        self._prune_checkpoints()
        acc.wait_for_everyone()
        return folder

    def _adversaries(self) -> list[tuple[str, torch.nn.Parameter, torch.optim.Optimizer]]:
        """Robust DUO's persistent adversaries with their optimisers, under their checkpoint key prefix."""
        found = []
        if self.adversarial_embeds is not None:
            found.append(("adversary", self.adversarial_embeds, self.adversarial_optimizer))
        if self.shared_embeds is not None:
            found.append(("shared_adversary", self.shared_embeds, self.shared_optimizer))
        return found

    def _checkpoints(self) -> list[Path]:
        found = [p for p in self.output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.name[len(CHECKPOINT_PREFIX):].isdigit()]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))

    def _prune_checkpoints(self) -> None:
        limit = self.config.checkpoints_total_limit
        if limit:
            for old in self._checkpoints()[:-limit]:
                shutil.rmtree(old)

    def _resolve_checkpoint(self, spec: str) -> Path:
        if spec == "latest":
            found = self._checkpoints()
            if not found:
                raise FileNotFoundError(f"resume_from_checkpoint='latest' but {self.output_dir} has no checkpoints")
            return found[-1]
        path = Path(spec)
        if not (path / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{path} is not a checkpoint folder (no trainer_state.json)")
        return path

    def _check_resume(self) -> Path:
        """The checkpoint to resume, checked before any model is loaded: each process restores
        its own random state, so the process count must be the one that saved it."""
        acc = self.accelerator
        folder = self._resolve_checkpoint(self.config.resume_from_checkpoint)
        state = json.loads((folder / "trainer_state.json").read_text())
        saved = state.get("num_processes", 1)
        if saved != acc.num_processes:
            raise ValueError(f"{folder} was saved by {saved} process(es) but this run has {acc.num_processes}; "
                             f"resume with `accelerate launch --num_processes {saved}`")
        if state.get("mixed_precision", acc.mixed_precision) != acc.mixed_precision:
            logger.warning("%s was trained with mixed_precision=%s, resuming with %s: not an exact resume",
                           folder, state["mixed_precision"], acc.mixed_precision)
        return folder

    def load_checkpoint(self, folder: Path) -> None:
        from safetensors.torch import load_file

        acc = self.accelerator
        state = json.loads((folder / "trainer_state.json").read_text())
        tensors = load_file(folder / "trainer_state.safetensors")
        load_adapter_state_dict(acc.unwrap_model(self.model), load_file(folder / ADAPTER_STATE_NAME))
        opt_state: dict = {"state": {}, "param_groups": state["param_groups"]}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, pid, name = key.split(".", 2)
                opt_state["state"].setdefault(int(pid), {})[name] = value
        self.optimizer.load_state_dict(opt_state)
        for prefix, embeds, optimizer in self._adversaries():
            if f"{prefix}.embeds" not in tensors:
                option = "shared_adversary" if prefix == "shared_adversary" else "adversarial_conditioning"
                raise ValueError(f"{folder} was saved without {option}; resume with the same setting")
            with torch.no_grad():
                embeds.copy_(tensors[f"{prefix}.embeds"])
            adv_state = optimizer.state_dict()
            adv_state["state"] = {0: {key[len(f"{prefix}.optimizer."):]: value for key, value in tensors.items()
                                      if key.startswith(f"{prefix}.optimizer.")}}
            optimizer.load_state_dict(adv_state)
        if self.inversion_pool is not None:
            pool = saved_inversion_pool(tensors)
            if not pool:  # the pool is filled at the first step, so a checkpoint of a pool run holds one
                raise ValueError(f"{folder} was saved without inversion_pool_every; resume with the same setting")
            self.inversion_pool = [v.to(self.pipe.text_encoder.device) for v in pool]
        sched_state = self.lr_scheduler.state_dict()
        sched_state.update(state["lr_scheduler"])
        self.lr_scheduler.load_state_dict(sched_state)
        if acc.scaler is not None and state.get("grad_scaler"):
            acc.scaler.load_state_dict(state["grad_scaler"])
        rank = acc.process_index
        _set_rng_state(self.generator, {kind: tensors[key] for key in tensors
                                        if key.startswith("rng.") and key.endswith(f".{rank}")
                                        for kind in [key.split(".")[1]]})
        self.global_step = int(state["global_step"])
        logger.info("resumed from %s at step %d", folder, self.global_step)


def _reset_accelerate_state() -> None:
    """accelerate keeps the precision in process-wide singletons and refuses a second Accelerator
    with another one (a notebook training fp32, then bf16). Each trainer starts them afresh;
    the process group (PartialState) is kept, as a launched run has exactly one. A previous
    trainer's accelerator then sees the new state: use one trainer at a time."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def _rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """This process's random state: the trainer's generator, torch's global CPU RNG and, on a
    GPU, the current device's."""
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(generator: torch.Generator, state: dict[str, torch.Tensor]) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def train(config: DUOConfig, pipe=None, dataset=None) -> Path:
    """Train (or, for UCE, solve) and export; returns the output folder."""
    from duo_unlearn.preflight import check_train

    check_train(config, load_model=pipe is None, load_pairs=dataset is None)  # before any model loads
    if config.method == "uce":
        return _train_uce(config, pipe)
    return UnlearningTrainer(config, pipe=pipe, dataset=dataset).train()


def _train_uce(config: DUOConfig, pipe=None) -> Path:
    from duo_unlearn.pipelines import load_pipeline
    from duo_unlearn.uce import UCEConfig, apply_uce, save_uce_lora

    pipe = pipe if pipe is not None else load_pipeline(config.pretrained_model)
    uce = UCEConfig(config.uce_erase_prompts, config.uce_target_prompts, config.uce_preserve_prompts,
                    lam=config.uce_lambda)
    out = Path(config.output_dir)
    save_uce_lora(pipe, apply_uce(pipe, uce), out)
    atomic_write_text(out / "duo_config.yaml", config_to_yaml(config))
    atomic_write_text(out / "README.md", model_card(config, out))
    if config.merge:
        from duo_unlearn.lora import merge_and_save

        merge_and_save(lambda: load_pipeline(config.pretrained_model), out, out / "merged")
    if config.push_to_hub:
        logger.info("pushed %s to the hub as %s", out, push_to_hub(config, out))
    return out
