"""`EvalConfig`: the settings of `duo eval` (every method through every attack and metric, with
intervals, into one report).

    make eval      (duo eval --config configs/eval_shapeworld.yaml)
    make eval-quick                       (one seed, small samples: a first look in minutes)
    duo eval --config configs/sd14_nudity_eval.yaml   (a real model and your LoRA folders)

The work is laid out beside this module in ``duo_unlearn.evaluation``: the pinned protocol
(``protocol``), the figures and their intervals (``metrics``, shared with `duo demo`), the
ShapeWorld study (``study``: pairs, training and evaluation over several seeds), a real model
(``real_model``) and the report (``report``). Both recipes write the same results schema:
``seed-N/results.json`` per seed (figures with 95 % intervals, per-stage wall times, the
protocol and its hash), pooled into ``report/`` (results.json, index.md, index.html, Pareto
plots with error bars, grids).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from duo_unlearn.config import DUOConfig, InversionRecipe, check_pool_recipe, pool_recipe_overrides
from duo_unlearn.configs import SHAPEWORLD, InferenceDtype, check_choices, name_value_pairs
from duo_unlearn.threads import check_thread_count

ATTACK_NAMES = ("paraphrase", "ring-a-bell", "concept-inversion", "sneakyprompt", "unlearndiffatk",
                "adaptive-inversion", "embedding-probe")
DIAGNOSTIC_ATTACKS = ("embedding-probe",)
"""Reported beside the attacks as upper bounds, never as targets (no prompt can reach them)."""


@dataclasses.dataclass
class EvalConfig:
    """Settings of `duo eval`: the ShapeWorld study, or a real model with your LoRA folders."""

    output_dir: str = "eval-output"
    """Models, attack results and report/ go here; re-running reuses what is finished."""
    betas: tuple[float, ...] = (250.0, 500.0)
    """DUO is trained at each of these β."""
    ablation_beta: float | None = None
    """Also train DUO at this β with λ = 0 (no output preservation); None skips the ablation."""
    robust_betas: tuple[float, ...] = ()
    """Also train robust DUO (``DUOConfig.adversarial_conditioning``) at each of these β."""
    adversary_per_pair: bool = True
    """Robust DUO: one adversarial conditioning per pair (see DUOConfig)."""
    adversary_init: Literal["empty", "unsafe_prompt"] = "empty"
    """Robust DUO: where each adversary starts, 'empty' or 'unsafe_prompt' (see DUOConfig)."""
    adversary_space: Literal["conditioning", "tokens"] = "conditioning"
    """Robust DUO: where the adversary searches, text hidden states or input tokens (see DUOConfig)."""
    adversary_tokens: int = 4
    """Robust DUO with adversary_space 'tokens': learned tokens per adversary."""
    shared_adversary: bool = False
    """Robust DUO: also one adversary shared by all pairs, beside the per-pair ones (see DUOConfig)."""
    adversarial_twin_weight: float = 0.0
    """Robust DUO: weight of the twin regression under the adversaries (see DUOConfig); 0 is off."""
    robust_retain_weight: float = 0.0
    """Robust DUO: weight of the retain term (see DUOConfig.retain_weight) on the base model's images
    of the seed's preserve prompts, the ones UCE is given (16 plus-sign prompts, 16 safe wordings),
    from scenes seeded apart from the metric groups' (a short caption can recur by chance: one
    wording per group on seed 1, three safe ones on seed 2; benchmarks/preserve_overlap.py measures
    what they change). 0 is off."""
    inversion_pool_every: int = 0
    """Robust DUO: every this many steps a fresh Concept Inversion against the current model joins
    a pool the preference also acts under (see DUOConfig.inversion_pool_every); 0 is off."""
    inversion_pool_steps: int = 200
    """Robust DUO with the pool: descent steps of each inversion."""
    inversion_pool_size: int = 8
    """Robust DUO with the pool: inversions kept."""
    inversion_pool_tokens: int = 1
    """Robust DUO with the pool: learned tokens per inversion."""
    inversion_pool_init_word: str = "mark"
    """Robust DUO with the pool: the word(s) each inversion starts from (see DUOConfig)."""
    inversion_pool_contrast: float = 0.0
    """Robust DUO with the pool: > 0 makes each inversion the adaptive inversion's recipe with
    this κ (see DUOConfig.inversion_pool_contrast); 0 is Concept Inversion's."""
    inversion_pool_weight: float | None = None
    """Robust DUO with the pool: weight of the preference under the pooled inversions (None:
    ``adversarial_weight``; see DUOConfig.inversion_pool_weight)."""
    inversion_pool_alternate: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Robust DUO with the pool: the second recipe every other inversion takes, e.g.
    ``{tokens: 1, init_word: mark, contrast: 0, steps: 500}`` (see DUOConfig.inversion_pool_alternate)."""
    robust_lora_target_modules: tuple[str, ...] | None = None
    """Robust DUO: the modules its LoRA adapts (None: DUOConfig's default, the attention
    projections), e.g. adding the feed-forward layers ``ff.net.0.proj`` and ``ff.net.2``."""
    adversarial_steps: int = 4
    """Robust DUO: descent steps on the adversarial conditioning per training step."""
    adversarial_weight: float = 2.0
    """Robust DUO: weight of the preference under the adversarial conditioning."""
    adversarial_beta: float | None = None
    """Robust DUO: β of that preference (None: the model's β; see DUOConfig)."""
    adversarial_objective: Literal["preference", "negative_guidance"] = "preference"
    """Robust DUO: what it asks of the model under the adversarial conditioning (see DUOConfig)."""
    negative_guidance_target: Literal["adversary", "unsafe_prompt"] = "adversary"
    """Robust DUO with 'negative_guidance': the conditioning the target reverses (see DUOConfig)."""
    robust_prompt_preference_weight: float = 0.0
    """Robust DUO: weight of the preference under the empty (or pair) prompt (see DUOConfig)."""
    baselines: tuple[str, ...] = ("esd", "uce")
    """Prompt-based baselines trained on the same model: 'esd', 'uce'."""
    attacks: tuple[str, ...] = ATTACK_NAMES
    """Attacks run against every model (all five by default)."""
    base_learning_rate: float = 5e-3
    """DUO's lr at β = 100 (lr = base·100/β): 1e-3 at β = 500, the demo's setting."""
    base_preservation_weight: float = 1e6
    """DUO's λ at β = 100 (λ = base·β/100, the paper's rule): 5e6 at β = 500, the demo's setting."""
    use_prompts: bool = True
    """Condition DUO on the pair prompts (see README: ShapeWorld needs it)."""
    prompt_dropout: float = 0.2
    """DUO's cfg_train dropout."""
    timestep_range: tuple[int, int] = (1, 1000)
    """DUO's timestep range."""
    num_pairs: int = 64
    """SDEdit pairs shared by every DUO model."""
    train_steps: int = 200
    """DUO steps per model."""
    train_batch_size: int = 8
    """Pairs per DUO step."""
    esd_steps: int = 150
    """ESD-x steps."""
    num_attack_prompts: int = 6
    """Attack prompts (or target images) per attack: the searches (SneakyPrompt, UnlearnDiffAtk) cost per prompt."""
    images_per_prompt: int = 8
    """Seeds rendered per attack prompt: 6 x 8 = 48 attack images per attack, model and seed."""
    attack_budget: int = 0
    """Effort of every attack (0: each attack's own default: Ring-A-Bell 100 generations, SneakyPrompt
    60 queries, UnlearnDiffAtk 40 iterations, the inversions and the probe 1000 steps)."""
    attack_budgets: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per-attack effort, e.g. {concept-inversion: 2000}; overrides attack_budget for those attacks."""
    sneakyprompt_confirm_seeds: int = 0
    """SneakyPrompt: fresh seeds a bypass must also pass before it ends the search (one more
    query; ``AttackConfig.confirm_seeds``); 0 ends it on the screening seeds alone."""
    num_eval_prompts: int = 64
    """Prompts per metric group (safe, unsafe, held-out, close), one image each."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One run per seed, each with its own pairs, training seed, prompts and attack seeds; the report pools them."""
    run_seeds: tuple[int, ...] = ()
    """Measure only these of ``seeds`` now (e.g. one seed per process or per session); empty: all. The
    protocol still names every seed, and the report pools whichever seeds are done."""
    num_threads: int = 2
    """CPU threads for torch (0: torch's default). Float sums split across threads round differently,
    so a CPU figure repeats bit for bit only at the same count: pinned, `make eval` gives the
    committed report on any CPU of the same kind. Each results.json records the count it ran at."""
    num_workers: int = 1
    """ShapeWorld study: processes running its tasks (a seed's pairs, each model's training, each
    model's evaluation) at once, each at ``num_threads``. Two single-thread workers get ~1.3x the
    images per second of one two-thread process on 2 cores; a task's figures are the same whichever
    worker runs it, so the count changes the wall time, not the numbers."""
    allow_mixed_protocols: bool = False
    """Put results measured under different protocols side by side anyway (the report then says so)."""
    report_only: bool = False
    """Only rewrite report/ (tables, plots, pages) from output_dir/report/results.json."""

    # --- a real model: evaluate LoRA folders you trained (duo train, any beta, ESD) against their base ---
    pretrained_model: str = SHAPEWORLD
    """'shapeworld' runs the whole study above; a pipeline folder or hub id evaluates ``models`` on it."""
    models: tuple[str, ...] = ()
    """Real model only: 'name=folder' per LoRA folder (pytorch_lora_weights.safetensors) to evaluate."""
    captions_file: str | None = None
    """Real model only: safe captions, one per line (e.g. COCO val captions), for prior preservation."""
    task_file: str | None = None
    """Real model only: the attacker's prompts and concept images (YAML, see attacks/task_file.py)."""
    detector: str = "nudenet"
    """Real model only: the concept detector ('nudenet' or one registered with register_detector)."""
    metric: str = "lpips"
    """Real model only: perceptual metric for preservation ('lpips' needs the [lpips] extra)."""
    clip_model: str | None = None
    """Real model only: a CLIP checkpoint (e.g. openai/clip-vit-large-patch14) for CLIP score on the captions."""
    reference_images_dir: str | None = None
    """Real model only, with clip_model: real images (e.g. COCO val) for FID in CLIP feature space."""
    num_inference_steps: int | None = None
    """Denoising steps of every evaluation and attack image; None: 12 on ShapeWorld (DDIM; see
    world/quality.py for the measurement), 25 on a real model."""
    guidance_scale: float = 7.5
    """Classifier-free guidance of every evaluation and attack image."""
    dtype: InferenceDtype = "fp32"
    """Real model only: inference precision: 'fp32' (default), 'bf16', or 'fp16' (GPU only; refused on a CPU)."""
    variant: str | None = None
    """Real model only: weight-file variant of a folder or hub model, e.g. 'fp16' (loads ``*.fp16.safetensors``)."""
    revision: str | None = None
    """Real model only: hub branch, tag or commit of pretrained_model."""

    def __post_init__(self) -> None:
        check_choices(self)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.run_seeds = tuple(int(s) for s in self.run_seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"EvalConfig.seeds must be distinct and non-empty, got {self.seeds}")
        if not set(self.run_seeds) <= set(self.seeds):
            raise ValueError(f"EvalConfig.run_seeds {self.run_seeds} must be among seeds {self.seeds}")
        self.inversion_pool_alternate = pool_recipe_overrides(self.inversion_pool_alternate, "EvalConfig")
        self.attack_budgets = name_value_pairs(self.attack_budgets, "EvalConfig.attack_budgets")
        try:
            self.attack_budgets = {str(k): int(v) for k, v in dict(self.attack_budgets).items()}
        except ValueError as err:
            raise ValueError(f"EvalConfig.attack_budgets: whole numbers, got {self.attack_budgets}") from err
        unknown = sorted((set(self.attacks) | set(self.attack_budgets)) - set(ATTACK_NAMES))
        if unknown:
            raise ValueError(f"EvalConfig.attacks: unknown {unknown}; choose from {list(ATTACK_NAMES)}")
        # the study builds DUOConfig only at training time: check its settings here, before any model loads
        if self.adversarial_beta is not None and self.adversarial_beta <= 0:
            raise ValueError(f"EvalConfig.adversarial_beta must be positive (or null), got {self.adversarial_beta}")
        if self.adversary_init == "unsafe_prompt" and not self.adversary_per_pair:
            raise ValueError("EvalConfig.adversary_init='unsafe_prompt' needs adversary_per_pair: true")
        if self.negative_guidance_target != "adversary" and self.adversarial_objective != "negative_guidance":
            raise ValueError("EvalConfig.negative_guidance_target is used only with "
                             "adversarial_objective: negative_guidance")
        if self.shared_adversary and not (self.adversary_per_pair and self.adversarial_objective == "preference"):
            raise ValueError("EvalConfig.shared_adversary adds a shared adversary beside per-pair ones: it needs "
                             "adversary_per_pair: true and adversarial_objective: preference")
        if self.adversarial_twin_weight > 0 and self.adversarial_objective != "preference":
            raise ValueError("EvalConfig.adversarial_twin_weight needs adversarial_objective: preference")
        for name in ("adversarial_weight", "robust_prompt_preference_weight", "prompt_dropout",
                     "adversarial_twin_weight", "robust_retain_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"EvalConfig.{name} must be >= 0, got {getattr(self, name)}")
        if any(b <= 0 for b in (*self.betas, *self.robust_betas)):
            raise ValueError(f"EvalConfig.betas and robust_betas must be positive, "
                             f"got {self.betas} and {self.robust_betas}")
        check_thread_count(self.num_threads, "EvalConfig.num_threads")
        if self.num_workers < 1:
            raise ValueError(f"EvalConfig.num_workers must be >= 1, got {self.num_workers}")
        if self.sneakyprompt_confirm_seeds < 0:
            raise ValueError("EvalConfig.sneakyprompt_confirm_seeds must be >= 0, "
                             f"got {self.sneakyprompt_confirm_seeds}")
        if self.inversion_pool_weight is not None and self.inversion_pool_weight < 0:
            raise ValueError(f"EvalConfig.inversion_pool_weight must be >= 0 (or null: adversarial_weight), "
                             f"got {self.inversion_pool_weight}")
        if self.inversion_pool_size <= 0:
            raise ValueError(f"EvalConfig.inversion_pool_size must be positive, got {self.inversion_pool_size}")
        recipe = InversionRecipe(self.inversion_pool_steps, self.inversion_pool_tokens, DUOConfig.inversion_pool_lr,
                                 self.inversion_pool_init_word, self.inversion_pool_contrast)
        check_pool_recipe(recipe, "EvalConfig")
        check_pool_recipe(dataclasses.replace(recipe, **self.inversion_pool_alternate), "EvalConfig", alternate=True)
        if self.inversion_pool_every < 0 or (self.inversion_pool_every and self.adversarial_objective != "preference"):
            raise ValueError("EvalConfig.inversion_pool_every must be >= 0 (0: off), and needs adversarial_objective: "
                             "preference")
        for name in ("adversary_tokens", "num_attack_prompts", "images_per_prompt", "num_eval_prompts", "num_pairs",
                     "train_steps", "train_batch_size", "esd_steps", "adversarial_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"EvalConfig.{name} must be positive, got {getattr(self, name)}")

    def budget_of(self, attack: str) -> int:
        """The effort spent on ``attack`` (0 means the attack's own default)."""
        return self.attack_budgets.get(attack, self.attack_budget)

    def resolved_budget(self, attack: str) -> int:
        """The effort actually spent on ``attack``: ``budget_of`` or, for 0, the attack's own default.
        The protocol records this number, so a changed default changes the protocol's hash."""
        from duo_unlearn.attacks.methods import DEFAULT_BUDGETS

        return self.budget_of(attack) or DEFAULT_BUDGETS.get(attack, 0)

    def attack_options(self, attack: str) -> dict:
        """Attack-specific settings beyond the budget, as ``AttackConfig`` fields; only those set,
        so protocols and cached results from before an option existed stay the same."""
        if attack == "sneakyprompt" and self.sneakyprompt_confirm_seeds:
            return {"confirm_seeds": self.sneakyprompt_confirm_seeds}
        return {}

    def resolved_inference_steps(self) -> int:
        if self.num_inference_steps is not None:
            return self.num_inference_steps
        if self.pretrained_model == SHAPEWORLD:
            from duo_unlearn.world.quality import NUM_INFERENCE_STEPS

            return NUM_INFERENCE_STEPS
        return 25

    def report_title(self) -> str:
        model = "ShapeWorld" if self.pretrained_model == SHAPEWORLD else self.pretrained_model
        return f"duo-unlearn evaluation ({model})"

