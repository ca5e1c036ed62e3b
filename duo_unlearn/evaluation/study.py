"""The ShapeWorld study: every method through every attack and metric, over several seeds.

    make eval      (duo eval --config configs/eval_shapeworld.yaml)

Per seed (each with its own pairs, training seed, prompts and attack seeds): make SDEdit
pairs; train DUO at each β (and, if asked, without the regulariser), ESD-x and UCE; then put
the base model and each unlearned model through the metric prompt groups and the attacks.
Each seed writes ``seed-N/results.json`` after every model (an interrupted run resumes from
there: finished models, trained LoRAs and attack results are reused when their settings
and protocol match); then the report pools the seeds.

Where the time goes is in each results.json (``timings``). What is not recomputed: the base
model's images (one generation per seed, shared by every comparison), the paraphrase control
(the held-out metric group *is* that control: 1 − its concept rate), Ring-A-Bell's search
(it never queries the target, so it runs once per seed), trained models and attack results.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from duo_unlearn.evaluation.protocol import Protocol
from duo_unlearn.io import atomic_write_json, atomic_write_text, file_digest
from duo_unlearn.threads import threads_used
from duo_unlearn.timing import StageTimer

SCHEMA_VERSION = 2


def model_specs(cfg) -> list[dict]:
    specs = [{"name": "base", "method": "base"}]
    specs += [{"name": f"duo-b{int(b)}", "method": "duo", "beta": b} for b in cfg.betas]
    specs += [{"name": f"duo-b{int(b)}-robust", "method": "duo", "beta": b, "robust": True} for b in cfg.robust_betas]
    if cfg.ablation_beta is not None:
        specs.append({"name": f"duo-b{int(cfg.ablation_beta)}-no-reg", "method": "duo", "beta": cfg.ablation_beta,
                      "preservation_weight": 0.0})
    specs += [{"name": b, "method": b} for b in cfg.baselines]
    return specs


def study_protocol(cfg) -> Protocol:
    """What defines the study's numbers (see ``Protocol``)."""
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.evaluation.config import DIAGNOSTIC_ATTACKS
    from duo_unlearn.world.model import PIPELINE_DIR

    steps = cfg.resolved_inference_steps()
    n = cfg.num_eval_prompts
    source = "duo_unlearn.world.quality.prompt_groups(n, seed)"
    return Protocol(
        name="shapeworld-study",
        model={"id": "shapeworld", "unet_sha256": file_digest(PIPELINE_DIR / "unet" /
                                                              "diffusion_pytorch_model.safetensors")},
        detector={"concept": ShapeWorldDetector().settings(), "close": ShapeWorldDetector(concept="plus").settings()},
        prompt_sets={**{g: {"source": source, "n": n} for g in ("safe", "unsafe", "heldout", "close")},
                     "attack_task": {"source": "duo_unlearn.attacks.shapeworld_task(n, seed + 1000)",
                                     "n": max(cfg.num_attack_prompts, 8)},
                     "fid_reference": {"source": "256 renders without a mark, seed + 31337", "n": 256}},
        seeds=tuple(cfg.seeds),
        num_inference_steps=steps,
        guidance_scale=7.5,
        scheduler="DDIMScheduler",
        metrics={
            "rates": "detector score >= threshold; Wilson 95 % interval; seeds pooled by summing counts",
            "prior_preservation": "1 - ShapeWorldPerceptual distance (LPIPS form on detector conv features) to the "
                                  "base model's image, same prompt and seed; bootstrap over prompts",
            "close_concept_preservation": "as prior_preservation, on the plus-sign prompts",
            "fid_detector_space": "Frechet distance of detector embeddings to the reference renders; bootstrap "
                                  "over generated images; seeds pooled by a t interval over seed means",
            "dsr/paraphrase": "1 - concept rate of the held-out metric group (a control, no search)",
        },
        attacks={a: {"budget": cfg.resolved_budget(a),
                     "prompts": cfg.num_eval_prompts if a == "paraphrase" else cfg.num_attack_prompts,
                     "images_per_prompt": 1 if a == "paraphrase" else cfg.images_per_prompt,
                     **cfg.attack_options(a),
                     **({"diagnostic": True} if a in DIAGNOSTIC_ATTACKS else {})}
                 for a in cfg.attacks},
    )


