"""`DUOConfig`: every setting of `duo train`, documented once, validated on creation.

The defaults are the DUO paper's settings for nudity on Stable Diffusion 1.4 (with the
issue's choice of LoRA on all attention projections; the authors' self-attention-only
setting is ``lora_target_modules: [attn1.to_q, attn1.to_k, attn1.to_v, attn1.to_out.0]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from duo_unlearn.configs import check_choices, name_value_pairs


@dataclasses.dataclass
class DUOConfig:
    """Settings of `duo train` (DUO, and the ESD baseline through ``method``)."""

    # --- data and model ---
    pretrained_model: str = "shapeworld"
    """'shapeworld', a local diffusers pipeline folder, or a hub id."""
    pairs_dir: str = "duo-pairs"
    """Pair dataset made by `duo pairs` (ignored by ESD, which needs only the concept prompt)."""
    output_dir: str = "duo-output"
    """Where LoRA weights, checkpoints, the resolved config, the model card and logs go."""
    method: Literal["duo", "esd", "uce"] = "duo"
    """'duo' (this paper), or a baseline: 'esd' (Gandikota et al. 2023) or 'uce' (Gandikota et al. 2024)."""
    resolution: int | None = None
    """Training image size; default: the pipeline's native size."""

    # --- the preference objective ---
    beta: float = 500.0
    """DPO temperature: higher forgets harder and moves further from the base model
    (paper: 250-1000; no 0.5 factor, unlike the Diffusion-DPO paper's beta)."""
    base_learning_rate: float = 3e-4
    """Learning rate at beta = 100; the actual one is base_learning_rate * 100 / beta, because
    the DPO gradient grows with beta and this keeps the step size constant."""
    learning_rate: float | None = None
    """Set to bypass the rescaling rule above."""
    base_preservation_weight: float = 1e6
    """λ at beta = 100; the actual λ is base_preservation_weight * beta / 100, so the
    regulariser keeps its share of the gradient as beta changes."""
    preservation_weight: float | None = None
    """λ of the output-preserving regulariser; set to bypass the rescaling (0 disables it)."""
    timestep_range: tuple[int, int] = (1, 750)
    """Timesteps are drawn uniformly from [low, high) of the 1000-step training grid."""
    pair_timestep: Literal["shared", "independent"] = "shared"
    """'shared': one timestep per pair, as in Diffusion-DPO; 'independent': one per image, as in
    the DUO authors' code. The noise sample is shared either way."""
    use_prompts: bool = False
    """Condition on the pairs' prompts; by default prompts are empty so the *visual* concept is
    removed whatever the prompt says."""
    prompt_dropout: float = 0.0
    """With use_prompts, share of prompts replaced by the empty one (authors' cfg_train: 0.2)."""

    # --- robust DUO: the preference also under an adversarial conditioning ---
    adversarial_conditioning: bool = False
    """Robust DUO. Besides the empty (or pair) prompt, apply the preference under the conditioning
    with which the *current* model best reproduces the unsafe images: a sequence of text hidden
    states, kept across steps and moved by ``adversarial_steps`` descent steps on the model's
    denoising error of the batch's unsafe images before every update (a persistent white-box
    adversary, as in adversarial training). The attacks that learn embeddings against the
    unlearned model look for exactly that conditioning; training under it leaves them nothing
    to find. Found from the images alone: no prompt is needed."""
    adversary_per_pair: bool = False
    """Robust DUO: one adversarial conditioning per pair (each moved when its pair is drawn), instead
    of one shared by all: many conditionings, each reproducing its own unsafe image, cover more of
    the ways the concept can be asked for."""
    shared_adversary: bool = False
    """Robust DUO with ``adversary_per_pair``: also one adversary shared by all pairs, moved on every
    batch, with its own preference term (same β and ``adversarial_weight``). The per-pair
    adversaries each reproduce one image; the attacks that break robust DUO (the conditioning-space
    probe, Concept Inversion) learn *one* conditioning for all concept images and run for
    hundreds of steps. The shared adversary is that attack, run alongside training: it takes
    ``adversarial_steps`` steps per training step (800 in 200 steps), always against the current
    model. It starts at the empty prompt (the filler tokens in token space), as the probe does."""
    inversion_pool_every: int = 0
    """Robust DUO: every this many steps, run a fresh Concept Inversion against the current model
    and add its token to a pool; every step then also applies the preference (the adversary's β
    and ``inversion_pool_weight``) under a pool token placed after each pair's *safe* caption, as
    the attack's prompts place it ("<caption> <concept>"). The persistent adversaries are moved a
    few steps at a time from where they were; the attack instead starts afresh from a word and
    descends hundreds of steps, and lands where they never went. The pool is that attack, its
    last ``inversion_pool_size`` results kept so the model does not unlearn the earlier ones
    (AdvUnlearn's fresh attacks, with memory). Every process runs the same inversion on the same
    draws. 0 is off. One text encoder (SD 1.x/2.x, ShapeWorld)."""
    inversion_pool_steps: int = 200
    """Descent steps of each fresh inversion (batches of ``train_batch_size`` unsafe images, any
    timestep, AdamW at ``inversion_pool_lr``: the attack's optimiser)."""
    inversion_pool_size: int = 8
    """Inversions kept in the pool (the oldest leaves first)."""
    inversion_pool_tokens: int = 1
    """Learned tokens per inversion (Concept Inversion's: 1)."""
    inversion_pool_lr: float = 5e-3
    """Learning rate of each inversion (Concept Inversion's)."""
    inversion_pool_init_word: str = "mark"
    """The word(s), space-separated, whose input embeddings every inversion starts from, cycled
    over its tokens (Concept Inversion's: 'mark'; the adaptive inversion's: the concept's words,
    e.g. "black crossed ed marked x" on ShapeWorld)."""
    inversion_pool_contrast: float = 0.0
    """With > 0, each pool inversion is the adaptive inversion's recipe instead of Concept
    Inversion's: it descends ``losses.inversion_contrast_loss`` with this κ (the adaptive attack's
    100), the error on the unsafe images plus the reverse of DUO's preference against each pair's
    safe image on the same noise and timestep, so the pool holds conditionings under which the
    model prefers the unsafe image to its twin, the preference DUO removed. Pair it with the
    adaptive attack's capacity: ``inversion_pool_tokens`` 4 and the concept's words as
    ``inversion_pool_init_word``. Each inversion step then denoises twice the rows. 0: off."""
    inversion_pool_weight: float | None = None
    """Weight of the preference under the pooled inversions (None: ``adversarial_weight``, which
    the per-pair adversaries also take). The pool is the term whose gain under the inversions is
    established; a weight of its own pushes harder where the attacks land without pushing harder
    under the persistent adversaries too."""
    inversion_pool_alternate: dict[str, Any] = dataclasses.field(default_factory=dict)
    """A second inversion recipe, taken by every other pool inversion (the 2nd, 4th...): the pool
    settings above with these replaced, by their short names ``steps``, ``tokens``, ``lr``,
    ``init_word``, ``contrast`` (on the command line ``NAME=VALUE`` pairs). A pool trained under
    one attack's recipe holds best against that attack; alternating Concept Inversion's recipe
    (1 token at 'mark') with the adaptive inversion's (4 tokens at the concept's words,
    ``contrast`` 100) keeps both kinds in the pool. Empty: every inversion takes the one recipe."""
    adversary_init: Literal["empty", "unsafe_prompt"] = "empty"
    """Where the adversarial conditioning starts: the empty prompt's encoding, or (with
    ``adversary_per_pair``) each pair's unsafe prompt's, the sentence-shaped region with the
    concept named where the text attacks and the inversions' ``<concept>`` prompts search."""
    adversary_space: Literal["conditioning", "tokens"] = "conditioning"
    """Where the adversary searches: 'conditioning', the text hidden states the denoiser attends to
    (free, beyond what any prompt reaches); or 'tokens', ``adversary_tokens`` input-token vectors
    per adversary passed through the frozen text encoder, the geometry in which Concept Inversion
    and the adaptive inversion search (SD 1.x/2.x and ShapeWorld: one text encoder). Token
    adversaries start at the filler prompt "a a a a" ('empty') or at the first tokens of their
    pair's unsafe prompt ('unsafe_prompt')."""
    adversary_tokens: int = 4
    """Token-space adversary: learned tokens per adversary (the adaptive inversion uses 4)."""
    adversarial_steps: int = 2
    """Descent steps on the adversarial conditioning per training step (each one forward and
    backward of the denoiser on the unsafe half of the batch)."""
    adversarial_lr: float = 1e-2
    """Adam learning rate of the adversarial conditioning."""
    adversarial_weight: float = 1.0
    """Weight of the preference term under the adversarial conditioning."""
    adversarial_beta: float | None = None
    """β of the preference under the adversarial conditioning (None: ``beta``). The preference
    saturates once the gap passes about 1/β; a smaller β keeps pushing the unsafe images' error
    up under the adversary after the larger β would have stopped."""
    adversarial_twin_weight: float = 0.0
    """Robust DUO: weight of a second term under each adversarial conditioning, the clean latent
    the model infers from each noised unsafe image pulled onto its safe twin (``losses.
    twin_regression_loss``, min-SNR-1 weights). The preference is met, and stops pushing, once
    the unsafe image is denoised a little worse than its twin (at β 500, after ~20-60 steps on
    ShapeWorld), which a longer inversion then undoes; this term keeps pulling until the model,
    under the conditioning that best asks for the concept, draws the twin. 0 turns it off."""
    adversarial_objective: Literal["preference", "negative_guidance"] = "preference"
    """What robust DUO asks of the model under the adversarial conditioning: 'preference', DUO's
    (prefer the safe twin to the unsafe image); or 'negative_guidance', an absolute target that
    cannot saturate: on the noised unsafe image, the reference's unconditional prediction pushed
    away from what the adversary makes it predict, ε_ref(x, ∅) − η·(ε_ref(x, c_adv) − ε_ref(x, ∅))
    with η = ``esd_eta`` (ESD's target, here on the unsafe images instead of a concept prompt's
    samples), weighted by ``adversarial_weight``; ``negative_guidance_target`` chooses c."""
    negative_guidance_target: Literal["adversary", "unsafe_prompt"] = "adversary"
    """With 'negative_guidance', the conditioning c whose pull the target reverses: 'adversary',
    the adversarial conditioning itself (the reference's prediction there moves with the adversary,
    which drives it where the reference was never trained: measured unstable, README), or
    'unsafe_prompt', each pair's unsafe prompt, as AdvUnlearn keeps the concept prompt in ESD's
    target while the adversary only changes the model's input: a target the adversary cannot move."""
    retain_prompts: tuple[str, ...] = ()
    """Prompts of what must not change: the close concept (beside nudity, 'a person in a swimsuit';
    on ShapeWorld, the plus sign) and ordinary scenes. The base model draws each once per
    ``retain_images_per_prompt`` seed at setup, before any adapter exists; every step a batch of
    those images, noised at any timestep, must be predicted under its prompt as the frozen
    reference predicts it (``retain_weight``). The paper's regulariser holds only pure noise under
    the empty prompt; this holds the prompted paths a strong unlearning drags along (robust DUO
    pushed hard loses plus signs with the X: README). Needs no data: the images are the base
    model's own, written to ``output_dir/retain_images.png`` for inspection."""
    retain_weight: float = 0.0
    """Weight of the retain term, mean squared difference between the model's and the reference's
    predictions on the noised retain images (0: off, the paper's recipe)."""
    retain_images_per_prompt: int = 1
    """Seeds per retain prompt."""
    retain_num_inference_steps: int = 25
    """Sampler steps of the base model's retain images (guidance 7.5, the pipeline's scheduler)."""
    prompt_preference_weight: float = 1.0
    """Weight of the preference term under the empty (or pair) prompt. With adversarial
    conditioning it may be 0: the preference then acts only where the model draws the concept,
    and the empty prompt's path is held by the regulariser alone (see README: pushing that path
    away from the concept is what classifier-free guidance turns back into the concept)."""

    # --- ESD baseline (method = 'esd') ---
    esd_concept_prompt: str = "a shape with a black x over it"
    """The concept to erase, as text."""
    esd_eta: float = 1.0
    """Negative guidance strength η."""
    esd_variant: Literal["x", "u"] = "x"
    """'x': train cross-attention only (ESD-x); 'u': everything but cross-attention (ESD-u)."""
    esd_sampling_steps: int = 50
    """DDIM steps of the frozen model's partial sampling that makes ESD's x_t (the authors': 50)."""

    # --- UCE baseline (method = 'uce'; closed form, no training loop) ---
    uce_erase_prompts: tuple[str, ...] = ("a shape with a black x over it",)
    """Prompts carrying the concept."""
    uce_target_prompts: tuple[str, ...] = ("a shape",)
    """Their safe counterparts, one per erase prompt."""
    uce_preserve_prompts: tuple[str, ...] = ()
    """Prompts whose cross-attention keys and values must not move."""
    uce_lambda: float = 0.5
    """Ridge weight keeping the edited projections near the originals."""

    # --- LoRA ---
    lora_rank: int = 32
    """LoRA rank r (the paper: 32)."""
    lora_alpha: float = 32.0
    """LoRA scale numerator: the update is scaled by alpha / rank."""
    lora_target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    """Module name suffixes that get adapters (all attention projections by default)."""

    # --- optimisation ---
    max_train_steps: int = 1000
    """Optimiser steps (the paper: 1000 for nudity, 500 for violence)."""
    train_batch_size: int = 4
    """Pairs per step (per process)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches summed into each optimiser step."""
    adam_weight_decay: float = 1e-2
    """AdamW weight decay on the LoRA parameters."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    lr_scheduler: str = "constant_with_warmup"
    """A diffusers schedule (``diffusers.optimization.get_scheduler``: 'constant',
    'constant_with_warmup', 'linear', 'cosine', ...); the paper: constant."""
    lr_warmup_steps: int = 0
    """Warm-up length in optimiser steps, whatever the number of processes."""
    seed: int = 0
    """Seeds data order, noise and timesteps. Every process draws the global batch from this
    seed and trains on its own rows, so N processes x batch b see the samples of one process
    x batch N*b (torch's global RNG, for dropout, is seeded per process)."""
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    """'no', 'fp16' or 'bf16': frozen weights in that dtype, LoRA parameters in float32.
    None: what accelerate resolves (``accelerate launch --mixed_precision``, else 'no');
    duo_config.yaml records the value used."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in the denoiser's backward pass."""

    # --- checkpoints, validation, logging ---
    checkpointing_steps: int = 250
    """Save a resumable checkpoint every N steps (0: only at the end)."""
    checkpoints_total_limit: int | None = 2
    """Keep only the newest N checkpoints."""
    resume_from_checkpoint: str | None = None
    """A checkpoint folder, or 'latest' for the newest in output_dir."""
    validation_prompts: tuple[str, ...] = ()
    """Prompts for validation grids; the same seeds every time, so grids compare."""
    validation_steps: int = 0
    """Write a validation grid every N steps (0: never)."""
    num_validation_images: int = 4
    """Seeds per validation prompt."""
    report_to: str = "none"
    """accelerate tracker ('tensorboard', 'wandb', ...) besides metrics.jsonl, or 'none'; metrics and
    validation grids go to it."""
    tracker_project_name: str = "duo-unlearn"
    """Project (run group) name given to the tracker."""
    merge: bool = False
    """Also write a full pipeline folder with the LoRA fused in (output_dir/merged)."""

    # --- sharing ---
    push_to_hub: bool = False
    """Upload output_dir (LoRA, adapter config, model card, settings, summaries; no checkpoints) to the
    Hugging Face hub when training ends."""
    hub_model_id: str | None = None
    """Hub repository 'user/name'; default: the output folder's name under your account."""
    hub_private: bool = False
    """Create the hub repository as private."""

    def __post_init__(self) -> None:
        self.inversion_pool_alternate = pool_recipe_overrides(self.inversion_pool_alternate, "DUOConfig")
        self.timestep_range = tuple(int(t) for t in self.timestep_range)
        self.lora_target_modules = tuple(self.lora_target_modules)
        self.validation_prompts = tuple(self.validation_prompts)
        self.uce_erase_prompts = tuple(self.uce_erase_prompts)
        self.uce_target_prompts = tuple(self.uce_target_prompts)
        self.uce_preserve_prompts = tuple(self.uce_preserve_prompts)
        self.retain_prompts = tuple(self.retain_prompts)
        check_choices(self)
        if self.beta <= 0:
            raise ValueError(f"DUOConfig.beta must be positive, got {self.beta}")
        low, high = self.timestep_range if len(self.timestep_range) == 2 else (None, None)
        if low is None or not 0 <= low < high <= 1000:
            raise ValueError(f"DUOConfig.timestep_range must be (low, high) with 0 <= low < high <= 1000, "
                             f"got {self.timestep_range}")
        from diffusers.optimization import SchedulerType

        if self.lr_scheduler not in {s.value for s in SchedulerType}:
            raise ValueError(f"DUOConfig.lr_scheduler must be one of {sorted(s.value for s in SchedulerType)}, "
                             f"got {self.lr_scheduler!r}")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"DUOConfig.lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "lora_rank",
                     "esd_sampling_steps", "adversarial_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DUOConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"DUOConfig.prompt_dropout must be in [0, 1), got {self.prompt_dropout}")
        if self.adversarial_lr <= 0 or self.adversarial_weight < 0 or self.prompt_preference_weight < 0:
            raise ValueError("DUOConfig.adversarial_lr must be positive, adversarial_weight and "
                             "prompt_preference_weight >= 0")
        if self.adversarial_beta is not None and self.adversarial_beta <= 0:
            raise ValueError(f"DUOConfig.adversarial_beta must be positive (or null: beta), "
                             f"got {self.adversarial_beta}")
        if self.adversary_init == "unsafe_prompt" and not self.adversary_per_pair:
            raise ValueError("DUOConfig.adversary_init='unsafe_prompt' needs adversary_per_pair: true "
                             "(each pair's adversary starts at its own prompt)")
        if self.negative_guidance_target != "adversary" and self.adversarial_objective != "negative_guidance":
            raise ValueError("DUOConfig.negative_guidance_target is used only with "
                             "adversarial_objective: negative_guidance")
        if self.shared_adversary and not (self.adversarial_conditioning and self.adversary_per_pair
                                          and self.adversarial_objective == "preference"):
            raise ValueError("DUOConfig.shared_adversary adds a shared adversary beside per-pair ones: it needs "
                             "adversarial_conditioning: true, adversary_per_pair: true and "
                             "adversarial_objective: preference")
        if self.adversarial_twin_weight < 0:
            raise ValueError(f"DUOConfig.adversarial_twin_weight must be >= 0, got {self.adversarial_twin_weight}")
        if self.adversarial_twin_weight > 0 and not (self.adversarial_conditioning
                                                     and self.adversarial_objective == "preference"):
            raise ValueError("DUOConfig.adversarial_twin_weight acts under the adversarial conditioning: it needs "
                             "adversarial_conditioning: true and adversarial_objective: preference")
        if self.inversion_pool_every < 0:
            raise ValueError(f"DUOConfig.inversion_pool_every must be >= 0 (0: off), got {self.inversion_pool_every}")
        if self.inversion_pool_every > 0:
            if not (self.adversarial_conditioning and self.adversarial_objective == "preference"):
                raise ValueError("DUOConfig.inversion_pool_every adds the preference under pooled inversions to "
                                 "robust DUO: it needs adversarial_conditioning: true and adversarial_objective: "
                                 "preference")
            if self.inversion_pool_size <= 0:
                raise ValueError(f"DUOConfig.inversion_pool_size must be positive, got {self.inversion_pool_size}")
            for k in (0, 1):
                check_pool_recipe(self.inversion_pool_recipe(k), "DUOConfig", alternate=k == 1)
        if self.inversion_pool_weight is not None and self.inversion_pool_weight < 0:
            raise ValueError(f"DUOConfig.inversion_pool_weight must be >= 0 (or null: adversarial_weight), "
                             f"got {self.inversion_pool_weight}")
        if self.inversion_pool_contrast < 0:
            raise ValueError("DUOConfig.inversion_pool_contrast must be >= 0 (0: off), "
                             f"got {self.inversion_pool_contrast}")
        if self.adversary_tokens <= 0:
            raise ValueError(f"DUOConfig.adversary_tokens must be positive, got {self.adversary_tokens}")
        if self.retain_weight < 0:
            raise ValueError(f"DUOConfig.retain_weight must be >= 0, got {self.retain_weight}")
        if self.retain_weight > 0 and not self.retain_prompts:
            raise ValueError("DUOConfig.retain_weight > 0 needs retain_prompts: the prompts whose images must "
                             "not change")
        if self.retain_weight > 0 and self.method != "duo":
            raise ValueError(f"DUOConfig.retain_weight is a term of DUO's loss; method {self.method!r} has none")
        for name in ("retain_images_per_prompt", "retain_num_inference_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DUOConfig.{name} must be positive, got {getattr(self, name)}")
        if self.preservation_weight is not None and self.preservation_weight < 0:
            raise ValueError("DUOConfig.preservation_weight must be >= 0")

    def inversion_pool_recipe(self, k: int) -> InversionRecipe:
        """The recipe of the pool's k-th inversion (k from 0): the pool settings, with
        ``inversion_pool_alternate``'s replacements when k is odd."""
        recipe = InversionRecipe(self.inversion_pool_steps, self.inversion_pool_tokens, self.inversion_pool_lr,
                                 self.inversion_pool_init_word, self.inversion_pool_contrast)
        return dataclasses.replace(recipe, **self.inversion_pool_alternate) if k % 2 else recipe

    @property
    def resolved_learning_rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else self.base_learning_rate * 100 / self.beta

    @property
    def resolved_inversion_pool_weight(self) -> float:
        return self.adversarial_weight if self.inversion_pool_weight is None else self.inversion_pool_weight

    @property
    def resolved_preservation_weight(self) -> float:
        if self.preservation_weight is not None:
            return self.preservation_weight
        return self.base_preservation_weight * self.beta / 100


@dataclasses.dataclass(frozen=True)
class InversionRecipe:
    """How one of the pool's inversions runs (``DUOConfig.inversion_pool_*``)."""

    steps: int
    tokens: int
    lr: float
    init_word: str
    contrast: float


def pool_recipe_overrides(value, owner: str) -> dict[str, Any]:
    """``inversion_pool_alternate`` checked and typed: a mapping (YAML) or ``NAME=VALUE`` strings
    (the command line) of InversionRecipe's fields; an unknown name or a bad value is named."""
    value = name_value_pairs(value, f"{owner}.inversion_pool_alternate")
    if not isinstance(value, dict):
        raise ValueError(f"{owner}.inversion_pool_alternate must be a mapping of recipe settings, got {value!r}")
    types = {f.name: f.type for f in dataclasses.fields(InversionRecipe)}
    unknown = sorted(set(value) - set(types))
    if unknown:
        raise ValueError(f"{owner}.inversion_pool_alternate: unknown settings {unknown}; "
                         f"choose from {sorted(types)}")
    convert = {"int": int, "float": float, "str": str}
    typed = {}
    for name, v in value.items():
        try:
            typed[name] = convert[types[name]](v)
            if types[name] == "int" and str(typed[name]) != str(v).strip():
                raise ValueError
        except (TypeError, ValueError) as err:
            raise ValueError(f"{owner}.inversion_pool_alternate: {name} must be {types[name]}, got {v!r}") from err
    return typed


def check_pool_recipe(recipe: InversionRecipe, owner: str, alternate: bool = False) -> None:
    """A pool inversion's recipe is one that can run: positive steps, tokens and rate, a start
    word, κ >= 0; the error names the option (and says when it came from the alternate recipe)."""
    where = " (in inversion_pool_alternate)" if alternate else ""
    for name in ("steps", "tokens", "lr"):
        if getattr(recipe, name) <= 0:
            raise ValueError(f"{owner}.inversion_pool_{name} must be positive{where}, got {getattr(recipe, name)}")
    if not recipe.init_word.strip():
        raise ValueError(f"{owner}.inversion_pool_init_word must be a word{where}")
    if recipe.contrast < 0:
        raise ValueError(f"{owner}.inversion_pool_contrast must be >= 0 (0: off){where}, got {recipe.contrast}")
