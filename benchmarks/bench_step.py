"""Step time and peak memory of a DUO step, against a plain LoRA step and a naive DUO step.

    make bench     (python benchmarks/bench_step.py --output bench-output/step_time.md)

All variants run on the same ShapeWorld model, LoRA and batch of pairs, each in its own
process (so peak RSS is its own), alternating, and the table reports ratios measured in
this one run: machines are shared and noisy, absolute seconds are not comparable.

- plain LoRA: the ordinary diffusion loss on the same (unsafe, safe, noise) inputs: one
  forward and one backward. DUO adds one no-grad reference forward, so its floor is 4/3.
- DUO cached: what the trainer does (latents and prompt embeddings cached, batched calls).
- DUO naive: VAE-encode the images and text-encode the prompts every step, and call the
  policy and the reference separately for unsafe, safe and noise inputs.
- DUO robust: the demo's robust DUO (per-pair adversarial conditionings, 4 adversary steps,
  the preference under the adversary only): 4 more forward/backward passes on the unsafe half.
- DUO robust, prompt rows: the same with ``prompt_preference_weight`` 1 (the empty-prompt
  preference kept beside the adversary's): two more row groups in the policy and reference calls,
  which the trainer leaves out when their weight is 0.
- DUO robust, token adversary: the same with ``adversary_space: tokens`` (4 learned input tokens
  per pair): each adversary step also runs the text encoder forward and backward.
- DUO robust, shared adversary: robust DUO with ``shared_adversary``: 4 more adversary steps
  and the preference on 2 more row groups under the shared conditioning.
- DUO robust, retain term: robust DUO with ``retain_weight`` (16 retain prompts; the demo's
  recipe has this cost per step): one more row group, the base model's retain images under their
  prompts, in the policy and reference calls (the retain images are drawn once at setup, outside the timed steps).
- DUO robust, pool rows: robust DUO with ``inversion_pool_every`` (its one inversion runs in the
  warm-up): the preference on 2 more row groups under a pooled token after each pair's caption.
- inversion step: one step of the pool's fresh inversion (text encoder and denoiser forward and
  backward on one batch of unsafe images). A pool of s-step inversions every k steps costs, per
  training step, the pool rows plus s/k inversion steps.
- adaptive inversion step: the same with ``inversion_pool_contrast`` (the adaptive inversion's
  recipe: 4 tokens, the twin contrast), which denoises each pair's safe image too.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

VARIANTS = ("plain_lora", "duo_cached", "duo_naive", "duo_robust", "duo_robust_prompt_rows", "duo_robust_tokens",
            "duo_robust_shared", "duo_robust_retain", "duo_robust_pool_rows", "inversion_step",
            "adaptive_inversion_step")
RETAIN_PROMPTS = tuple(f"a {c} {s} with a plus over it" for c in ("red", "blue", "green", "yellow")
                       for s in ("square", "circle")) + tuple(f"a {c} triangle" for c in ("red", "blue", "green",
                                                                                            "yellow", "purple",
                                                                                            "orange", "white", "pink"))


def demo_robust_settings() -> dict:
    """The DUOConfig fields of the demo's robust DUO, read from DemoConfig's defaults."""
    from duo_unlearn.demo import DemoConfig

    demo = DemoConfig()
    return dict(adversarial_conditioning=True, adversary_per_pair=demo.adversary_per_pair,
                adversarial_steps=demo.adversarial_steps, adversarial_weight=demo.adversarial_weight,
                prompt_preference_weight=demo.prompt_preference_weight)


def _randn(trainer, shape) -> torch.Tensor:
    """Noise of any shape from the trainer's generator (its own helpers draw the global batch's rows)."""
    return torch.randn(shape, generator=trainer.generator).to(trainer.accelerator.device)


def _timesteps(trainer, n: int) -> torch.Tensor:
    low, high = trainer.config.timestep_range
    return torch.randint(low, high, (n,), generator=trainer.generator).to(trainer.accelerator.device)


def plain_lora_step(trainer) -> None:
    """One optimiser step of the ordinary diffusion loss (in the family's loss space) on the
    inputs a DUO step sees: unsafe, safe and zero latents, batched, with the trainer's
    optimiser, gradient clipping and scheduler. One forward and one backward; DUO adds one
    no-grad reference forward, so its floor is 4/3. bench_gpu.py times it too."""
    import torch.nn.functional as F

    fam, acc, n = trainer.family, trainer.accelerator, trainer.config.train_batch_size
    index = torch.randint(len(trainer.dataset), (n,), generator=trainer.generator)
    unsafe = trainer._sample_latents(trainer.unsafe_mean, trainer.unsafe_std, index)
    safe = trainer._sample_latents(trainer.safe_mean, trainer.safe_std, index)
    x0 = torch.cat([unsafe, safe, torch.zeros_like(unsafe)])
    noise = _randn(trainer, x0.shape)
    t = _timesteps(trainer, 3 * n)
    x_t = fam.add_noise(x0, noise, t)
    dtype = next(trainer.model.parameters()).dtype
    pred = fam.predict(trainer.model, x_t.to(dtype), t, trainer.null_cond.select([0] * (3 * n))).float()
    loss = F.mse_loss(*fam.loss_space(pred, x_t, x0, noise, t))
    acc.backward(loss)
    acc.clip_grad_norm_(trainer.lora_params, trainer.config.max_grad_norm)
    trainer.optimizer.step()
    trainer.lr_scheduler.step()
    trainer.optimizer.zero_grad(set_to_none=True)


def _run(variant: str, batch: int, steps: int, warmup: int, queue) -> None:
    from duo_unlearn.config import DUOConfig
    from duo_unlearn.families import encode_latents, scale_latents
    from duo_unlearn.lora import adapters_disabled
    from duo_unlearn.losses import duo_loss, output_preservation_loss
    from duo_unlearn.pairs import PairDataset
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.trainer import UnlearningTrainer

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n_pairs = 32
    images = torch.rand((n_pairs, 3, 64, 64), generator=g) * 2 - 1
    dataset = PairDataset(images, images.flip(-1), ["u"] * n_pairs, ["a red square"] * n_pairs,
                          [{"index": i} for i in range(n_pairs)])
    robust = demo_robust_settings() if variant.startswith("duo_robust") else {}
    if variant == "duo_robust_prompt_rows":
        robust.update(prompt_preference_weight=1.0)
    if variant == "duo_robust_tokens":
        robust.update(adversary_space="tokens", adversary_tokens=4)
    if variant == "duo_robust_shared":
        robust.update(shared_adversary=True)
    if variant == "duo_robust_retain":
        robust.update(retain_prompts=RETAIN_PROMPTS, retain_weight=1e4, retain_num_inference_steps=12)
    if variant in ("duo_robust_pool_rows", "inversion_step", "adaptive_inversion_step"):  # step 0 refreshes, no other
        robust = {**demo_robust_settings(), "inversion_pool_every": 10**6, "inversion_pool_steps": 1}
    cfg = DUOConfig(output_dir="/tmp/duo-bench", train_batch_size=batch, max_train_steps=steps + warmup,
                    checkpointing_steps=0, **robust)
    trainer = UnlearningTrainer(cfg, pipe=load_shapeworld(), dataset=dataset)
    fam, model = trainer.family, trainer.model

    def naive_step():
        n = batch
        index = torch.randint(n_pairs, (n,), generator=trainer.generator)
        mu, su = encode_latents(trainer.pipe.vae, dataset.unsafe[index])
        ms, ss = encode_latents(trainer.pipe.vae, dataset.safe[index])
        x0_u = scale_latents(trainer.pipe.vae, mu + su * _randn(trainer, mu.shape))
        x0_s = scale_latents(trainer.pipe.vae, ms + ss * _randn(trainer, ms.shape))
        null = fam.encode_prompts([""] * n)
        noise = _randn(trainer, x0_u.shape)
        t = _timesteps(trainer, n)
        x_r = _randn(trainer, x0_u.shape)
        x_u, x_s = fam.add_noise(x0_u, noise, t), fam.add_noise(x0_s, noise, t)
        t_r = torch.full((n,), 999)
        p_u, p_s, p_r = (fam.predict(model, x, tt, null) for x, tt in ((x_u, t), (x_s, t), (x_r, t_r)))
        with torch.no_grad(), adapters_disabled(model):
            r_u, r_s, r_r = (fam.predict(model, x, tt, null) for x, tt in ((x_u, t), (x_s, t), (x_r, t_r)))
        loss = duo_loss(p_u, r_u, p_s, r_s, noise, noise, cfg.beta) + \
            cfg.resolved_preservation_weight * output_preservation_loss(p_r, r_r)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    step = {"plain_lora": lambda: plain_lora_step(trainer), "duo_cached": trainer.step,
            "duo_naive": naive_step, "duo_robust": trainer.step, "duo_robust_prompt_rows": trainer.step,
            "duo_robust_tokens": trainer.step,
            "duo_robust_shared": trainer.step, "duo_robust_retain": trainer.step,
            "duo_robust_pool_rows": trainer.step, "inversion_step": trainer._refresh_inversion_pool,
            "adaptive_inversion_step": trainer._refresh_inversion_pool}[variant]
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    queue.put((variant, times, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds over the variants")
    parser.add_argument("--output", default="bench-output/step_time.md")
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    results: dict[str, dict] = {v: {"times": [], "rss": 0.0} for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            queue = ctx.Queue()
            proc = ctx.Process(target=_run, args=(variant, args.batch, args.steps, args.warmup, queue))
            proc.start()
            name, times, rss = queue.get()
            proc.join()
            results[name]["times"] += times
            results[name]["rss"] = max(results[name]["rss"], rss)

    med = {v: statistics.median(r["times"]) for v, r in results.items()}
    rows = [
        "| variant | median step (s) | vs plain LoRA | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for v in VARIANTS:
        rows.append(f"| {v} | {med[v]:.3f} | {med[v] / med['plain_lora']:.2f} | {results[v]['rss']:.0f} |")
    text = "\n".join([
        f"# DUO step time (ShapeWorld, {args.batch} pairs per step, CPU threads: {torch.get_num_threads()})",
        "",
        *rows,
        "",
        f"- DUO cached / plain LoRA = **{med['duo_cached'] / med['plain_lora']:.2f}** "
        "(target <= 1.4; arithmetic floor 4/3: one extra no-grad forward)",
        f"- DUO naive / DUO cached = **{med['duo_naive'] / med['duo_cached']:.2f}**",
        f"- robust DUO / DUO cached = **{med['duo_robust'] / med['duo_cached']:.2f}** (4 adversary steps)",
        f"- robust DUO / the same with its empty-prompt rows = "
        f"**{med['duo_robust'] / med['duo_robust_prompt_rows']:.2f}** (rows of weight 0 left out)",
        f"- robust DUO, token adversary / robust DUO = **{med['duo_robust_tokens'] / med['duo_robust']:.2f}**",
        f"- robust DUO, shared adversary / robust DUO = **{med['duo_robust_shared'] / med['duo_robust']:.2f}**",
        f"- robust DUO, retain term / robust DUO = **{med['duo_robust_retain'] / med['duo_robust']:.2f}**",
        f"- robust DUO, inversion pool rows / robust DUO = **{med['duo_robust_pool_rows'] / med['duo_robust']:.2f}**; "
        f"one inversion step / robust DUO = **{med['inversion_step'] / med['duo_robust']:.2f}**, so a pool of "
        f"500-step inversions every 50 steps = **"
        f"{(med['duo_robust_pool_rows'] + 10 * med['inversion_step']) / med['duo_robust']:.2f}** x robust DUO",
        f"- one adaptive inversion step / robust DUO = **{med['adaptive_inversion_step'] / med['duo_robust']:.2f}**, "
        "so a pool of 1000-step adaptive inversions every 100 steps = **"
        f"{(med['duo_robust_pool_rows'] + 10 * med['adaptive_inversion_step']) / med['duo_robust']:.2f}** "
        "x robust DUO",
        f"- {args.rounds} alternating rounds x {args.steps} timed steps after {args.warmup} warm-up steps, "
        "each variant in its own process; ratios are from this run only.",
        "",
    ])
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