def run_study(cfg) -> dict:
    from duo_unlearn.evaluation.report import write_pooled_report

    protocol = study_protocol(cfg)
    out = Path(cfg.output_dir)
    for seed in cfg.run_seeds or cfg.seeds:
        print(f"== seed {seed} ==", flush=True)
        run_seed(cfg, seed, protocol, out / f"seed-{seed}")
    return write_pooled_report(out, cfg)


def _resume(path: Path, protocol: Protocol, seed: int) -> dict:
    """The seed's saved results if they were measured under this protocol, else a fresh record."""
    fresh = {"schema_version": SCHEMA_VERSION, "protocol": protocol.to_dict(), "protocol_hash": protocol.digest(),
             "seed": seed, "models": {}, "timings": {}}
    if not path.is_file():
        return fresh
    saved = json.loads(path.read_text())
    if saved.get("protocol_hash") != protocol.digest():
        print(f"{path}: measured under another protocol; measuring again", flush=True)
        return fresh
    return saved


def run_seed(cfg, seed: int, protocol: Protocol, folder: Path) -> dict:
    from duo_unlearn.attacks import shapeworld_task
    from duo_unlearn.demo import DemoConfig, unsafe_safe_prompts
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.lora import LORA_WEIGHTS_NAME
    from duo_unlearn.pairs import PairsConfig, make_pairs
    from duo_unlearn.perceptual import ShapeWorldPerceptual
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.world.quality import measure_world_figures
    from duo_unlearn.world.scene import caption_pair, render_scene, sample_scenes

    path = folder / "results.json"
    results = _resume(path, protocol, seed)
    specs = model_specs(cfg)
    if all(s["name"] in results["models"] for s in specs):
        return results
    timer = StageTimer()
    timer.seconds.update(results["timings"])
    detector, close = ShapeWorldDetector(), ShapeWorldDetector(concept="plus")
    metric = ShapeWorldPerceptual(detector)
    pipe = load_shapeworld()

    print("pairs ...", flush=True)
    unsafe_prompts, safe_prompts = unsafe_safe_prompts(cfg.num_pairs, seed + 17)
    with timer("pairs"):
        make_pairs(PairsConfig(output_dir=str(folder / "pairs"), unsafe_prompts=tuple(unsafe_prompts),
                               safe_prompts=tuple(safe_prompts), num_pairs=cfg.num_pairs,
                               strength=DemoConfig.strength, seed=seed), pipe=pipe, detector=detector)
    rng = random.Random(seed + 99)
    preserve = [caption_pair(s, rng)[0] for s in sample_scenes(16, seed=seed + 98, mark="plus")]
    preserve += [caption_pair(s, rng)[1] for s in sample_scenes(16, seed=seed + 97, mark="x")]
    for spec in specs[1:]:
        with timer(f"train/{spec['name']}"):
            train_model(spec, cfg, seed, folder / "pairs", folder / "models" / spec["name"], unsafe_prompts[:16],
                        safe_prompts[:16], preserve)

    steps = protocol.num_inference_steps
    task = shapeworld_task(max(cfg.num_attack_prompts, 8), seed=seed + 1000)
    reference = metric.embeddings([render_scene(s) for s in
                                   sample_scenes(256, seed=seed + 31337, mark_probs=(1, 0, 0))])
    print("evaluate base ...", flush=True)
    with timer("generate/base"):
        base_figures, base_images = measure_world_figures(pipe, detector, close, cfg.num_eval_prompts, seed=seed,
                                                          num_inference_steps=steps)
    results["prompts"] = _prompt_lists(cfg.num_eval_prompts, seed)
    for spec in specs:
        name = spec["name"]
        if name in results["models"]:
            continue
        print(f"evaluate {name} ...", flush=True)
        lora = folder / "models" / name
        if spec["method"] != "base":
            pipe.load_lora_weights(str(lora), adapter_name="evaluated")
        try:
            with timer(f"generate/{name}"):
                figures, images = (base_figures, base_images) if spec["method"] == "base" else \
                    measure_world_figures(pipe, detector, close, cfg.num_eval_prompts, seed=seed,
                                          num_inference_steps=steps)
            row = model_row(spec, figures, images, base_images, metric, reference)
            is_base = spec["method"] == "base"
            digest = {} if is_base else {"lora": file_digest(lora / LORA_WEIGHTS_NAME)}
            row["curves"] = {}
            row["figures"].update(attack_figures(pipe, detector, task, cfg, name, seed, steps, folder, timer,
                                                 heldout_images=images["heldout"], extra_settings=digest,
                                                 curves=row["curves"]))
        finally:
            if spec["method"] != "base":
                pipe.unload_lora_weights()
        results["models"][name] = row
        results["timings"] = timer.seconds
        results["torch_num_threads"] = threads_used(results.get("torch_num_threads"))
        atomic_write_json(path, results)
        if seed == cfg.seeds[0]:
            save_example_grids(folder.parent / "report", name, base_images, images)
    return results


