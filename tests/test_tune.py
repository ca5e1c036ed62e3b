"""`duo tune`: the choice of operating point, a tiny sweep end to end, reuse, and input errors first."""

import json

import pytest
import yaml

from duo_unlearn.cli import main
from duo_unlearn.demo import demo_train_config
from duo_unlearn.detectors import register_detector
from duo_unlearn.perceptual import register_perceptual_metric
from duo_unlearn.stats import Estimate
from duo_unlearn.testing import PixelDistance, RedDetector
from duo_unlearn.tuning import TuneConfig, choose_operating_point, heldout_prompts, pareto_frontier, run_tune


def _point(name, concept, preservation):
    return {"name": name, "concept_rate": Estimate(concept, concept, concept, 32),
            "prior_preservation": {"value": preservation, "low": preservation, "high": preservation, "n": 32}}


# ------------------------------------------------------------------ the choice
def test_lowest_concept_rate_among_points_meeting_the_target():
    points = [_point("a", 0.05, 0.90), _point("b", 0.20, 0.97), _point("c", 0.10, 0.95), _point("d", 0.50, 0.99)]
    assert choose_operating_point(points, 0.95)["name"] == "c"  # a forgets more but misses the target
    assert choose_operating_point(points, 0.96)["name"] == "b"
    assert choose_operating_point(points, 0.90)["name"] == "a"


def test_no_point_meets_the_target():
    points = [_point("a", 0.05, 0.90), _point("b", 0.20, 0.94)]
    assert choose_operating_point(points, 0.95) is None
    assert choose_operating_point([], 0.95) is None
    assert [p["name"] for p in pareto_frontier(points)] == ["a", "b"]
    with pytest.raises(ValueError, match="target"):
        choose_operating_point(points, 1.5)


def test_ties_go_to_higher_preservation_then_sweep_order():
    points = [_point("a", 0.10, 0.96), _point("b", 0.10, 0.98), _point("c", 0.10, 0.98)]
    assert choose_operating_point(points, 0.95)["name"] == "b"
    assert [p["name"] for p in pareto_frontier(points)] == ["b", "c"]


# ------------------------------------------------------------------ a tiny sweep end to end

register_detector("red-tune-test", RedDetector)
register_perceptual_metric("pixel-tune-test", PixelDistance)


def _tiny_tune(tmp_path, root, **overrides) -> TuneConfig:
    train = tmp_path / "train.yaml"
    train.write_text(yaml.safe_dump({"lora_rank": 4, "lora_alpha": 4, "learning_rate": 5e-2, "max_train_steps": 2,
                                     "train_batch_size": 2, "checkpointing_steps": 0, "output_dir": "my-duo"}))
    (tmp_path / "captions.txt").write_text("a box\na dog\n\na tree\na cat\n")
    (tmp_path / "concept.txt").write_text("a box with a cross\na dog with a cross\na cross\n")
    settings = dict(output_dir=str(tmp_path / "tune"), train_config=str(train), pretrained_model=str(root / "model"),
                    pairs_dir=str(root / "pairs"), betas=(250.0, 1000.0), base_preservation_weights=(1e6,),
                    num_prompts=3, num_inference_steps=2, captions_file=str(tmp_path / "captions.txt"),
                    concept_prompts_file=str(tmp_path / "concept.txt"), detector="red-tune-test",
                    metric="pixel-tune-test", preservation_target=0.01)
    return TuneConfig(**{**settings, **overrides})


def _refuse(what):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} was called")

    return refuse


