"""`duo eval` end to end on ShapeWorld with minimal settings: two seeds, models, attacks, a pooled
report with intervals and timings, resume, and refusal to pool results of different protocols."""

import json

import pytest

from duo_unlearn.evaluation import EvalConfig, run_eval
from duo_unlearn.evaluation.protocol import ProtocolMismatch
from duo_unlearn.stats import Estimate


def _tiny(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), betas=(500.0,), ablation_beta=None, baselines=("uce", "esd"),
                attacks=("paraphrase", "ring-a-bell"), num_pairs=6, train_steps=4, esd_steps=2,
                num_attack_prompts=2, images_per_prompt=2, attack_budget=2, num_eval_prompts=4, seeds=(0, 1),
                num_threads=1, num_workers=2)
    base.update(kw)
    return EvalConfig(**base)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    import torch

    out, threads = tmp_path_factory.mktemp("eval"), torch.get_num_threads()
    torch.set_num_threads(2)  # the study pins its own count (1): what the environment says must not matter
    yield out, run_eval(_tiny(out))
    torch.set_num_threads(threads)


def test_eval_writes_a_pooled_report_with_intervals(study):
    out, pooled = study
    assert set(pooled["models"]) == {"base", "duo-b500", "uce", "esd"}
    assert pooled["seeds"] == [0, 1] and len(pooled["protocol_hash"]) == 16
    report = out / "report"
    for name in ("results.json", "index.md", "index.html", "pareto_paraphrase.png", "pareto_ring-a-bell.png"):
        assert (report / name).is_file(), name
    for seed in (0, 1):
        per_seed = json.loads((out / f"seed-{seed}" / "results.json").read_text())
        assert per_seed["seed"] == seed and per_seed["protocol_hash"] == pooled["protocol_hash"]
        assert any(k.startswith("train/") for k in per_seed["timings"])
        assert any(k.startswith("attack/") for k in per_seed["timings"])
        assert per_seed["torch_num_threads"] == [1]  # EvalConfig.num_threads, not the process's 2
        assert per_seed["num_workers"] == [2] and per_seed["wall_seconds"] > 0
        assert (out / f"seed-{seed}" / "ring-a-bell-searches.json").is_file()  # one search per seed, kept
    assert pooled["torch_num_threads"] == {"0": [1], "1": [1]}
    base = pooled["models"]["base"]["figures"]
    assert Estimate.from_dict(base["prior_preservation"]).value == pytest.approx(1.0)  # base against itself
    dsr = Estimate.from_dict(pooled["models"]["uce"]["figures"]["dsr/ring-a-bell"])
    assert dsr.n == 2 * 2 * 2  # 2 prompts x 2 images x 2 seeds, pooled
    assert dsr.k is not None and dsr.low <= dsr.value <= dsr.high
    # beside the image-level interval, each rate's mean over the seeds with a t interval over them
    across = Estimate.from_dict(pooled["across_seeds"]["uce"]["dsr/ring-a-bell"])
    per_seed = [pooled["per_seed"][s]["uce"]["dsr/ring-a-bell"]["value"] for s in ("0", "1")]
    assert across.value == pytest.approx(sum(per_seed) / 2) and across.n == 2 and across.k is None
    assert 0 <= across.low <= across.value <= across.high <= 1
    paraphrase = Estimate.from_dict(base["dsr/paraphrase"])
    assert paraphrase.n == 2 * 4  # the held-out metric group of each seed is the paraphrase control
    md = (report / "index.md").read_text()
    for needed in ("success against the base model", "Per seed", "Wall time per stage", "Protocol (hash",
                   pooled["protocol_hash"], "inside the noise", "control", "| torch threads | 1 | 1 |",
                   "| worker processes | 2 | 2 |", "wall time, the seed's share of its run",
                   "across seeds [95 % t interval]", "the same by the across-seed interval", "apart across seeds too"):
        assert needed in md, needed
    for linked in ("grids/duo-b500_safe.png", "attacks/uce_ring-a-bell.png"):
        assert linked in md and (report / linked).is_file(), linked