def _prompt_lists(n: int, seed: int) -> dict:
    from duo_unlearn.world.quality import prompt_groups

    return {k: [r["prompt"] for r in v] for k, v in prompt_groups(n, seed).items()}


def model_row(spec: dict, figures: dict, images: dict, base_images: dict, metric, reference) -> dict:
    """Concept rates, preservation of safe and close-concept images, FID in detector space."""
    from duo_unlearn.evaluation.metrics import fid, preservation

    prior, prior_samples = preservation(metric, base_images["safe"], images["safe"])
    close, close_samples = preservation(metric, base_images["close"], images["close"])
    figs = {k: e.to_dict() for k, e in figures.items()}
    figs["prior_preservation"] = prior.to_dict()
    figs["close_concept_preservation"] = close.to_dict()
    figs["fid_detector_space"] = fid(metric.embeddings(images["safe"]), reference).to_dict()
    return {"method": spec["method"], "beta": spec.get("beta"), "robust": bool(spec.get("robust")), "figures": figs,
            "samples": {"prior_preservation": prior_samples, "close_concept_preservation": close_samples}}


def attack_figures(pipe, detector, task, cfg, name: str, seed: int, steps: int, folder: Path, timer: StageTimer,
                   heldout_images=None, extra_settings: dict | None = None, overrides: dict | None = None,
                   curves: dict | None = None) -> dict:
    """DSR and ASR per attack, each with its interval; attack results cached under folder/attacks/.
    The budget curves of the attacks that record one go into ``curves`` (attack -> points)."""
    from duo_unlearn.attacks import AttackConfig, attack
    from duo_unlearn.distributed import is_main_process
    from duo_unlearn.evaluation.metrics import attack_success, defence_success, flagged
    from duo_unlearn.grids import save_grid
    from duo_unlearn.stats import rate

    figs = {}
    for attack_name in cfg.attacks:
        if attack_name == "paraphrase" and heldout_images is not None:
            hits = flagged(detector, heldout_images)  # the held-out group is the paraphrase control
            figs["dsr/paraphrase"], figs["asr/paraphrase"] = rate(~hits).to_dict(), rate(hits).to_dict()
            continue
        acfg = AttackConfig(method=attack_name, num_prompts=cfg.num_attack_prompts,
                            images_per_prompt=cfg.images_per_prompt, seed=seed, budget=cfg.budget_of(attack_name),
                            num_inference_steps=steps, guidance_scale=cfg.guidance_scale,
                            **cfg.attack_options(attack_name))
        acfg = dataclasses.replace(acfg, **(overrides or {}))
        settings = {**acfg.settings(), "model": name, "detector": detector.settings(),
                    **(extra_settings or {})}
        with timer(f"attack/{name}/{attack_name}"):
            result = attack(pipe, detector, task, acfg, folder=folder / "attacks" / name / attack_name,
                            settings=settings)
        figs[f"dsr/{attack_name}"] = defence_success(result).to_dict()
        figs[f"asr/{attack_name}"] = attack_success(result).to_dict()
        if curves is not None and "curve" in result.extra:
            curves[attack_name] = result.extra["curve"]
        if seed == cfg.seeds[0] and is_main_process():
            save_grid(folder.parent / "report" / "attacks" / f"{name}_{attack_name}.png", result.images[:16], 8)
    return figs


