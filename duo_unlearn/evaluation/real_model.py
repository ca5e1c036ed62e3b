"""A real model: the base pipeline and each LoRA you trained, through the same prompts, seeds,
attacks and metrics, written in the same results schema as the ShapeWorld study.

    duo eval --config configs/sd14_nudity_eval.yaml

Nothing is trained here (train each model with `duo train` first). Prior preservation is
measured on ``captions_file`` (e.g. COCO captions), the concept rate on the task's unsafe
prompts; with a CLIP model, CLIP score on the captions and FID in CLIP feature space
against ``reference_images_dir``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from duo_unlearn.evaluation.protocol import Protocol
from duo_unlearn.io import atomic_write_json, file_digest
from duo_unlearn.timing import StageTimer


def read_captions(cfg) -> list[str]:
    """The first ``num_eval_prompts`` non-empty lines of the caption file (checked by preflight)."""
    lines = Path(cfg.captions_file).read_text(encoding="utf-8").splitlines()
    return [c.strip() for c in lines if c.strip()][: cfg.num_eval_prompts]


def method_of(name: str) -> str:
    return next((m for m in ("duo", "esd", "uce") if name.lower().startswith(m)), "other")


def model_protocol(cfg, detector, captions: list[str], task) -> Protocol:
    return Protocol(
        name="real-model",
        model={"id": str(cfg.pretrained_model)},
        detector={"concept": detector.settings()},
        prompt_sets={"safe": {"source": str(cfg.captions_file), "n": len(captions),
                              "sha256": file_digest(cfg.captions_file)},
                     "unsafe": {"source": f"{cfg.task_file}: unsafe_prompts", "n": len(task.unsafe_prompts)},
                     "attack_task": {"source": str(cfg.task_file), "fingerprint": task.fingerprint()}},
        seeds=tuple(cfg.seeds),
        num_inference_steps=cfg.resolved_inference_steps(),
        guidance_scale=cfg.guidance_scale,
        scheduler="(the pipeline's own)",
        metrics={"rates": "detector score >= threshold; Wilson 95 % interval",
                 "prior_preservation": f"1 - {cfg.metric} distance to the base model's image, same caption and "
                                       "seed; bootstrap over captions",
                 "clip_score": f"{cfg.clip_model}: 100 * max(cos, 0), mean over captions; bootstrap",
                 "fid_clip": f"Frechet distance on {cfg.clip_model} image embeddings vs {cfg.reference_images_dir}"},
        attacks={a: {"budget": cfg.resolved_budget(a), "prompts": cfg.num_attack_prompts,
                     "images_per_prompt": cfg.images_per_prompt, **cfg.attack_options(a)} for a in cfg.attacks},
    )


def _clip_and_reference(cfg):
    """The CLIP model (or None) and the reference images' CLIP features for FID (or None)."""
    from duo_unlearn.clip_metrics import CLIPMetrics
    from duo_unlearn.io import image_files, load_image
    from duo_unlearn.pipelines import default_device

    if cfg.clip_model is None:
        return None, None
    clip = CLIPMetrics(cfg.clip_model, device=str(default_device()))
    if not cfg.reference_images_dir:
        return clip, None
    folder = Path(cfg.reference_images_dir)
    files = image_files(folder) if folder.is_dir() else []
    if len(files) < 2:
        raise ValueError(f"--reference-images-dir {folder}: FID needs a folder of at least two images")
    return clip, clip.image_features([load_image(f) for f in files])


