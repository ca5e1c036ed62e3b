"""The `duo` command: a thin layer over the library.

    duo world render | train | train-detector     the embedded ShapeWorld
    duo pairs   --config pairs.yaml               SDEdit paired data
    duo train   --config train.yaml               DUO (or --method esd)
    duo attack  --method ring-a-bell --lora DIR   red-team a model
    duo eval    --config eval.yaml                every method x attack x metric -> report/
    duo tune    --config tune.yaml                sweep DUO's beta and lambda, pick a preservation target's point
    duo demo                                      everything, end to end, on ShapeWorld

Every command that has a config takes ``--config FILE.yaml``; flags override it, and
``--print-config`` shows the result without running anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys

from duo_unlearn.configs import add_dataclass_arguments, config_to_yaml, load_config

# command -> (help, config class as (module, name)); the class is imported only for the command
# being parsed, so `duo --help` imports nothing heavy and `duo train --help` only DUOConfig
COMMANDS = {
    "pairs": ("make SDEdit (unsafe, safe) pairs", ("duo_unlearn.pairs", "PairsConfig")),
    "train": ("unlearn a concept (DUO, or the ESD/UCE baselines)", ("duo_unlearn.config", "DUOConfig")),
    "attack": ("red-team a (base or unlearned) model", ("duo_unlearn.attacks.base", "AttackConfig")),
    "eval": ("all methods through all attacks and metrics -> report/", ("duo_unlearn.evaluation.config", "EvalConfig")),
    "tune": ("sweep DUO's beta and lambda on held-out prompts; choose the point meeting a preservation target",
             ("duo_unlearn.tuning", "TuneConfig")),
    "demo": ("pairs, DUO training and before/after figures on ShapeWorld", ("duo_unlearn.demo", "DemoConfig")),
}
WORLD_COMMANDS = {
    "train": ("train the ShapeWorld pipeline from scratch", ("duo_unlearn.world.configs", "WorldTrainConfig")),
    "train-detector": ("train the ShapeWorld concept detector",
                       ("duo_unlearn.world.configs", "DetectorTrainConfig")),
}
# the names diffusers' training scripts give some settings (train_dreambooth_lora.py, ...)
DIFFUSERS_ALIASES = {"pretrained_model": ("--pretrained-model-name-or-path",), "lora_rank": ("--rank",),
                     "validation_prompts": ("--validation-prompt",)}
EPILOG = ("Every flag also takes the snake_case spelling of diffusers' training scripts "
          "(--mixed_precision = --mixed-precision), and their names --pretrained_model_name_or_path, "
          "--rank, --validation_prompt.")


class _Parser(argparse.ArgumentParser):
    """Accepts ``--snake_case`` for every ``--kebab-case`` flag, as diffusers' scripts spell them."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args([_kebab(a) for a in args], namespace)


def _kebab(token: str) -> str:
    if not token.startswith("--"):
        return token
    flag, eq, value = token.partition("=")
    return flag.replace("_", "-") + eq + value


def _config_class(spec: tuple[str, str]) -> type:
    return getattr(importlib.import_module(spec[0]), spec[1])


def _with_config(sub: argparse.ArgumentParser, cls: type) -> None:
    sub.add_argument("--config", help=f"YAML file setting any {cls.__name__} field")
    sub.add_argument("--print-config", action="store_true",
                     help="print the resolved settings as YAML (defaults < --config < flags) and exit")
    add_dataclass_arguments(sub, cls, {k: v for k, v in DIFFUSERS_ALIASES.items()
                                       if k in {f.name for f in dataclasses.fields(cls)}})
    sub.set_defaults(config_class=cls)


def _config(args: argparse.Namespace, cls: type):
    names = {f.name for f in dataclasses.fields(cls)}
    return load_config(cls, getattr(args, "config", None), {k: v for k, v in vars(args).items() if k in names})


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("duo-unlearn")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `duo` parser; given ``command``, only that command's settings are added (and their
    config class imported); None adds every command's."""
    parser = _Parser(prog="duo", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"duo-unlearn {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    world = commands.add_parser("world", help="the embedded ShapeWorld").add_subparsers(dest="world_command",
                                                                                        required=True)
    render = world.add_parser("render", help="render random scenes with captions to a grid PNG")
    render.add_argument("--num", type=int, default=24)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--output", default="shapeworld.png")
    for name, (help_text, spec) in WORLD_COMMANDS.items():
        sub = world.add_parser(name, help=help_text, epilog=EPILOG)
        if command in (None, "world"):
            _with_config(sub, _config_class(spec))
    for name, (help_text, spec) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, epilog=EPILOG)
        if command in (None, name):
            _with_config(sub, _config_class(spec))
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command word: options before it (-v, --version, --help) take no value."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    # transformers warns about every image processor lacking torchvision when diffusers loads
    # its pipeline registry; none is used here, so keep the terminal for what matters
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_of(argv) or "").parse_args(argv)  # "": no command, none populated
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from duo_unlearn.preflight import MissingExtraError

    try:
        cfg = _config(args, args.config_class) if hasattr(args, "config_class") else None
        if cfg is not None and args.print_config:
            print(config_to_yaml(cfg), end="")
            return 0
        return _run(args, cfg)
    except (ValueError, OSError, FloatingPointError, NotImplementedError, MissingExtraError) as err:
        print(f"duo {args.command}: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, cfg) -> int:
    if args.command == "world":
        if args.world_command == "render":
            import random

            from duo_unlearn.grids import save_grid
            from duo_unlearn.world.scene import caption_scene, render_scene, sample_scenes

            scenes = sample_scenes(args.num, seed=args.seed)
            rng = random.Random(args.seed)
            for i, scene in enumerate(scenes):
                print(f"{i:3d}  {caption_scene(scene, rng)}")
            print(save_grid(args.output, [render_scene(s) for s in scenes], 8, scale=3))
        elif args.world_command == "train":
            from duo_unlearn.world.train import train_world

            print(train_world(cfg))
        else:
            from duo_unlearn.world.detector import train_detector

            print(json.dumps(train_detector(cfg), indent=2))
    elif args.command == "pairs":
        from duo_unlearn.preflight import check_pairs

        check_pairs(cfg)  # before torch and the pipeline load (make_pairs checks again, warning once)
        from duo_unlearn.pairs import make_pairs

        print(json.dumps(make_pairs(cfg), indent=2))
    elif args.command == "train":
        from duo_unlearn.preflight import check_train

        check_train(cfg)
        from duo_unlearn.trainer import train

        print(train(cfg))
    elif args.command == "attack":
        from duo_unlearn.preflight import check_attack

        check_attack(cfg)
        from duo_unlearn.attacks import run_attack
        from duo_unlearn.evaluation.metrics import attack_success, defence_success

        result = run_attack(cfg)
        print(f"{result.method}: attack success rate {attack_success(result).format()}, "
              f"defence success rate {defence_success(result).format()} (95 % Wilson intervals)")
    elif args.command == "eval":
        from duo_unlearn.preflight import check_eval

        check_eval(cfg)
        from duo_unlearn.evaluation import run_eval

        run_eval(cfg)
    elif args.command == "tune":
        from duo_unlearn.preflight import check_tune

        check_tune(cfg)
        from duo_unlearn.tuning import run_tune

        run_tune(cfg)
    elif args.command == "demo":
        from duo_unlearn.demo import run_demo

        run_demo(cfg)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
