"""Every input of a command, checked before any model loads.

Loading Stable Diffusion takes minutes and gigabytes; a mistyped folder, a missing extra or
a ShapeWorld-only run given real-model options should not cost that. Each ``check_*`` reads
files and metadata only (no weights), writes nothing, raises one error that names the file
or option and the fix, and warns about every setting the chosen mode ignores. The CLI calls
them before importing the heavy modules; the library entry points (``train``, ``make_pairs``,
``run_attack``) call them again first thing, for notebook users. A config's warnings print once.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import weakref
from pathlib import Path

from duo_unlearn.configs import field_default

logger = logging.getLogger(__name__)

# accelerate tracker name -> the module it needs
TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "comet_ml": "comet_ml", "aim": "aim",
                   "mlflow": "mlflow", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab",
                   "trackio": "trackio"}

# settings of `duo eval` that only a real model uses; on ShapeWorld the study makes its own
EVAL_REAL_MODEL_ONLY = ("models", "captions_file", "task_file", "detector", "metric", "clip_model",
                        "reference_images_dir", "dtype", "variant", "revision")
# settings of the ShapeWorld study that a real-model evaluation (which trains nothing) ignores
EVAL_SHAPEWORLD_ONLY = ("betas", "ablation_beta", "baselines", "base_learning_rate", "base_preservation_weight",
                        "use_prompts", "prompt_dropout", "timestep_range", "num_pairs", "train_steps",
                        "train_batch_size", "esd_steps")

# settings of `duo train` that only one method reads
_DUO_ONLY = ("pairs_dir", "base_preservation_weight", "preservation_weight", "pair_timestep", "use_prompts",
             "retain_prompts", "retain_images_per_prompt", "retain_num_inference_steps",
             "prompt_dropout", "resolution")
_ESD_ONLY = ("esd_concept_prompt", "esd_eta", "esd_variant")
_UCE_ONLY = ("uce_erase_prompts", "uce_target_prompts", "uce_preserve_prompts", "uce_lambda")
_UCE_READS = ("pretrained_model", "output_dir", "method", "merge", "push_to_hub", "hub_model_id", "hub_private",
              *_UCE_ONLY)


class MissingExtraError(ImportError):
    """An optional package a chosen setting needs is not installed."""


def require_extra(module: str, extra: str, purpose: str = "") -> None:
    """Raise, naming the fix, when ``module`` (from the ``duo-unlearn[extra]`` extra) is missing."""
    _require_package(module, f'"duo-unlearn[{extra}]"', purpose)


def _require_package(module: str, install: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"{purpose or module} needs the {module!r} package: pip install {install}")


def _error(option: str, message: str) -> ValueError:
    return ValueError(f"{option}: {message}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_warned: list[weakref.ref] = []


def _warn(cfg, messages: list[str]) -> None:
    """Log each warning, once per config object (the CLI and the entry point both check)."""
    if any(ref() is cfg for ref in _warned):
        return
    _warned[:] = [ref for ref in _warned if ref() is not None] + [weakref.ref(cfg)]
    for message in messages:
        logger.warning(message)


def changed_fields(cfg) -> list[str]:
    """Fields set away from their default: what a user asked for explicitly (flag, YAML or code)."""
    return [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != field_default(f)]


def ignored_settings(cfg, ignored: tuple[str, ...], why: str) -> list[str]:
    return [f"{_flag(name)} is ignored {why}" for name in changed_fields(cfg) if name in ignored]


# ---------------------------------------------------------------------------- shared checks
def check_model_source(name: str, option: str = "--pretrained-model") -> None:
    """'shapeworld', a diffusers pipeline folder (model_index.json) or a well-formed hub id."""
    from duo_unlearn.lora import LORA_WEIGHTS_NAME
    from duo_unlearn.pipelines import SHAPEWORLD

    if name == SHAPEWORLD:
        return
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise _error(option, f"{path} is a file; a pipeline is a folder with model_index.json")
        if not (path / "model_index.json").is_file():
            hint = ""
            if (path / LORA_WEIGHTS_NAME).is_file():
                hint = " (it holds LoRA weights: give its base pipeline here and the folder to --lora)"
            raise _error(option, f"{path} is not a diffusers pipeline folder: no model_index.json{hint}")
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        raise _error(option, f"folder {path} not found")
    try:
        validate_repo_id(name)
    except HFValidationError as err:
        raise _error(option, f"{name!r} is neither a folder nor a hub id ({err})") from None


def check_output_dir(folder: str, option: str = "--output-dir") -> None:
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise _error(option, f"{path} is a file, not a folder")


def check_pair_folder(folder: str, option: str = "--pairs-dir") -> None:
    """A `duo pairs` output: metadata.jsonl listing kept pairs whose images exist."""
    from duo_unlearn.io import read_jsonl

    path = Path(folder)
    meta = path / "metadata.jsonl"
    if not path.is_dir():
        raise _error(option, f"pair folder {path} not found (make one with `duo pairs`)")
    if not meta.is_file():
        raise _error(option, f"{path} is not a pair dataset: no metadata.jsonl (make one with `duo pairs`)")
    kept = [r for r in read_jsonl(meta) if r.get("kept", True)]
    if not kept:
        raise _error(option, f"{meta} lists no kept pairs")
    for record in kept:
        for key in ("unsafe_image", "safe_image"):
            if not record.get(key):
                raise _error(option, f"{meta}: pair {record.get('index')} has no {key}")
            if not (path / record[key]).is_file():
                raise _error(option, f"{meta}: pair {record.get('index')}'s {key} {path / record[key]} is missing")


def check_lora_folder(folder: str, option: str) -> None:
    from duo_unlearn.lora import LORA_WEIGHTS_NAME

    path = Path(folder)
    if not (path / LORA_WEIGHTS_NAME).is_file():
        what = "not found" if not path.exists() else f"has no {LORA_WEIGHTS_NAME} (a `duo train` output)"
        raise _error(option, f"{path} {what}")


def check_image_folder(folder: str, option: str, minimum: int = 1) -> None:
    from duo_unlearn.io import IMAGE_SUFFIXES, image_files

    path = Path(folder)
    if not path.is_dir():
        raise _error(option, f"folder {path} not found")
    if len(image_files(path)) < minimum:
        raise _error(option, f"{path} holds fewer than {minimum} images ({', '.join(IMAGE_SUFFIXES)})")


def check_task_file(path: str, option: str = "--task-file", needs_twins: bool = False) -> None:
    """Read the whole task (prompts, prompt files, concept images at a token size); with
    ``needs_twins`` (the adaptive inversion), it must name its safe twins."""
    from duo_unlearn.attacks.task_file import load_task

    if not Path(path).is_file():
        raise _error(option, f"task file {path} not found")
    task = load_task(path, image_size=8)  # its errors already name the file and the field
    if needs_twins and not task.safe_twins:
        raise _error(option, f"{path}: adaptive-inversion needs safe_twins_dir (each concept image without the "
                             "concept, e.g. the safe/ folder `duo pairs` writes)")


def check_detector(name: str, option: str = "--detector") -> None:
    from duo_unlearn.detectors import registered_detectors

    if name not in registered_detectors():
        raise _error(option, f"unknown detector {name!r}; registered: {registered_detectors()}")
    if name == "nudenet":
        require_extra("nudenet", "nudenet", f"{option} nudenet")


def check_trackers(report_to: str, option: str = "--report-to") -> None:
    if report_to in ("none", ""):
        return
    names = list(TRACKER_MODULES) if report_to == "all" else [n.strip() for n in report_to.split(",")]
    for name in names:
        if name not in TRACKER_MODULES:
            raise _error(option, f"unknown tracker {name!r}; one of {sorted(TRACKER_MODULES)}, 'all' or 'none'")
        if report_to != "all":
            _require_package(TRACKER_MODULES[name], TRACKER_MODULES[name], f"{option} {name}")


def parse_models(specs) -> list[tuple[str, Path]]:
    """`duo eval --models name=folder ...`: names unique (not 'base'), each folder a LoRA."""
    models: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise _error("--models", f"takes 'name=folder' entries, got {spec!r}")
        if name == "base" or name in dict(models):
            raise _error("--models", f"model name {name!r} is reserved or given twice")
        check_lora_folder(folder, f"--models {name}")
        models.append((name, Path(folder)))
    return models


# ---------------------------------------------------------------------------- one per command
def check_train(cfg, *, load_model: bool = True, load_pairs: bool = True) -> None:
    """`duo train` / ``trainer.train``; ``load_*=False`` when the caller passes the pipe or dataset."""
    if load_model:
        check_model_source(cfg.pretrained_model)
    check_output_dir(cfg.output_dir)
    if cfg.method == "duo" and load_pairs:
        check_pair_folder(cfg.pairs_dir)
    if cfg.method != "uce":
        check_trackers(cfg.report_to)
        if cfg.resume_from_checkpoint == "latest":
            found = [p for p in Path(cfg.output_dir).glob("checkpoint-*") if p.name[11:].isdigit()]
            if not found:
                raise _error("--resume-from-checkpoint", f"'latest' but {cfg.output_dir} has no checkpoint-N folder")
        elif cfg.resume_from_checkpoint and not (Path(cfg.resume_from_checkpoint) / "trainer_state.json").is_file():
            raise _error("--resume-from-checkpoint",
                         f"{cfg.resume_from_checkpoint} is not a checkpoint folder (no trainer_state.json)")
    if cfg.push_to_hub:
        check_hub(cfg.hub_model_id)
    warnings = []
    if cfg.method == "uce":
        warnings += ignored_settings(cfg, tuple(f.name for f in dataclasses.fields(cfg) if f.name not in _UCE_READS),
                                     "with --method uce (a closed-form edit, no training loop)")
    else:
        ignored = _UCE_ONLY + (_ESD_ONLY if cfg.method == "duo" else _DUO_ONLY + ("lora_target_modules",))
        warnings += ignored_settings(cfg, ignored, f"with --method {cfg.method}")
        if cfg.method == "duo" and not cfg.retain_weight:
            warnings += ignored_settings(cfg, ("retain_prompts", "retain_images_per_prompt",
                                               "retain_num_inference_steps"), "without --retain-weight")
        if cfg.validation_prompts and not cfg.validation_steps:
            warnings.append("--validation-prompts is ignored without --validation-steps")
    if not cfg.push_to_hub:
        warnings += ignored_settings(cfg, ("hub_model_id", "hub_private"), "without --push-to-hub")
    _warn(cfg, warnings)


def check_hub(hub_model_id: str | None) -> None:
    from huggingface_hub import get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if hub_model_id:
        try:
            validate_repo_id(hub_model_id)
        except HFValidationError as err:
            raise _error("--hub-model-id", f"{hub_model_id!r} is not a hub repository id ({err})") from None
    if get_token() is None:
        raise _error("--push-to-hub", "no Hugging Face token: run `hf auth login` or set HF_TOKEN")


def check_pairs(cfg, *, load_model: bool = True, load_detector: bool = True) -> None:
    """`duo pairs` / ``make_pairs``."""
    if load_model:
        check_model_source(cfg.pretrained_model)
    check_output_dir(cfg.output_dir)
    if cfg.unsafe_images_dir:
        check_image_folder(cfg.unsafe_images_dir, "--unsafe-images-dir")
    if load_detector:
        check_detector(cfg.detector)
    warnings = []
    if cfg.unsafe_images_dir:
        warnings += ignored_settings(cfg, ("num_pairs",), "with --unsafe-images-dir (one pair per image)")
    _warn(cfg, warnings)


def check_attack(cfg) -> None:
    """`duo attack` / ``run_attack``."""
    from duo_unlearn.pipelines import SHAPEWORLD

    check_model_source(cfg.pretrained_model)
    check_output_dir(cfg.output_dir)
    if cfg.lora:
        check_lora_folder(cfg.lora, "--lora")
    if cfg.num_tokens < 0:
        raise _error("--num-tokens", f"must be >= 0 (0: the method's default), got {cfg.num_tokens}")
    if cfg.task_file:
        check_task_file(cfg.task_file, needs_twins=cfg.method == "adaptive-inversion")
    elif cfg.pretrained_model != SHAPEWORLD:
        raise _error("--task-file", "required to attack a real model: a YAML with the attacker's prompts and "
                                    "concept images (see duo_unlearn/attacks/task_file.py)")
    check_detector(cfg.detector)


def check_eval(cfg) -> None:
    """`duo eval` / ``run_eval``: a real model needs its inputs; ShapeWorld takes none of them."""
    from duo_unlearn.pipelines import SHAPEWORLD

    check_output_dir(cfg.output_dir)
    if getattr(cfg, "report_only", False):  # rewrites pages from finished results, loads no model
        if not Path(cfg.output_dir).is_dir():
            raise _error("--report-only", f"{cfg.output_dir} not found (run `duo eval` first)")
        return
    check_model_source(cfg.pretrained_model)
    fields = {f.name for f in dataclasses.fields(cfg)}
    if cfg.pretrained_model == SHAPEWORLD:
        given = [n for n in changed_fields(cfg) if n in EVAL_REAL_MODEL_ONLY]
        if given:
            raise _error(", ".join(map(_flag, given)),
                         "only for a real model (--pretrained-model FOLDER_OR_HUB_ID); on ShapeWorld `duo eval` "
                         "makes its own pairs, models and prompts (the full study)")
        return
    if not parse_models(cfg.models):
        raise _error("--models", "give at least one 'name=folder' LoRA to evaluate against the base model")
    if not cfg.captions_file or not Path(cfg.captions_file).is_file():
        raise _error("--captions-file", f"{cfg.captions_file}: a text file of safe captions, one per line, is needed")
    if not any(line.strip() for line in Path(cfg.captions_file).read_text(encoding="utf-8").splitlines()):
        raise _error("--captions-file", f"{cfg.captions_file} holds no captions")
    if not cfg.task_file:
        raise _error("--task-file", "required for a real model (attack prompts and concept images)")
    check_task_file(cfg.task_file, needs_twins="adaptive-inversion" in cfg.attacks)
    check_detector(cfg.detector)
    if cfg.metric in ("lpips", "lpips-alex"):
        require_extra("lpips", "lpips", "--metric lpips")
    if cfg.clip_model and not Path(cfg.clip_model).exists():
        check_model_source(cfg.clip_model, "--clip-model")
    if cfg.reference_images_dir:
        if not cfg.clip_model:
            raise _error("--reference-images-dir", "needs --clip-model (FID is computed in CLIP feature space)")
        check_image_folder(cfg.reference_images_dir, "--reference-images-dir", minimum=2)
    _warn(cfg, ignored_settings(cfg, tuple(n for n in EVAL_SHAPEWORLD_ONLY if n in fields),
                                "on a real model (`duo eval` evaluates the --models given, it trains nothing)"))


# settings of `duo tune` that only a real model uses
TUNE_REAL_MODEL_ONLY = ("captions_file", "concept_prompts_file", "close_prompts_file", "detector", "metric", "dtype")


def _check_prompt_file(path: str | None, option: str, what: str) -> None:
    if not path:
        raise _error(option, f"required for a real model: {what}, one per line")
    if not Path(path).is_file():
        raise _error(option, f"{path} not found ({what}, one per line)")
    if not any(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()):
        raise _error(option, f"{path} holds no prompts")


def check_tune(cfg) -> None:
    """`duo tune` / ``run_tune``: the train config, the pairs, and a real model's held-out prompt files."""
    from duo_unlearn.pipelines import SHAPEWORLD

    check_output_dir(cfg.output_dir)
    if cfg.train_config and not Path(cfg.train_config).is_file():
        raise _error("--train-config", f"{cfg.train_config} not found (a `duo train` YAML)")
    try:
        base = cfg.base_train_config()
    except (TypeError, ValueError) as err:
        raise _error("--train-config", f"{cfg.train_config}: {err}") from None
    if base.method != "duo":
        raise _error("--train-config", f"{cfg.train_config} sets method {base.method!r}; `duo tune` sweeps DUO's "
                                       "beta and lambda (method: duo)")
    if base.pretrained_model == SHAPEWORLD:
        given = [n for n in changed_fields(cfg) if n in TUNE_REAL_MODEL_ONLY]
        if given:
            raise _error(", ".join(map(_flag, given)), "only for a real model (--pretrained-model FOLDER_OR_HUB_ID); "
                                                       "on ShapeWorld the held-out prompts are ShapeWorld's own")
    check_train(base, load_pairs=not cfg.makes_pairs())  # model source, pairs, trackers
    if base.pretrained_model != SHAPEWORLD:
        _check_prompt_file(cfg.captions_file, "--captions-file", "held-out safe captions for prior preservation")
        _check_prompt_file(cfg.concept_prompts_file, "--concept-prompts-file",
                           "held-out prompts asking for the concept, for the concept rate")
        if cfg.close_prompts_file:
            _check_prompt_file(cfg.close_prompts_file, "--close-prompts-file", "prompts of a close, allowed concept")
        check_detector(cfg.detector)
        if cfg.metric in ("lpips", "lpips-alex"):
            require_extra("lpips", "lpips", "--metric lpips")
    train_config = load_config_values(cfg.train_config)
    warnings = [f"--train-config's {name} is replaced for every point ({why})" for name, why in (
        ("preservation_weight", "the sweep sets lambda = base weight * beta / 100"),
        ("resume_from_checkpoint", "each point trains from scratch or is reused whole"),
        ("push_to_hub", "push the chosen point with `duo train --config best_train_config.yaml`"),
        ("merge", "merge the chosen point with `duo train`")) if train_config.get(name) is not None
        and train_config.get(name) is not False]
    _warn(cfg, warnings)


def load_config_values(path: str | None) -> dict:
    """The raw mapping of a YAML config (empty without one)."""
    import yaml

    if not path:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    return data if isinstance(data, dict) else {}