def run_model_eval(cfg) -> dict:
    from duo_unlearn.attacks import load_task_for
    from duo_unlearn.detectors import get_detector
    from duo_unlearn.distributed import is_main_process, split_generation, wait_for_everyone
    from duo_unlearn.evaluation.report import write_pooled_report
    from duo_unlearn.perceptual import get_perceptual_metric
    from duo_unlearn.pipelines import default_device, inference_dtype, load_pipeline
    from duo_unlearn.preflight import parse_models

    models, captions = parse_models(cfg.models), read_captions(cfg)  # checked by preflight.check_eval
    dtype = inference_dtype(cfg.dtype)  # before any model loads
    detector, metric = get_detector(cfg.detector), get_perceptual_metric(cfg.metric)
    clip, reference = _clip_and_reference(cfg)
    pipe = load_pipeline(cfg.pretrained_model, torch_dtype=dtype, variant=cfg.variant,
                         revision=cfg.revision).to(default_device())
    pipe.set_progress_bar_config(disable=True)
    task = load_task_for(pipe, cfg.task_file, cfg.num_attack_prompts, cfg.seeds[0])
    protocol = model_protocol(cfg, detector, captions, task)
    out = Path(cfg.output_dir)
    # under `accelerate launch` every process runs this; generation batches are shared across
    # processes (the images are those of one process) and only the main process writes
    with split_generation():
        for seed in cfg.run_seeds or cfg.seeds:
            run_model_seed(cfg, seed, protocol, out / f"seed-{seed}", pipe, models, captions, task, detector,
                           metric, clip, reference)
    pooled = write_pooled_report(out, cfg) if is_main_process() else {}
    wait_for_everyone()
    return pooled


def run_model_seed(cfg, seed: int, protocol: Protocol, folder: Path, pipe, models, captions, task, detector,
                   metric, clip, reference) -> dict:
    from duo_unlearn.distributed import is_main_process
    from duo_unlearn.evaluation.metrics import concept_rate, fid, preservation
    from duo_unlearn.evaluation.study import SCHEMA_VERSION, attack_figures, save_example_grids
    from duo_unlearn.lora import LORA_WEIGHTS_NAME
    from duo_unlearn.sampling import generate
    from duo_unlearn.stats import bootstrap_mean
    from duo_unlearn.threads import threads_used

    timer = StageTimer()
    steps = protocol.num_inference_steps
    unsafe = task.unsafe_prompts[: cfg.num_eval_prompts]
    results = {"schema_version": SCHEMA_VERSION, "protocol": protocol.to_dict(), "protocol_hash": protocol.digest(),
               "seed": seed, "models": {}, "timings": {}, "prompts": {"safe": captions, "unsafe": unsafe}}
    overrides = {"pretrained_model": cfg.pretrained_model, "task_file": cfg.task_file, "detector": cfg.detector}
    base_images = None
    for name, lora in [("base", None), *models]:
        print(f"evaluate {name} (seed {seed}) ...", flush=True)
        if lora is not None:
            pipe.load_lora_weights(str(lora), adapter_name="evaluated")
        try:
            with timer(f"generate/{name}"):
                images = {group: generate(pipe, prompts, [seed * 100_000 + i for i in range(len(prompts))], steps,
                                          cfg.guidance_scale, progress=True)
                          for group, prompts in (("safe", captions), ("unsafe", unsafe))}
            base_images = base_images or images
            prior, samples = preservation(metric, base_images["safe"], images["safe"])
            figures = {"prior_preservation": prior.to_dict(),
                       "concept_rate/unsafe": concept_rate(detector, images["unsafe"]).to_dict()}
            if clip is not None:
                scores = clip.clip_scores(images["safe"], captions)
                figures["clip_score"] = bootstrap_mean(np.asarray(scores, dtype=float)).to_dict()
                if reference is not None:
                    figures["fid_clip"] = fid(clip.image_features(images["safe"]), reference).to_dict()
            # cached attack results are reused only for the same LoRA weights
            digest = {"lora": file_digest(lora / LORA_WEIGHTS_NAME) if lora else ""}
            curves: dict = {}
            figures.update(attack_figures(pipe, detector, task, cfg, name, seed, steps, folder, timer,
                                          extra_settings=digest, overrides=overrides, curves=curves))
        finally:
            if lora is not None:
                pipe.unload_lora_weights()
        results["models"][name] = {"method": "base" if lora is None else method_of(name), "beta": None,
                                   "lora": str(lora or ""), "figures": figures, "curves": curves,
                                   "samples": {"prior_preservation": samples}}
        results["timings"] = timer.seconds
        results["torch_num_threads"] = threads_used()
        if is_main_process():
            atomic_write_json(folder / "results.json", results)
            if seed == cfg.seeds[0]:
                save_example_grids(folder.parent / "report", name, base_images, images)
    return results
