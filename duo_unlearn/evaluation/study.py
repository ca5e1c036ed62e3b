"""The ShapeWorld study: every method through every attack and metric, over several seeds.

    make eval      (duo eval --config configs/eval_shapeworld.yaml)

Per seed (each with its own pairs, training seed, prompts and attack seeds): make SDEdit
pairs; train DUO at each β (and, if asked, without the regulariser), ESD-x and UCE; then put
the base model and each unlearned model through the metric prompt groups and the attacks.
These are tasks (``Task``): ``num_workers`` processes run them in parallel across models and
seeds, each evaluation saving its figures and images under ``seed-N/evaluated/<model>/``; the
main process merges each finished model into ``seed-N/results.json`` (an interrupted run
resumes from there: finished models, evaluations, trained LoRAs and attack results are reused
when their settings and protocol match); then the report pools the seeds.

Where the time goes is in each results.json (``timings``: the stage sums, and ``wall_seconds``:
the seed's share of the run's wall time). What is not recomputed: the base model's images (one
generation per seed, shared by every comparison), the paraphrase control (the held-out metric
group *is* that control: 1 − its concept rate), Ring-A-Bell's search (it never queries the
target, so it runs once per seed, kept on disk for the seed's other models), trained models
and attack results.
"""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import contextmanager
from pathlib import Path

