import dataclasses
from pathlib import Path

import pytest

from duo_unlearn.config import DUOConfig
from duo_unlearn.configs import field_docs, load_config
from duo_unlearn.demo import DemoConfig
from duo_unlearn.pairs import PairsConfig

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def _all_configs():
    from duo_unlearn.attacks import AttackConfig
    from duo_unlearn.evaluation import EvalConfig
    from duo_unlearn.tuning import TuneConfig
    from duo_unlearn.world.detector import DetectorTrainConfig
    from duo_unlearn.world.train import WorldTrainConfig

    return [DUOConfig, PairsConfig, DemoConfig, AttackConfig, EvalConfig, TuneConfig, DetectorTrainConfig,
            WorldTrainConfig]


@pytest.mark.parametrize("cls", _all_configs(), ids=lambda c: c.__name__)
def test_every_field_is_documented(cls):
    docs = field_docs(cls)
    undocumented = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
    assert not undocumented


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    from duo_unlearn.evaluation import EvalConfig
    from duo_unlearn.tuning import TuneConfig

    cls = PairsConfig if "pairs" in path.name else EvalConfig if "eval" in path.name else \
        TuneConfig if "tune" in path.name else DUOConfig
    cfg = load_config(cls, path)
    assert isinstance(cfg, cls)


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("beta: 250\nmax_train_steps: 10\ntimestep_range: [5, 500]\n")
    cfg = load_config(DUOConfig, path, {"max_train_steps": 3, "seed": None})
    assert cfg.beta == 250 and cfg.max_train_steps == 3 and cfg.timestep_range == (5, 500) and cfg.seed == 0


def test_yaml_numbers_without_exponent_sign_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preservation_weight: 1.5e6\nbeta: 500\n")
    assert load_config(DUOConfig, path).preservation_weight == 1.5e6
    path.write_text("beta: lots\n")
    with pytest.raises(ValueError, match="DUOConfig.beta must be a number"):
        load_config(DUOConfig, path)


def test_paper_rescaling_rules():
    cfg = DUOConfig(beta=500)
    assert cfg.resolved_learning_rate == pytest.approx(6e-5)
    assert cfg.resolved_preservation_weight == pytest.approx(5e6)
    assert DUOConfig(beta=500, learning_rate=1e-3, preservation_weight=0).resolved_preservation_weight == 0


@pytest.mark.parametrize("bad, match", [
    ({"beta": 0}, "beta"), ({"timestep_range": (800, 100)}, "timestep_range"),
    ({"pair_timestep": "mixed"}, "pair_timestep"), ({"mixed_precision": "fp8"}, "mixed_precision"),
    ({"method": "sgd"}, "method"), ({"train_batch_size": 0}, "train_batch_size"),
])
def test_bad_values_name_the_option(bad, match):
    with pytest.raises(ValueError, match=match):
        DUOConfig(**bad)


def test_unknown_yaml_field_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("betta: 3\n")
    with pytest.raises(ValueError, match="bad.yaml.*betta"):
        load_config(DUOConfig, path)


def test_pairs_config_requires_matching_prompt_lists():
    with pytest.raises(ValueError, match="equal length"):
        PairsConfig(unsafe_prompts=("a", "b"), safe_prompts=("c",))