def test_one_worker_gives_the_figures_of_two(study, tmp_path):
    """The study's tasks ran in two worker processes, interleaved across seeds and models; seed 0
    run again here in this process alone, task after task, must give the same figures bit for bit
    (images, searches, training and every interval: nothing depends on which process ran what)."""
    out, _ = study
    run_eval(_tiny(tmp_path, seeds=(0, 1), run_seeds=(0,), num_workers=1))
    alone = json.loads((tmp_path / "seed-0" / "results.json").read_text())
    pooled = json.loads((out / "seed-0" / "results.json").read_text())
    assert alone["num_workers"] == [1] and pooled["num_workers"] == [2]
    assert list(alone["models"]) == ["base", "duo-b500", "uce", "esd"]
    assert alone["models"] == pooled["models"]
    assert alone["timings"].keys() == pooled["timings"].keys()


def test_report_only_rebuilds_the_same_pages(study):
    out, pooled = study
    md = (out / "report" / "index.md").read_text()
    (out / "report" / "index.md").unlink()
    rebuilt = run_eval(EvalConfig(output_dir=str(out), report_only=True))
    assert rebuilt["models"] == pooled["models"]
    assert (out / "report" / "index.md").read_text() == md


def test_a_rerun_resumes_without_recomputing(study):
    out, pooled = study
    before = json.loads((out / "seed-1" / "results.json").read_text())
    again = run_eval(_tiny(out))
    assert again["models"] == pooled["models"]
    assert json.loads((out / "seed-1" / "results.json").read_text())["timings"] == before["timings"]


def test_results_of_another_protocol_are_refused_naming_the_fields(study, tmp_path):
    import shutil

    out, _ = study
    copy = tmp_path / "mixed"
    shutil.copytree(out, copy)
    path = copy / "seed-1" / "results.json"
    data = json.loads(path.read_text())
    data["protocol"]["num_inference_steps"] = 50
    data["protocol"]["detector"]["concept"]["threshold"] = 0.9
    path.write_text(json.dumps(data))
    with pytest.raises(ProtocolMismatch) as refused:
        run_eval(EvalConfig(output_dir=str(copy), report_only=True))
    assert "detector.concept.threshold" in str(refused.value) and "num_inference_steps" in str(refused.value)
    mixed = run_eval(EvalConfig(output_dir=str(copy), report_only=True, allow_mixed_protocols=True))
    assert "num_inference_steps" in mixed["mixed_protocol_fields"]
    assert "WARNING: these results mix protocols" in (copy / "report" / "index.md").read_text()


def test_a_negative_thread_count_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="EvalConfig.num_threads"):
        EvalConfig(num_threads=-1)


def test_report_only_without_results_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        run_eval(EvalConfig(output_dir=str(tmp_path), report_only=True))