from duo_unlearn.evaluation.protocol import Protocol
from duo_unlearn.io import atomic_write_json, atomic_write_text, file_digest
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
    """Every seed's pairs, models and evaluations as tasks, run in ``cfg.num_workers`` processes
    (or in this one), each seed's results merged as its models finish; then the pooled report."""
    from duo_unlearn.evaluation.report import write_pooled_report

    protocol = study_protocol(cfg)
    out = Path(cfg.output_dir)
    seeds = [SeedRun(cfg, seed, protocol, out / f"seed-{seed}") for seed in cfg.run_seeds or cfg.seeds]
    tasks = [t for run in seeds for t in run.tasks()]
    started = time.perf_counter()
    for task, outcome in run_tasks(tasks, cfg):
        run = next(r for r in seeds if r.seed == task.seed)
        run.record(task, outcome)
    busy = [r for r in seeds if r.scheduled]
    for run in busy:  # each seed's share of this run's wall time (workers overlap seeds)
        run.finish(wall_share=(time.perf_counter() - started) / len(busy), num_workers=cfg.num_workers)
    return write_pooled_report(out, cfg)


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of the study a worker runs: ``pairs`` of a seed, ``train`` or ``evaluate`` of a model."""

    kind: str
    seed: int
    spec: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)
    after: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.seed}/{self.spec.get('name', '')}"


# evaluations first by their order in model_specs, seeds interleaved: two workers rarely search
# Ring-A-Bell for the same seed at once (a search is remembered on disk for the seed's other models)
_KIND_ORDER = {"pairs": 0, "train": 1, "evaluate": 2}


def run_tasks(tasks: list[Task], cfg):
    """Yield ``(task, outcome)`` as tasks finish, each started once its ``after`` tasks are done.
    With one worker every task runs here, in order; with more, in a pool of processes, each at
    ``cfg.num_threads`` threads. A task's figures do not depend on which process ran it or what
    ran there before (tested: one worker and two give the same results.json figures)."""
    names = {t.name for t in tasks}
    ready_order = sorted(tasks, key=lambda t: (_KIND_ORDER[t.kind], _spec_rank(cfg, t), t.seed))
    if cfg.num_workers <= 1:
        for task in ready_order:  # dependencies come earlier in this order
            yield task, run_task(cfg, task)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    done: set[str] = set()
    pending, running = list(ready_order), {}
    with ProcessPoolExecutor(max_workers=cfg.num_workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(cfg.num_threads,)) as pool:
        while pending or running:
            for task in list(pending):
                if len(running) >= cfg.num_workers:
                    break
                if all(a in done or a not in names for a in task.after):
                    pending.remove(task)
                    running[pool.submit(run_task, cfg, task)] = task
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                done.add(task.name)
                yield task, future.result()  # a failed task stops the study with its error


def _spec_rank(cfg, task: Task) -> int:
    return [s["name"] for s in model_specs(cfg)].index(task.spec["name"]) if task.spec else 0


def _worker_init(num_threads: int) -> None:
    from duo_unlearn.threads import pin_threads

    pin_threads(num_threads)


def run_task(cfg, task: Task) -> dict:
    """Run one task (in whichever process); returns its stage timings and the thread count."""
    import torch

    folder = Path(cfg.output_dir) / f"seed-{task.seed}"
    timer = StageTimer()
    if task.kind == "pairs":
        with timer("pairs"):
            make_seed_pairs(cfg, task.seed, folder)
    elif task.kind == "train":
        with timer(f"train/{task.spec['name']}"):
            train_model(task.spec, cfg, task.seed, folder / "pairs", folder / "models" / task.spec["name"],
                        *_training_prompts(cfg, task.seed))
    else:
        evaluate_model(cfg, task.seed, task.spec, folder, timer)
    return {"timings": timer.seconds, "threads": torch.get_num_threads()}


class SeedRun:
    """One seed's results.json: which tasks it still needs, and the merge of finished ones."""

    def __init__(self, cfg, seed: int, protocol: Protocol, folder: Path) -> None:
        self.cfg, self.seed, self.protocol, self.folder = cfg, seed, protocol, folder
        self.path = folder / "results.json"
        self.results = _resume(self.path, protocol, seed)
        self.specs = model_specs(cfg)
        self.scheduled: list[Task] = []
        self.threads: set[int] = set()
        self._comparison = None  # the perceptual metric, FID reference and base images, once the base is done

    def tasks(self) -> list[Task]:
        todo = [s for s in self.specs if s["name"] not in self.results["models"]]
        if not todo:
            return []
        tasks = []
        trained = [s for s in self.specs[1:] if s in todo]
        if trained:
            tasks.append(Task("pairs", self.seed))
            tasks += [Task("train", self.seed, s, after=(f"pairs/{self.seed}/",)) for s in trained]
        base = self.specs[0]
        unevaluated = [s for s in todo if not self._evaluated(s)]
        if base not in todo and not self._evaluated(base):  # merged before, but the others compare to it
            unevaluated.append(base)
        for spec in unevaluated:
            after = (f"train/{self.seed}/{spec['name']}",) if spec["method"] != "base" else ()
            tasks.append(Task("evaluate", self.seed, spec, after=after))
        self.scheduled = tasks
        print(f"seed {self.seed}: {len(tasks)} tasks ({', '.join(t.name for t in tasks)})", flush=True)
        return tasks

    def _evaluated(self, spec: dict) -> bool:
        return evaluated_figures(self.folder, spec, self.protocol.digest()) is not None

    def record(self, task: Task, outcome: dict) -> None:
        """Add a finished task's timings; merge every model whose evaluation and the base's are done."""
        timings = self.results["timings"]
        for stage, seconds in outcome["timings"].items():
            timings[stage] = round(timings.get(stage, 0.0) + seconds, 2)
        self.threads.add(outcome["threads"])
        self._merge_ready()
        self._write()

    def _merge_ready(self) -> None:
        digest = self.protocol.digest()
        saved = {s["name"]: evaluated_figures(self.folder, s, digest) for s in self.specs
                 if s["name"] not in self.results["models"] or s is self.specs[0]}
        todo = [s for s in self.specs if s["name"] not in self.results["models"] and saved[s["name"]] is not None]
        if saved["base"] is None or not todo:
            return
        metric, reference, base_images = self._compared_to(saved["base"])
        self.results["prompts"] = _prompt_lists(self.cfg.num_eval_prompts, self.seed)
        for spec in todo:
            name = spec["name"]
            images = base_images if name == "base" else evaluated_images(self.folder, name, saved[name])
            row = model_row(spec, saved[name]["figures"], images, base_images, metric, reference)
            row["figures"].update(saved[name]["attack_figures"])
            row["curves"] = saved[name]["curves"]
            self.results["models"][name] = row
            if self.seed == self.cfg.seeds[0]:
                save_example_grids(self.folder.parent / "report", name, base_images, images)
        order = [s["name"] for s in self.specs]
        self.results["models"] = dict(sorted(self.results["models"].items(), key=lambda kv: order.index(kv[0])
                                             if kv[0] in order else len(order)))

    def _compared_to(self, base: dict):
        """The perceptual metric, the FID reference renders' embeddings and the base model's images
        (every model of the seed is compared to these), made once per run."""
        if self._comparison is None:
            from duo_unlearn.detectors import ShapeWorldDetector
            from duo_unlearn.perceptual import ShapeWorldPerceptual
            from duo_unlearn.world.scene import render_scene, sample_scenes

            metric = ShapeWorldPerceptual(ShapeWorldDetector())
            reference = metric.embeddings([render_scene(s) for s in
                                           sample_scenes(256, seed=self.seed + 31337, mark_probs=(1, 0, 0))])
            self._comparison = metric, reference, evaluated_images(self.folder, "base", base)
        return self._comparison

    def _write(self) -> None:
        order = ["pairs"] + [f"train/{s['name']}" for s in self.specs] + \
            [k for s in self.specs for k in (f"generate/{s['name']}",
                                              *(f"attack/{s['name']}/{a}" for a in self.cfg.attacks))]
        timings = self.results["timings"]
        self.results["timings"] = {k: timings[k] for k in sorted(timings, key=lambda k: order.index(k)
                                                                 if k in order else len(order))}
        self.results["torch_num_threads"] = sorted({*self.results.get("torch_num_threads", []), *self.threads})
        atomic_write_json(self.path, self.results)

    def finish(self, wall_share: float, num_workers: int) -> None:
        """Record this run's share of the wall time and its worker count beside the stage sums."""
        self.results["wall_seconds"] = round(self.results.get("wall_seconds", 0.0) + wall_share, 2)
        self.results["num_workers"] = sorted({*self.results.get("num_workers", []), num_workers})
        self._write()


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