def test_tiny_sweep_writes_everything_and_reuses_finished_points(tmp_path, saved_model_and_pairs, monkeypatch,
                                                                 request):
    import dataclasses

    import torch

    import duo_unlearn.pipelines as pipelines
    import duo_unlearn.trainer as trainer
    from duo_unlearn.config import DUOConfig
    from duo_unlearn.configs import load_config

    cfg = _tiny_tune(tmp_path, saved_model_and_pairs, num_threads=1)
    request.addfinalizer(lambda threads=torch.get_num_threads(): torch.set_num_threads(threads))
    torch.set_num_threads(2)  # the tune pins its own count (1): the process's must not matter
    results = run_tune(cfg)
    out = tmp_path / "tune"
    for name in ("tune_results.json", "tune.md", "tune_pareto.png", "best_train_config.yaml"):
        assert (out / name).is_file(), name
    written = json.loads((out / "tune_results.json").read_text())
    assert written == json.loads(json.dumps(results))
    points = written["points"]
    assert [p["name"] for p in points] == ["beta250_lambda1e06", "beta1000_lambda1e06"]
    assert [p["preservation_weight"] for p in points] == [2.5e6, 1e7]  # λ = base * beta / 100
    assert written["heldout_prompts"]["safe"] == ["a box", "a dog", "a tree"]  # first num_prompts lines
    assert written["torch_num_threads"] == [1]
    for p in points:
        assert p["concept_rate"]["n"] == 3 and p["prior_preservation"]["n"] == 3
        assert p["prior_preservation"]["low"] <= p["prior_preservation"]["value"] <= p["prior_preservation"]["high"]
        assert p["prior_preservation"]["value"] < 1  # the LoRA changed the images (else the sweep tests nothing)
    assert written["base"]["prior_preservation"]["value"] == 1.0
    # the choice is the function's, applied to the written numbers, and the best config is that point
    expected = choose_operating_point(points, cfg.preservation_target)
    assert expected is not None and written["chosen"] == expected["name"]
    best = load_config(DUOConfig, out / "best_train_config.yaml")
    assert (best.beta, best.base_preservation_weight, best.preservation_weight) == \
        (expected["beta"], 1e6, None)
    assert (best.output_dir, best.lora_rank, best.max_train_steps) == ("my-duo", 4, 2)  # the train config kept
    assert f"**Chosen: {expected['name']}**" in (out / "tune.md").read_text()

    # a second run trains nothing and, measured already, loads no model; a target no point meets chooses none
    monkeypatch.setattr(trainer, "train", _refuse("train"))
    monkeypatch.setattr(pipelines, "load_pipeline", _refuse("load_pipeline"))
    best_pres = max(p["prior_preservation"]["value"] for p in points)
    again = run_tune(dataclasses.replace(cfg, preservation_target=min(1.0, best_pres + 1e-6)))
    assert again["chosen"] is None and not (out / "best_train_config.yaml").exists()
    assert "No point reaches" in (out / "tune.md").read_text()
    assert [p["concept_rate"] for p in again["points"]] == [p["concept_rate"] for p in points]

    # the lowest target every point meets: the lowest concept rate of all wins
    lowest = min(p["prior_preservation"]["value"] for p in points)
    third = run_tune(dataclasses.replace(cfg, preservation_target=lowest))
    rates = sorted((p["concept_rate"]["value"], -p["prior_preservation"]["value"], i) for i, p in enumerate(points))
    assert third["chosen"] == points[rates[0][2]]["name"]

    # a changed training setting retrains
    with pytest.raises(AssertionError, match="train was called"):
        run_tune(dataclasses.replace(cfg, max_train_steps=3))


# ------------------------------------------------------------------ input errors before any model loads
@pytest.fixture
def no_model_loads(monkeypatch):
    import duo_unlearn.detectors as detectors
    import duo_unlearn.pipelines as pipelines
    import duo_unlearn.trainer as trainer

    for module, name in ((pipelines, "load_pipeline"), (pipelines, "load_shapeworld"), (detectors, "get_detector"),
                         (trainer, "train")):
        monkeypatch.setattr(module, name, _refuse(f"{name} (a model load)"))


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _pairs(tmp_path):
    folder = tmp_path / "pairs"
    for side in ("unsafe", "safe"):
        (folder / side).mkdir(parents=True)
        (folder / side / "0.png").write_bytes(b"")
    (folder / "metadata.jsonl").write_text(json.dumps({"index": 0, "kept": True, "unsafe_image": "unsafe/0.png",
                                                       "safe_image": "safe/0.png"}) + "\n")
    return str(folder)