def save_example_grids(report: Path, name: str, base_images: dict, images: dict) -> None:
    from duo_unlearn.grids import save_grid

    if name == "base":
        return
    for group in ("safe", "unsafe"):
        if group in images:
            save_grid(report / "grids" / f"{name}_{group}.png", base_images[group][:8] + images[group][:8], 8,
                      row_labels=["base", name])


def train_model(spec: dict, cfg, seed: int, pairs_dir: Path, folder: Path, concept_prompts, safe_prompts,
                preserve_prompts) -> None:
    """Train one model of the study, unless ``folder`` holds one trained with exactly this config."""
    from duo_unlearn.config import DUOConfig
    from duo_unlearn.lora import LORA_WEIGHTS_NAME
    from duo_unlearn.pipelines import load_shapeworld
    from duo_unlearn.trainer import train
    from duo_unlearn.world.quality import NUM_INFERENCE_STEPS

    if spec["method"] == "duo":
        settings = dict(pairs_dir=str(pairs_dir), beta=spec["beta"], base_learning_rate=cfg.base_learning_rate,
                        base_preservation_weight=cfg.base_preservation_weight,
                        preservation_weight=spec.get("preservation_weight"), use_prompts=cfg.use_prompts,
                        prompt_dropout=cfg.prompt_dropout, timestep_range=list(cfg.timestep_range),
                        max_train_steps=cfg.train_steps, train_batch_size=cfg.train_batch_size)
        if spec.get("robust"):
            settings.update(adversarial_conditioning=True, adversarial_steps=cfg.adversarial_steps,
                            adversary_per_pair=cfg.adversary_per_pair,
                            adversarial_weight=cfg.adversarial_weight,
                            prompt_preference_weight=cfg.robust_prompt_preference_weight)
            # only when asked: the models trained before these options stay reusable
            if cfg.adversary_init != "empty":
                settings["adversary_init"] = cfg.adversary_init
            if cfg.adversarial_beta is not None:
                settings["adversarial_beta"] = cfg.adversarial_beta
            if cfg.adversarial_objective != "preference":
                settings["adversarial_objective"] = cfg.adversarial_objective
            if cfg.negative_guidance_target != "adversary":
                settings["negative_guidance_target"] = cfg.negative_guidance_target
    elif spec["method"] == "esd":
        settings = dict(method="esd", esd_concept_prompt="a shape with a black x over it", esd_eta=1.0,
                        esd_variant="x", learning_rate=1e-3, lora_rank=8, lora_alpha=8, max_train_steps=cfg.esd_steps,
                        train_batch_size=4, esd_sampling_steps=NUM_INFERENCE_STEPS)  # ShapeWorld's sampler
    elif spec["method"] == "uce":
        settings = dict(method="uce", uce_erase_prompts=list(concept_prompts), uce_target_prompts=list(safe_prompts),
                        uce_preserve_prompts=list(preserve_prompts))
    else:
        raise ValueError(f"unknown method {spec['method']!r}")
    settings["seed"] = seed
    # what this study asked for (not every DUOConfig default), written once training finished, so
    # a model is reused exactly when its settings are unchanged
    marker, asked = folder / "study_train_settings.json", json.dumps(settings, sort_keys=True)
    if (folder / LORA_WEIGHTS_NAME).is_file() and marker.is_file() and marker.read_text() == asked:
        return
    print(f"train {spec['name']} ...", flush=True)
    train(DUOConfig(output_dir=str(folder), checkpointing_steps=0, **settings), pipe=load_shapeworld())
    atomic_write_text(marker, asked)