def make_seed_pairs(cfg, seed: int, folder: Path) -> None:
    """The seed's SDEdit pairs (reused when already made), shared by every DUO model of the seed."""
    from duo_unlearn.demo import DemoConfig, unsafe_safe_prompts
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.pairs import PairsConfig, make_pairs

    unsafe_prompts, safe_prompts = unsafe_safe_prompts(cfg.num_pairs, seed + 17)
    make_pairs(PairsConfig(output_dir=str(folder / "pairs"), unsafe_prompts=tuple(unsafe_prompts),
                           safe_prompts=tuple(safe_prompts), num_pairs=cfg.num_pairs,
                           strength=DemoConfig.strength, seed=seed), pipe=_shared_pipe(), detector=ShapeWorldDetector())


def _training_prompts(cfg, seed: int) -> tuple[list[str], list[str], list[str]]:
    """UCE's erase, target and preserve prompts of the seed (ESD and DUO read the pairs)."""
    from duo_unlearn.demo import preserve_prompts, unsafe_safe_prompts

    unsafe_prompts, safe_prompts = unsafe_safe_prompts(cfg.num_pairs, seed + 17)
    return unsafe_prompts[:16], safe_prompts[:16], preserve_prompts(seed)


_PIPE = None


def _shared_pipe():
    """ShapeWorld's pipeline, loaded once per process (an evaluation loads and unloads its LoRA)."""
    global _PIPE
    if _PIPE is None:
        from duo_unlearn.pipelines import load_shapeworld

        _PIPE = load_shapeworld()
    return _PIPE


_IMAGE_GROUPS = ("safe", "unsafe", "close")
"""The metric groups a model's merge reads back (held-out serves only the paraphrase control)."""


def evaluate_model(cfg, seed: int, spec: dict, folder: Path, timer: StageTimer) -> None:
    """Generate the metric groups and run every attack on one model; the figures, attack figures
    and images go to ``folder/evaluated/<name>/`` (figures.json last: its presence means done)."""
    from duo_unlearn.attacks import shapeworld_task
    from duo_unlearn.detectors import ShapeWorldDetector
    from duo_unlearn.io import atomic_save_image
    from duo_unlearn.world.quality import measure_world_figures

    name, pipe = spec["name"], _shared_pipe()
    detector, close = ShapeWorldDetector(), ShapeWorldDetector(concept="plus")
    steps = cfg.resolved_inference_steps()
    task = shapeworld_task(max(cfg.num_attack_prompts, 8), seed=seed + 1000)
    lora = _lora_digest(folder, spec)
    if lora:
        pipe.load_lora_weights(str(folder / "models" / name), adapter_name="evaluated")
    try:
        with timer(f"generate/{name}"):
            figures, images = measure_world_figures(pipe, detector, close, cfg.num_eval_prompts, seed=seed,
                                                    num_inference_steps=steps)
        curves: dict = {}
        with _remembered_ring_a_bell_searches(folder / "ring-a-bell-searches.json"):
            attack_figs = attack_figures(pipe, detector, task, cfg, name, seed, steps, folder, timer,
                                         heldout_images=images["heldout"], extra_settings=lora or {},
                                         curves=curves)
    finally:
        if lora:
            pipe.unload_lora_weights()
    out = folder / "evaluated" / name
    for group in _IMAGE_GROUPS:
        for i, image in enumerate(images[group]):
            atomic_save_image(image, out / group / f"{i:04d}.png")
    atomic_write_json(out / "figures.json", {
        "protocol_hash": study_protocol(cfg).digest(), **(lora or {}),
        "figures": {k: e.to_dict() for k, e in figures.items()}, "attack_figures": attack_figs, "curves": curves,
        "counts": {g: len(images[g]) for g in _IMAGE_GROUPS}})