def test_sneakyprompt_confirmation_reaches_the_attack_its_cache_key_and_the_protocol(tmp_path, monkeypatch):
    """Set in EvalConfig, the confirmation is what the attack runs with and what the protocol and
    the cached result record; unset, neither mentions it (protocols from before it keep their hash)."""
    import numpy as np
    from PIL import Image

    import duo_unlearn.attacks as attacks
    from duo_unlearn.attacks import AttackResult
    from duo_unlearn.evaluation import study
    from duo_unlearn.timing import StageTimer

    class Detector:
        threshold = 0.5

        def settings(self):
            return {"detector": "stub"}

    seen = []

    def fake_attack(pipe, detector, task, acfg, folder=None, settings=None):
        seen.append((acfg, settings))
        return AttackResult(acfg.method, ["p"], [Image.new("RGB", (8, 8))], np.array([0.9]), 0.5, [1])

    monkeypatch.setattr(attacks, "attack", fake_attack)
    for confirm in (3, 0):
        cfg = _tiny(tmp_path, attacks=("sneakyprompt", "ring-a-bell"), sneakyprompt_confirm_seeds=confirm)
        protocol = study.study_protocol(cfg).attacks
        figs = study.attack_figures(None, Detector(), None, cfg, "base", 1, 2, tmp_path / "seed-1", StageTimer())
        assert figs["asr/sneakyprompt"]["value"] == 1.0
        (sneaky, sneaky_settings), (bell, bell_settings) = seen[-2:]
        assert sneaky.confirm_seeds == confirm and bell.confirm_seeds == 0
        assert "confirm_seeds" not in bell_settings and "confirm_seeds" not in protocol["ring-a-bell"]
        if confirm:
            assert sneaky_settings["confirm_seeds"] == protocol["sneakyprompt"]["confirm_seeds"] == confirm
        else:
            assert "confirm_seeds" not in sneaky_settings and "confirm_seeds" not in protocol["sneakyprompt"]


@pytest.mark.parametrize("asked", [{}, {"shared_adversary": True, "adversarial_twin_weight": 3.0,
                                        "robust_lora_target_modules": ("to_q", "ff.net.2"),
                                        "robust_retain_weight": 40.0, "inversion_pool_every": 25,
                                        "inversion_pool_steps": 150, "inversion_pool_alternate": {"tokens": 2},
                                        "inversion_pool_weight": 12.0}])
def test_robust_options_reach_training_only_when_set(tmp_path, monkeypatch, asked):
    """The study's robust DUO is trained with the variant's options, and a study that leaves them
    unset asks for exactly what it asked before they existed (its trained models stay reusable)."""
    import duo_unlearn.config
    import duo_unlearn.pipelines
    import duo_unlearn.trainer
    from duo_unlearn.evaluation.study import train_model

    seen = []
    monkeypatch.setattr(duo_unlearn.trainer, "train", lambda config, pipe=None: seen.append(config))
    monkeypatch.setattr(duo_unlearn.pipelines, "load_shapeworld", lambda: None)
    cfg = EvalConfig(output_dir=str(tmp_path), robust_betas=(500.0,), **asked)
    folder = tmp_path / "model"
    train_model({"method": "duo", "beta": 500.0, "robust": True, "name": "duo-b500-robust"}, cfg, 1,
                tmp_path / "pairs", folder, [], [], ["a red square with a plus over it", "a blue circle"])
    (config,) = seen
    assert config.adversarial_conditioning and config.adversary_per_pair
    assert config.shared_adversary is asked.get("shared_adversary", False)
    assert config.adversarial_twin_weight == asked.get("adversarial_twin_weight", 0.0)
    default_targets = duo_unlearn.config.DUOConfig.__dataclass_fields__["lora_target_modules"].default
    assert config.lora_target_modules == asked.get("robust_lora_target_modules", default_targets)
    assert config.retain_weight == asked.get("robust_retain_weight", 0.0)  # on the preserve prompts, UCE's
    assert config.retain_prompts == (("a red square with a plus over it", "a blue circle") if asked else ())
    marker = json.loads((folder / "study_train_settings.json").read_text())
    assert (config.inversion_pool_every, config.inversion_pool_steps) == ((25, 150) if asked else (0, 200))
    assert config.inversion_pool_alternate == asked.get("inversion_pool_alternate", {})
    assert config.resolved_inversion_pool_weight == asked.get("inversion_pool_weight", config.adversarial_weight)
    options = {"shared_adversary", "adversarial_twin_weight", "lora_target_modules", "retain_weight", "retain_prompts",
               "retain_num_inference_steps", "inversion_pool_every", "inversion_pool_steps", "inversion_pool_size",
               "inversion_pool_tokens", "inversion_pool_alternate", "inversion_pool_weight"}
    assert options & marker.keys() == (options if asked else set())
