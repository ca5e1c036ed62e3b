"""The `duo` command: a thin layer over the library.

    duo world render | train | train-detector     the embedded ShapeWorld
    duo pairs   --config pairs.yaml               SDEdit paired data
    duo train   --config train.yaml               DUO (or --method esd)
    duo attack  --method ring-a-bell --lora DIR   red-team a model
    duo eval    --config eval.yaml                every method x attack x metric -> report/
    duo demo                                      everything, end to end, on ShapeWorld

Every command that has a config takes ``--config FILE.yaml``; flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from duo_unlearn.configs import add_dataclass_arguments, load_config


def _with_config(sub: argparse.ArgumentParser, cls: type) -> None:
    sub.add_argument("--config", help=f"YAML file setting any {cls.__name__} field")
    add_dataclass_arguments(sub, cls)


def _config(args: argparse.Namespace, cls: type):
    names = {f.name for f in dataclasses.fields(cls)}
    return load_config(cls, getattr(args, "config", None), {k: v for k, v in vars(args).items() if k in names})


def build_parser() -> argparse.ArgumentParser:
    from duo_unlearn.config import DUOConfig
    from duo_unlearn.demo import DemoConfig
    from duo_unlearn.pairs import PairsConfig
    from duo_unlearn.world.detector import DetectorTrainConfig
    from duo_unlearn.world.train import WorldTrainConfig

    parser = argparse.ArgumentParser(prog="duo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    world = commands.add_parser("world", help="the embedded ShapeWorld").add_subparsers(dest="world_command",
                                                                                        required=True)
    render = world.add_parser("render", help="render random scenes with captions to a grid PNG")
    render.add_argument("--num", type=int, default=24)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--output", default="shapeworld.png")
    _with_config(world.add_parser("train", help="train the ShapeWorld pipeline from scratch"), WorldTrainConfig)
    _with_config(world.add_parser("train-detector", help="train the ShapeWorld concept detector"),
                 DetectorTrainConfig)

    _with_config(commands.add_parser("pairs", help="make SDEdit (unsafe, safe) pairs"), PairsConfig)
    _with_config(commands.add_parser("train", help="unlearn a concept (DUO, or the ESD baseline)"), DUOConfig)
    from duo_unlearn.attacks import AttackConfig
    from duo_unlearn.evaluate import EvalConfig

    _with_config(commands.add_parser("attack", help="red-team a (base or unlearned) model"), AttackConfig)
    _with_config(commands.add_parser("eval", help="all methods through all attacks and metrics -> report/"),
                 EvalConfig)
    _with_config(commands.add_parser("demo", help="pairs, DUO training and before/after figures on ShapeWorld"),
                 DemoConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    # transformers warns about every image processor lacking torchvision when diffusers loads
    # its pipeline registry; none is used here, so keep the terminal for what matters
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _run(args)
    except (ValueError, OSError, FloatingPointError, NotImplementedError) as err:
        print(f"duo {args.command}: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
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
            from duo_unlearn.world.train import WorldTrainConfig, train_world

            print(train_world(_config(args, WorldTrainConfig)))
        else:
            from duo_unlearn.world.detector import DetectorTrainConfig, train_detector

            print(json.dumps(train_detector(_config(args, DetectorTrainConfig)), indent=2))
    elif args.command == "pairs":
        from duo_unlearn.pairs import PairsConfig, make_pairs

        print(json.dumps(make_pairs(_config(args, PairsConfig)), indent=2))
    elif args.command == "train":
        from duo_unlearn.config import DUOConfig
        from duo_unlearn.trainer import train

        print(train(_config(args, DUOConfig)))
    elif args.command == "attack":
        from duo_unlearn.attacks import AttackConfig, run_attack

        result = run_attack(_config(args, AttackConfig))
        print(f"{result.method}: attack success rate {result.attack_success_rate:.2f}, "
              f"defence success rate {result.defence_success_rate:.2f} over {len(result.images)} images")
    elif args.command == "eval":
        from duo_unlearn.evaluate import EvalConfig, run_eval

        run_eval(_config(args, EvalConfig))
    elif args.command == "demo":
        from duo_unlearn.demo import DemoConfig, run_demo

        run_demo(_config(args, DemoConfig))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