def _lora_digest(folder: Path, spec: dict) -> dict:
    from duo_unlearn.lora import LORA_WEIGHTS_NAME

    if spec["method"] == "base":
        return {}
    return {"lora": file_digest(folder / "models" / spec["name"] / LORA_WEIGHTS_NAME)}


def evaluated_figures(folder: Path, spec: dict, protocol_hash: str) -> dict | None:
    """A model's saved evaluation, if made under this protocol from the LoRA now in its folder."""
    path = folder / "evaluated" / spec["name"] / "figures.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("protocol_hash") != protocol_hash:
        return None
    if spec["method"] != "base":
        try:
            if saved.get("lora") != _lora_digest(folder, spec)["lora"]:
                return None
        except FileNotFoundError:
            return None
    return saved


def evaluated_images(folder: Path, name: str, saved: dict) -> dict:
    """The images a model's evaluation saved, by metric group (``saved``: its figures.json)."""
    from duo_unlearn.io import load_image

    return {g: [load_image(folder / "evaluated" / name / g / f"{i:04d}.png") for i in range(n)]
            for g, n in saved["counts"].items()}


@contextmanager
def _remembered_ring_a_bell_searches(path: Path):
    """Ring-A-Bell's search never queries the target, so a seed searches once: what a process found
    is kept in ``path`` for the seed's other models, whichever process evaluates them."""
    from duo_unlearn.attacks.methods import load_ring_a_bell_searches, save_ring_a_bell_searches

    load_ring_a_bell_searches(path)
    try:
        yield
    finally:
        save_ring_a_bell_searches(path)


def _prompt_lists(n: int, seed: int) -> dict:
    from duo_unlearn.world.quality import prompt_groups

    return {k: [r["prompt"] for r in v] for k, v in prompt_groups(n, seed).items()}


def model_row(spec: dict, figures: dict, images: dict, base_images: dict, metric, reference) -> dict:
    """Concept rates (``figures``, as saved), preservation of safe and close-concept images, FID in
    detector space."""
    from duo_unlearn.evaluation.metrics import fid, preservation

    prior, prior_samples = preservation(metric, base_images["safe"], images["safe"])
    close, close_samples = preservation(metric, base_images["close"], images["close"])
    figs = dict(figures)
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
            if cfg.adversary_space != "conditioning":
                settings.update(adversary_space=cfg.adversary_space, adversary_tokens=cfg.adversary_tokens)
            if cfg.shared_adversary:
                settings["shared_adversary"] = True
            if cfg.adversarial_twin_weight:
                settings["adversarial_twin_weight"] = cfg.adversarial_twin_weight
            if cfg.robust_retain_weight:
                settings.update(retain_weight=cfg.robust_retain_weight, retain_prompts=list(preserve_prompts),
                                retain_num_inference_steps=NUM_INFERENCE_STEPS)
            if cfg.inversion_pool_every:
                settings.update(inversion_pool_every=cfg.inversion_pool_every,
                                inversion_pool_steps=cfg.inversion_pool_steps,
                                inversion_pool_size=cfg.inversion_pool_size,
                                inversion_pool_tokens=cfg.inversion_pool_tokens)
                # only when set, so the models trained before these settings keep their keys
                if cfg.inversion_pool_contrast or cfg.inversion_pool_init_word != DUOConfig.inversion_pool_init_word:
                    settings.update(inversion_pool_init_word=cfg.inversion_pool_init_word,
                                    inversion_pool_contrast=cfg.inversion_pool_contrast)
                if cfg.inversion_pool_alternate:
                    settings["inversion_pool_alternate"] = dict(cfg.inversion_pool_alternate)
                if cfg.inversion_pool_weight is not None:
                    settings["inversion_pool_weight"] = cfg.inversion_pool_weight
            if cfg.robust_lora_target_modules:
                settings["lora_target_modules"] = list(cfg.robust_lora_target_modules)
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
