import pytest

from duo_unlearn.cli import build_parser, main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("pairs", "train", "attack", "eval", "demo", "world"):
        assert command in out


def test_train_help_shows_field_docs(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "DPO temperature" in out and "--beta" in out and "--lora-target-modules" in out


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    code = main(["train", "--pairs-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o"),
                 "--pretrained-model", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "is not a diffusers pipeline folder" in err
    assert not (tmp_path / "o").exists()


def test_flags_override_yaml(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("beta: 250\n")
    args = build_parser().parse_args(["train", "--config", str(cfg), "--max-train-steps", "7", "--no-use-prompts"])
    from duo_unlearn.cli import _config
    from duo_unlearn.config import DUOConfig

    c = _config(args, DUOConfig)
    assert c.beta == 250 and c.max_train_steps == 7 and c.use_prompts is False


def test_world_render(tmp_path, capsys):
    assert main(["world", "render", "--num", "4", "--output", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").is_file()
    assert len(capsys.readouterr().out.splitlines()) == 5


def test_snake_case_flags_none_and_choices(tmp_path):
    from duo_unlearn.cli import _config
    from duo_unlearn.config import DUOConfig

    args = build_parser().parse_args(["train", "--mixed_precision", "bf16", "--max_train_steps=5",
                                      "--checkpoints-total-limit", "none", "--no-use_prompts"])
    cfg = _config(args, DUOConfig)
    assert cfg.mixed_precision == "bf16" and cfg.max_train_steps == 5 and cfg.use_prompts is False
    assert cfg.checkpoints_total_limit is None  # 'none' unsets the default of 2
    (tmp_path / "c.yaml").write_text("learning_rate: 0.01\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"), "--learning-rate", "None"])
    assert _config(args, DUOConfig).learning_rate is None  # the flag overrides the YAML back to none


def test_enumerations_list_and_check_their_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--pair-timestep {shared,independent}" in out and "--method {duo,esd,uce}" in out
    with pytest.raises(SystemExit):
        main(["train", "--pair-timestep", "mixed"])
    assert "invalid choice: 'mixed'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["attack", "--method", "ring-a-ding"])
    assert "'ring-a-bell'" in capsys.readouterr().err


def test_yaml_enumeration_values_are_checked(tmp_path):
    from duo_unlearn.attacks.base import AttackConfig
    from duo_unlearn.configs import load_config

    (tmp_path / "a.yaml").write_text("method: ring-a-ding\n")
    with pytest.raises(ValueError, match="AttackConfig.method must be one of 'paraphrase'"):
        load_config(AttackConfig, tmp_path / "a.yaml")


def test_print_config_prints_resolved_yaml_and_runs_nothing(tmp_path, capsys, monkeypatch):
    import yaml

    import duo_unlearn.pipelines as pipelines
    from duo_unlearn.config import DUOConfig

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("a model was loaded"))
    (tmp_path / "c.yaml").write_text("beta: 250\nseed: 3\n")
    out_dir = tmp_path / "out"
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--seed", "4", "--output-dir", str(out_dir),
                 "--pairs-dir", str(tmp_path / "missing"), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["beta"] == 250 and printed["seed"] == 4 and printed["output_dir"] == str(out_dir)
    assert DUOConfig(**{**printed, "timestep_range": tuple(printed["timestep_range"])}) == DUOConfig(
        beta=250, seed=4, output_dir=str(out_dir), pairs_dir=str(tmp_path / "missing"))
    assert not out_dir.exists()


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"duo-unlearn {metadata.version('duo-unlearn')}"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["pairs", "--help"], ["attack", "--help"],
                                  ["eval", "--help"], ["demo", "--help"], ["tune", "--help"],
                                  ["world", "train", "--help"]])
def test_help_imports_neither_torch_nor_diffusers(argv):
    """The parser reads the config classes only: no torch, no diffusers (they take seconds)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    code = ("import sys; from duo_unlearn.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules)\n"
            "print('HEAVY', heavy)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout[-300:]


def test_public_api_is_lazy_and_complete():
    import subprocess
    import sys

    import duo_unlearn

    for name in ("train", "DUOConfig", "make_pairs", "PairsConfig", "attack", "AttackConfig", "evaluate",
                 "EvalConfig", "load_pipeline"):
        assert name in duo_unlearn.__all__ and getattr(duo_unlearn, name) is not None
    from duo_unlearn import AttackConfig, EvalConfig, attack, evaluate
    from duo_unlearn.attacks import run_attack
    from duo_unlearn.evaluation import run_eval

    assert attack is run_attack and evaluate is run_eval
    assert EvalConfig.__module__ == "duo_unlearn.evaluation.config" and AttackConfig.__name__ == "AttackConfig"
    done = subprocess.run([sys.executable, "-c", "import sys, duo_unlearn; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_diffusers_script_flag_names():
    from duo_unlearn.cli import _config
    from duo_unlearn.config import DUOConfig

    args = build_parser().parse_args(["train", "--pretrained_model_name_or_path", "org/model", "--rank", "8",
                                      "--validation_prompt", "a dog", "a cat", "--train_batch_size", "2",
                                      "--gradient_checkpointing", "--push_to_hub", "--hub_model_id", "me/m"])
    cfg = _config(args, DUOConfig)
    assert cfg.pretrained_model == "org/model" and cfg.lora_rank == 8 and cfg.train_batch_size == 2
    assert cfg.validation_prompts == ("a dog", "a cat") and cfg.gradient_checkpointing and cfg.push_to_hub
    assert cfg.hub_model_id == "me/m"