def test_tune_errors_come_first(tmp_path, capsys, no_model_loads):
    out = str(tmp_path / "o")
    base = ["tune", "--output-dir", out]
    assert "--pairs-dir: pair folder" in _cli_error(capsys, base + ["--pairs-dir", str(tmp_path / "nope")])
    config = tmp_path / "tune.yaml"
    config.write_text("betas: []\n")
    assert "--betas: give one or more" in _cli_error(capsys, base + ["--config", str(config)])
    assert "--preservation-target must be in (0, 1]" in _cli_error(capsys, base + ["--preservation-target", "1.5"])
    assert "--preservation-target must be in (0, 1]" in _cli_error(capsys, base + ["--preservation-target", "0"])
    assert "--train-config: " in _cli_error(capsys, base + ["--train-config", str(tmp_path / "missing.yaml")])
    esd = tmp_path / "esd.yaml"
    esd.write_text("method: esd\n")
    assert "method 'esd'" in _cli_error(capsys, base + ["--train-config", str(esd)])
    assert "--captions-file: only for a real model" in _cli_error(
        capsys, base + ["--captions-file", "c.txt", "--pairs-dir", _pairs(tmp_path)])

    real = tmp_path / "sd"
    real.mkdir()
    (real / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    real_args = base + ["--pretrained-model", str(real), "--pairs-dir", str(tmp_path / "pairs"),
                        "--detector", "red-tune-test", "--metric", "pixel-tune-test"]
    assert "--captions-file: required for a real model" in _cli_error(capsys, real_args)
    (tmp_path / "captions.txt").write_text("\n")
    with_captions = real_args + ["--captions-file", str(tmp_path / "captions.txt")]
    assert "holds no prompts" in _cli_error(capsys, with_captions)
    (tmp_path / "captions.txt").write_text("a dog\n")
    assert "--concept-prompts-file: required for a real model" in _cli_error(capsys, with_captions)
    assert "--concept-prompts-file: " in _cli_error(capsys, with_captions + ["--concept-prompts-file", "no.txt"])
    assert not (tmp_path / "o").exists()


def test_public_export_is_lazy():
    import duo_unlearn

    assert duo_unlearn.TuneConfig is TuneConfig and duo_unlearn.tune is run_tune
    assert "tune" in duo_unlearn.__all__ and "TuneConfig" in duo_unlearn.__all__


def test_shapeworld_defaults_are_the_demos_training_with_the_studys_learning_rate_rule(tmp_path):
    from pathlib import Path

    from duo_unlearn.configs import load_config
    from duo_unlearn.demo import DemoConfig

    shipped = Path(__file__).parent.parent / "configs" / "tune_shapeworld.yaml"
    cfg = load_config(TuneConfig, shipped, {"output_dir": str(tmp_path / "t")})
    assert cfg.makes_pairs() and len(cfg.betas) * len(cfg.base_preservation_weights) == 4
    base = cfg.base_train_config()
    demo = DemoConfig()
    assert (base.pretrained_model, base.pairs_dir) == ("shapeworld", str(tmp_path / "t" / "pairs"))
    assert (base.max_train_steps, base.train_batch_size, base.use_prompts, base.prompt_dropout,
            base.timestep_range) == (demo.max_train_steps, demo.train_batch_size, demo.use_prompts,
                                     demo.prompt_dropout, (1, 1000))
    assert (base.adversarial_conditioning, base.adversary_per_pair, base.adversarial_steps, base.adversarial_weight,
            base.prompt_preference_weight) == (demo.adversarial_conditioning, demo.adversary_per_pair,
                                               demo.adversarial_steps, demo.adversarial_weight,
                                               demo.prompt_preference_weight)
    assert base.learning_rate is None and base.resolved_learning_rate == pytest.approx(1e-3 * 500 / base.beta)
    assert cfg.resolved_inference_steps("shapeworld") == 12
    assert (base.retain_weight, base.retain_prompts) == (demo.retain_weight, demo_train_config(
        demo, "p", "o").retain_prompts)  # at seed 0 no retain prompt is a held-out prompt


def test_the_tune_never_measures_a_point_on_a_prompt_it_was_held_to(tmp_path):
    """The demo's retain prompts (seed 0's preserve prompts) include, by chance, a held-out prompt of
    the tune at seed 1 ('a violet block'): the tune's base config drops it and keeps the others."""
    from duo_unlearn.demo import DemoConfig

    cfg = TuneConfig(output_dir=str(tmp_path / "t"), seed=1)
    held_out = {p for recs in heldout_prompts(cfg, "shapeworld").values() for p, _ in recs}
    demo = demo_train_config(DemoConfig(), "p", "o").retain_prompts
    base = cfg.base_train_config().retain_prompts
    assert set(demo) & held_out == {"a violet block"}
    assert base == tuple(p for p in demo if p != "a violet block")


def test_a_missing_prompt_file_is_named_when_the_train_config_holds_retain_prompts(tmp_path, capsys, no_model_loads):
    """The tune drops retain prompts that are held-out prompts, which reads the held-out prompt files:
    a missing one must still be reported by its option, before any model loads, not as a traceback."""
    real = tmp_path / "sd"
    real.mkdir()
    (real / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    train = tmp_path / "train.yaml"
    train.write_text(f"pretrained_model: {real}\nretain_prompts: [a dog, a cat]\nretain_weight: 1.0\n")
    args = ["tune", "--output-dir", str(tmp_path / "o"), "--train-config", str(train), "--pairs-dir",
            _pairs(tmp_path), "--detector", "red-tune-test", "--metric", "pixel-tune-test"]
    assert "--captions-file: " in _cli_error(capsys, args + ["--captions-file", str(tmp_path / "no.txt")])
    (tmp_path / "captions.txt").write_text("a dog\n")
    assert "--concept-prompts-file: " in _cli_error(
        capsys, args + ["--captions-file", str(tmp_path / "captions.txt"), "--concept-prompts-file", "no.txt"])
    assert not (tmp_path / "o").exists()
