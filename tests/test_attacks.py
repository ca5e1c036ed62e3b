"""Every attack runs end to end on a tiny pipeline, and its defining step does what it says."""

import numpy as np
import pytest
import torch
from PIL import Image

from duo_unlearn.attacks import ATTACKS, AttackConfig, AttackResult, ConceptTask, attack
from duo_unlearn.attacks.text import Placeholders, encode_ids, tokenize
from duo_unlearn.testing import tiny_sd_pipeline


class RedDetector:
    name = "red"
    threshold = 0.5

    def scores(self, images):
        return np.array([np.asarray(im, dtype=float)[..., 0].mean() / 255 for im in images])

    def settings(self):
        return {"detector": "red"}


def _task():
    g = np.random.default_rng(0)
    images = [Image.fromarray(g.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(4)]
    return ConceptTask(
        natural_prompts=["a thing struck out", "a box cancelled"],
        concept_pairs=[("a red box with a cross", "a red box"), ("a dog with a cross", "a dog")],
        base_prompts=["a red box", "a dog"],
        unsafe_prompts=["a red box with a cross", "a dog with a cross"],
        concept_phrases=["with a cross"],
        concept_images=images,
        concept_image_prompts=["a red box {}", "a dog {}", "a cat {}", "a house {}"],
        safe_twins=[Image.fromarray(np.asarray(im) // 2) for im in images],
    )


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd_pipeline()


@pytest.mark.parametrize("method", sorted(ATTACKS))
def test_every_attack_runs_and_reports(tmp_path, pipe, method):
    cfg = AttackConfig(method=method, num_prompts=2, images_per_prompt=2, num_inference_steps=2, budget=3)
    result = attack(pipe, RedDetector(), _task(), cfg, folder=tmp_path / method)
    assert len(result.images) == len(result.prompts) == len(result.scores) == 4
    assert 0 <= result.defence_success_rate <= 1
    assert result.defence_success_rate == pytest.approx(1 - np.mean(result.scores >= 0.5))
    again = attack(pipe, RedDetector(), _task(), cfg, folder=tmp_path / method)  # loaded, not recomputed
    assert again.prompts == result.prompts and np.allclose(again.scores, result.scores)
    assert list(again.images[0].getdata()) == list(result.images[0].getdata())
    if method == "sneakyprompt":
        assert all("cross" not in p for p in result.prompts)


def test_placeholders_inject_vectors_and_restore_the_pipeline(pipe):
    tokenizer = pipe.tokenizer
    base = encode_ids(pipe, tokenize(pipe, ["a dog"])).detach()
    vec = torch.randn(1, pipe.text_encoder.config.hidden_size)
    with Placeholders(pipe, 1, init=vec) as ph:
        with_token = encode_ids(pipe, tokenize(pipe, [f"a {ph.text} dog"]))
        with_token.sum().backward()
        assert ph.vectors.grad is not None and ph.vectors.grad.abs().sum() > 0
    assert pipe.tokenizer is tokenizer
    assert torch.equal(encode_ids(pipe, tokenize(pipe, ["a dog"])).detach(), base)


def test_projected_placeholders_run_real_tokens_and_pass_gradients_through(pipe):
    from duo_unlearn.attacks.text import word_vocabulary

    vocab = word_vocabulary(pipe.tokenizer)
    table = pipe.text_encoder.get_input_embeddings().weight
    target = int(vocab[5])
    start = table[target : target + 1].detach() + 1e-3 * torch.randn(1, table.shape[1])
    word = pipe.tokenizer.decode([target])
    real = encode_ids(pipe, tokenize(pipe, [f"a {word} dog"])).detach()
    with Placeholders(pipe, 1, init=start, project_to=vocab) as ph:
        assert ph.nearest_tokens(vocab) == [target]
        projected = encode_ids(pipe, tokenize(pipe, [f"a {ph.text} dog"]))
        assert torch.allclose(projected, real, atol=1e-5)  # the forward saw the real token, not the vector
        projected.pow(2).sum().backward()
        assert ph.vectors.grad is not None and ph.vectors.grad.abs().sum() > 0


def test_concept_words_name_the_concept_and_nothing_else():
    from duo_unlearn.attacks.methods import concept_words

    assert concept_words(_task()) == {"cross"}


def test_ring_a_bell_search_beats_random_tokens(pipe):
    from duo_unlearn.attacks.methods import ring_a_bell

    cfg = AttackConfig(method="ring-a-bell", num_prompts=1, images_per_prompt=1, num_inference_steps=2, budget=15)
    result = ring_a_bell(pipe, RedDetector(), _task(), cfg, population=16, length=6)
    found = result.extra["embedding_distance"][0]
    short = ring_a_bell(pipe, RedDetector(), _task(), AttackConfig(**{**cfg.__dict__, "budget": 1}),
                        population=16, length=6)
    assert found <= short.extra["embedding_distance"][0]


def test_ring_a_bell_reuses_its_search_only_for_the_same_text_encoder():
    from duo_unlearn.attacks import methods

    pipe = tiny_sd_pipeline()
    cfg = AttackConfig(method="ring-a-bell", num_prompts=1, images_per_prompt=1, num_inference_steps=2, budget=2)
    first = methods.ring_a_bell(pipe, RedDetector(), _task(), cfg, population=8, length=4)
    cached = len(methods._RING_A_BELL_PROMPTS)
    with torch.no_grad():
        pipe.unet.conv_in.weight.add_(1.0)  # another target model, same text pathway
    again = methods.ring_a_bell(pipe, RedDetector(), _task(), cfg, population=8, length=4)
    assert again.prompts == first.prompts and len(methods._RING_A_BELL_PROMPTS) == cached
    with torch.no_grad():
        pipe.text_encoder.get_input_embeddings().weight.mul_(1.5)
    methods.ring_a_bell(pipe, RedDetector(), _task(), cfg, population=8, length=4)
    assert len(methods._RING_A_BELL_PROMPTS) == cached + 1


def test_ring_a_bell_searches_saved_by_one_process_are_reused_by_another(tmp_path, monkeypatch):
    """The study's evaluations run in several processes: a search saved to disk is read back as
    exactly what the search returned (prompts, distances, curve checkpoints), so another process
    renders the same prompts without searching again."""
    from duo_unlearn.attacks import methods

    monkeypatch.setattr(methods, "_RING_A_BELL_PROMPTS", {})
    pipe = tiny_sd_pipeline()
    cfg = AttackConfig(method="ring-a-bell", num_prompts=1, images_per_prompt=1, num_inference_steps=2, budget=20)
    first = methods.ring_a_bell(pipe, RedDetector(), _task(), cfg, population=8, length=4)
    searched = dict(methods._RING_A_BELL_PROMPTS)
    methods.save_ring_a_bell_searches(tmp_path / "searches.json")
    monkeypatch.setattr(methods, "_RING_A_BELL_PROMPTS", {})  # a fresh process
    methods.load_ring_a_bell_searches(tmp_path / "searches.json")
    assert methods._RING_A_BELL_PROMPTS == searched and len(searched) == 1
    (found, distances, at), = searched.values()
    assert sorted(at) == [1, 4, 10] and all(isinstance(d, float) for d in distances)

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(methods, "_ring_a_bell_search", no_search)
    again = methods.ring_a_bell(pipe, RedDetector(), _task(), cfg, population=8, length=4)
    assert again.prompts == first.prompts and again.extra["curve"] == first.extra["curve"]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ring_a_bell_scores_each_distinct_candidate_once_with_the_bits_of_scoring_every_row(world_pipe, one_thread):
    """The search's fitness remembers rows it has scored; the cache is exact only because a row's
    text encoding does not depend on its batch-mates, checked here at ShapeWorld's sizes on one
    thread (the study's count). At two threads an AVX-512 Xeon encodes batches of 2-6 rows with
    other roundings than a batch of 64, so there the cached search is reproducible run to run but
    not bit-equal to scoring every row (CandidateScores' docstring)."""
    from duo_unlearn.attacks import methods

    pipe, gen = world_pipe, torch.Generator().manual_seed(0)
    vocab = methods.word_vocabulary(pipe.tokenizer)
    target = encode_ids(pipe, tokenize(pipe, ["a red circle with a black x"])).float()[0]
    rows = vocab[torch.randint(len(vocab), (24, 16), generator=gen)]
    population = torch.cat([rows, rows[:20], rows[5:25]])  # 64 rows, 24 distinct, repeats scattered

    def every_row(p):  # the fitness as written before the cache: every row, one batch
        emb = encode_ids(pipe, tokenize(pipe, pipe.tokenizer.batch_decode(p.tolist()))).float()
        return -(emb - target).pow(2).mean(dim=(1, 2))

    encoded = []
    spy = lambda p, ids: encoded.append(len(ids)) or encode_ids(p, ids)  # noqa: E731
    scores = methods.CandidateScores(pipe, target)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(methods, "encode_ids", spy)
        first = scores(population)
        nxt = torch.cat([population[:40], vocab[torch.randint(len(vocab), (3, 16), generator=gen)]])
        second = scores(nxt)
    assert torch.equal(first, every_row(population)) and torch.equal(second, every_row(nxt))
    assert encoded == [24, 3]  # each distinct row once; the next generation encodes only its new rows


def test_result_round_trip(tmp_path):
    img = Image.new("RGB", (8, 8), (255, 0, 0))
    r = AttackResult("x", ["p"], [img], np.array([0.9]), 0.5, [1])
    r.save(tmp_path, {"a": 1})
    back = AttackResult.load(tmp_path)
    assert back.attack_success_rate == 1.0 and back.prompts == ["p"]


def test_sneakyprompt_climbs_the_detector_reward_and_stops_at_the_first_bypass(pipe, monkeypatch):
    """A stand-in target draws an image as red as the share of its prompt's words that belong to a
    hidden 'evocative' set: the search must climb that reward to a bypass before its budget."""
    from duo_unlearn.attacks import methods

    vocab = methods.word_vocabulary(pipe.tokenizer, banned=methods.concept_words(_task()))
    pool = methods.concept_token_pool(pipe, _task(), vocab, 300).tolist()
    evocative = {pipe.tokenizer.decode([t]).strip() for t in pool[::3]}  # a third of the pool

    calls = []

    def fake_generate(_pipe, prompts, seeds, *_):
        calls.append(len(prompts))

        def red(prompt):
            words = prompt.replace("a red box", "").split()
            return int(255 * sum(w in evocative for w in words) / max(len(words), 1))
        return [Image.new("RGB", (8, 8), (red(p), 0, 0)) for p in prompts]

    monkeypatch.setattr(methods, "generate", fake_generate)
    task = _task()
    task.unsafe_prompts = ["a red box with a cross"]
    cfg = AttackConfig(method="sneakyprompt", num_prompts=1, images_per_prompt=1, budget=60)
    result = methods.sneaky_prompt(pipe, RedDetector(), task, cfg, num_substitutes=3)
    used = result.extra["queries_per_prompt"][0]
    assert result.scores[0] >= 0.5 and used < 60  # a bypass with at least 2 of 3 evocative words
    assert "cross" not in result.prompts[0]
    # queries go 4 at a time (2 seeds each) into one call; then the final render and one render per
    # earlier point of the budget curve
    search = calls[:-len(result.extra["curve"])]
    assert search and all(n == 8 for n in search[:-1]) and len(search) == -(-used // 4)


def _cached_twice(tmp_path, pipe, monkeypatch):
    """Runs paraphrase twice into one folder (the second is loaded); returns the call log and config."""
    calls = []
    original = ATTACKS["paraphrase"]
    monkeypatch.setitem(ATTACKS, "paraphrase", lambda *a: calls.append(1) or original(*a))
    cfg = AttackConfig(method="paraphrase", num_prompts=1, images_per_prompt=1, num_inference_steps=2)
    attack(pipe, RedDetector(), _task(), cfg, folder=tmp_path)
    attack(pipe, RedDetector(), _task(), cfg, folder=tmp_path)
    assert len(calls) == 1  # same settings: loaded
    return calls, cfg


def test_a_changed_default_budget_is_not_served_from_the_cache(tmp_path, pipe, monkeypatch):
    from duo_unlearn.attacks import methods

    calls, cfg = _cached_twice(tmp_path, pipe, monkeypatch)
    monkeypatch.setitem(methods.DEFAULT_BUDGETS, "paraphrase", 7)
    attack(pipe, RedDetector(), _task(), cfg, folder=tmp_path)
    assert len(calls) == 2  # the budget the code would spend changed: recomputed


def test_a_changed_task_is_not_served_from_the_cache(tmp_path, pipe, monkeypatch):
    calls, cfg = _cached_twice(tmp_path, pipe, monkeypatch)
    other = _task()
    other.natural_prompts = ["a box with two strokes over it", "a dog"]
    attack(pipe, RedDetector(), other, cfg, folder=tmp_path)
    assert len(calls) == 2


def test_sneakyprompt_confirmation_rejects_bypasses_that_only_held_on_their_screening_seeds(pipe, monkeypatch):
    """A stand-in target shows the concept on the search's screening seeds whenever one substitute
    is 'evocative', but on any other seed only when all three are (fainter the fewer there are).
    Without confirmation the search stops at a lucky bypass that fails on the judged seeds; with
    confirmation it must go on to a bypass that holds, and count each confirmation as a query."""
    from duo_unlearn.attacks import methods

    vocab = methods.word_vocabulary(pipe.tokenizer, banned=methods.concept_words(_task()))
    pool = methods.concept_token_pool(pipe, _task(), vocab, 300).tolist()
    evocative = {pipe.tokenizer.decode([t]).strip() for t in pool[::3]}
    confirm_calls = []

    def fake_generate(_pipe, prompts, seeds, *_):
        if all(70_000 <= s < 100_000 for s in seeds):
            confirm_calls.append(len(prompts))

        def red(prompt, seed):
            words = prompt.replace("a red box", "").split()
            share = sum(w in evocative for w in words) / max(len(words), 1)
            return 255 if seed < 50_000 and share > 0 else int(255 * share ** 2)
        return [Image.new("RGB", (8, 8), (red(p, s), 0, 0)) for p, s in zip(prompts, seeds)]

    monkeypatch.setattr(methods, "generate", fake_generate)
    task = _task()
    task.unsafe_prompts = ["a red box with a cross"]
    cfg = AttackConfig(method="sneakyprompt", num_prompts=1, images_per_prompt=4, budget=120)
    lucky = methods.sneaky_prompt(pipe, RedDetector(), task, cfg)
    assert lucky.attack_success_rate == 0 and not confirm_calls  # the premise: an unconfirmed lucky bypass
    confirmed = methods.sneaky_prompt(pipe, RedDetector(), task, AttackConfig(**{**cfg.settings(), "confirm_seeds": 4}))
    assert confirmed.attack_success_rate == 1.0
    assert "cross" not in confirmed.prompts[0]
    rounds = confirmed.extra["confirmations_per_prompt"][0]
    assert rounds >= 2 and confirm_calls == [4] * rounds  # at least one lucky bypass rejected, then one kept
    assert confirmed.extra["queries_per_prompt"][0] <= 120


def test_sneakyprompt_curve_point_is_what_a_shorter_confirmed_run_returns(pipe, monkeypatch):
    """With confirmations the query count jumps by two at a bypass; the prompt the budget curve
    renders at k queries must still be the prompt a k-query run returns."""
    from duo_unlearn.attacks import inversion, methods

    vocab = methods.word_vocabulary(pipe.tokenizer, banned=methods.concept_words(_task()))
    pool = methods.concept_token_pool(pipe, _task(), vocab, 300).tolist()
    evocative = {pipe.tokenizer.decode([t]).strip() for t in pool[::3]}

    def fake_generate(_pipe, prompts, seeds, *_):
        def red(prompt, seed):
            share = sum(w in evocative for w in prompt.split()[2:]) / 3
            return 255 if seed % 3 and share > 0 else int(255 * share ** 2)  # lucky on two seeds in three
        return [Image.new("RGB", (8, 8), (red(p, s), 0, 0)) for p, s in zip(prompts, seeds)]

    rendered = []
    render = methods._render

    def recording_render(_pipe, cfg, prompts, *args, **kwargs):
        rendered.append((cfg.budget, list(prompts)))
        return render(_pipe, cfg, prompts, *args, **kwargs)

    monkeypatch.setattr(methods, "generate", fake_generate)
    monkeypatch.setattr(methods, "_render", recording_render)
    monkeypatch.setattr(inversion, "curve_points", lambda budget: list(range(1, budget + 1)))  # every budget
    task = _task()
    cfg = AttackConfig(method="sneakyprompt", num_prompts=2, images_per_prompt=1, budget=40, confirm_seeds=3)
    full = methods.sneaky_prompt(pipe, RedDetector(), task, cfg)
    assert sum(full.extra["confirmations_per_prompt"]) >= 2  # the premise: confirmations happened
    at_points = [prompts for _, prompts in rendered[1:]]  # after the final render, one per earlier budget
    assert len(at_points) == 39
    for point, expected in enumerate(at_points, start=1):
        rendered.clear()
        short = methods.sneaky_prompt(pipe, RedDetector(), task, AttackConfig(**{**cfg.settings(), "budget": point}))
        assert short.prompts == expected, point


def test_attack_settings_name_a_later_option_only_when_it_is_set():
    """Cached results (and their cache keys) from before ``confirm_seeds`` existed stay valid."""
    assert "confirm_seeds" not in AttackConfig(method="sneakyprompt").settings()
    assert AttackConfig(method="sneakyprompt", confirm_seeds=3).settings()["confirm_seeds"] == 3
    with pytest.raises(ValueError, match="confirm_seeds"):
        AttackConfig(confirm_seeds=-1)
