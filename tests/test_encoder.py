"""QueryEncoder embeds an image query with several models side by side (the ranking model and the "no close match"
judge's) and gives exactly the vectors, and so the results, of embedding them one after the other; each model
still embeds one query at a time."""

import threading
import time

import numpy as np
import pytest
from PIL import Image

from retrieval.embedders import IMAGE, get_embedder
from retrieval.embedders.registry import Availability, EmbedderSpec, register, unregister
from retrieval.search import SearchEngine
from test_novelty import LEVELS, GreyEmbedder, grey, grey_index  # noqa: F401 - grey_index: a fixture
from test_novelty_joint import stripes, two_model_index  # noqa: F401 - two_model_index: a fixture


def noise() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8), mode="L")


def both_ways(engine: SearchEngine, query, **options):
    """The same query answered with the passes side by side, then one after the other."""
    answers = []
    for concurrent in (True, False):
        engine.encoder.concurrent = concurrent
        answers.append(engine.search_image(query, **options))
    return answers


def test_side_by_side_passes_give_the_results_of_passes_in_a_row(two_model_index):  # noqa: F811
    engine = SearchEngine(two_model_index[0])
    assert engine.encoder.concurrent  # the default on a machine with more than one core
    for query in (grey(LEVELS["beta"], seed=91), grey(0.97, seed=92), stripes()):
        for model in ("grey", "texture"):
            side_by_side, in_a_row = both_ways(engine, query, model=model, k=5)
            assert side_by_side.judged_by == "grey+texture" and side_by_side.in_collection is not None
            assert side_by_side == in_a_row  # hits, scores, suggestion, judgement: every field


class SlowGrey(GreyEmbedder):
    """The grey embedder taking 30 ms a pass, counting the passes that run at once (per model)."""

    active: dict = {}
    most: dict = {}
    overlapped = threading.Event()
    guard = threading.Lock()

    def embed_images(self, images):
        with self.guard:
            self.active[self.name] = self.active.get(self.name, 0) + 1
            self.most[self.name] = max(self.most.get(self.name, 0), self.active[self.name])
            if sum(self.active.values()) > 1:
                self.overlapped.set()
        time.sleep(0.03)
        with self.guard:
            self.active[self.name] -= 1
        return super().embed_images(images)


@pytest.fixture
def slow_models():
    names = ["slow-a", "slow-b"]
    for name in names:
        register(EmbedderSpec(name, "test", (IMAGE,), IMAGE, 11, "tests", "grey level, slowly", SlowGrey,
                              lambda: Availability(True, "defined in tests"), version=f"{name}:1"))
    try:
        yield names
    finally:
        for name in names:
            unregister(name)


def test_each_model_embeds_one_query_at_a_time_while_the_models_run_side_by_side(
        two_model_index, slow_models):  # noqa: F811
    from retrieval.encoder import QueryEncoder
    from retrieval.layout import IndexFolder

    encoder = QueryEncoder(IndexFolder(two_model_index[0]).require_current(), concurrent=True)
    answers, failures = [], []

    def query(seed):
        try:
            answers.append((seed, encoder.images(slow_models, grey(0.5, seed=seed))))
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=query, args=(seed,)) for seed in range(8)]  # as the app serves requests
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and SlowGrey.overlapped.is_set()  # the two models did embed at the same time
    assert SlowGrey.most == {"slow-a": 1, "slow-b": 1}  # never one model twice at once
    for seed, vectors in answers:
        expected = GreyEmbedder().embed_images([grey(0.5, seed=seed)])
        assert set(vectors) == set(slow_models) and all(np.array_equal(v, expected) for v in vectors.values())


def test_a_failing_pass_fails_the_query_with_its_own_error(two_model_index, monkeypatch):  # noqa: F811
    engine = SearchEngine(two_model_index[0])
    texture = get_embedder("texture")
    monkeypatch.setattr(texture, "embed_images", lambda images: (_ for _ in ()).throw(RuntimeError("texture broke")))
    with pytest.raises(RuntimeError, match="texture broke"):
        engine.search_image(grey(LEVELS["beta"], seed=95), model="grey", k=3)


# --- the real models ----------------------------------------------------------------------------------------

def assert_same_answer(a, b) -> None:
    """The same rows in the same order, the same judgement; scores and vectors equal up to fp32 rounding: on a CPU
    without native bf16 the real models run fp32, whose kernels may sum in another order when two passes share the
    cores (differences of about 1e-7)."""
    assert [hit.row for hit in a.hits] == [hit.row for hit in b.hits]
    np.testing.assert_allclose([hit.score for hit in a.hits], [hit.score for hit in b.hits], rtol=0, atol=1e-5)
    assert (a.model, a.in_collection, a.judged_by, list(a.suggestion)) == (b.model, b.in_collection, b.judged_by,
                                                                           list(b.suggestion))
    np.testing.assert_allclose(list(a.suggestion.values()), list(b.suggestion.values()), rtol=0, atol=1e-4)
    assert abs((a.match_score or 0) - (b.match_score or 0)) <= 1e-3


def test_with_the_real_models_side_by_side_gives_the_same_vectors_and_results(subset_index, real_subset):
    import csv

    engine = SearchEngine(subset_index)
    with open(real_subset / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    films = [real_subset / row["file_name"] for row in rows[::max(1, len(rows) // 6)]]
    for query in [*films, noise()]:
        for model in ("efficientnet-lite0", "xray-lite0"):  # whichever model ranks
            side_by_side, in_a_row = both_ways(engine, query, model=model, k=10)
            assert side_by_side.judged_by == "efficientnet-lite0+xray-lite0"
            assert_same_answer(side_by_side, in_a_row)
    engine.encoder.concurrent = True
    vectors = engine.encoder.images(["efficientnet-lite0", "xray-lite0"], films[0])
    for model, vector in vectors.items():  # one pass alone, in this thread
        np.testing.assert_allclose(vector, engine.encoder.image(model, films[0]), rtol=0, atol=1e-6)


def test_the_encoder_s_workers_share_the_cores_and_leave_every_other_thread_alone(subset_index):
    import torch

    from retrieval.encoder import WORKERS

    engine = SearchEngine(subset_index)
    before = torch.get_num_threads()
    engine.search_image(noise(), k=3)  # starts the workers
    in_worker = engine.encoder._workers().submit(torch.get_num_threads).result()
    assert in_worker == max(1, before // WORKERS)
    assert torch.get_num_threads() == before  # this thread's count is untouched
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(torch.get_num_threads()))
    thread.start(), thread.join()
    assert elsewhere == [before]  # and so is a thread started later (as the app's request threads are)


def test_loading_a_model_runs_it_on_a_query_sized_input_so_the_first_query_does_not_wait(
        grey_index, monkeypatch):  # noqa: F811
    """A traced pass (embedders/tracing.py) is traced on its first call and optimised on its second: the engine's
    warm-up makes both calls, at a query's size, before any query comes."""
    from retrieval.encoder import WARM_PASSES

    engine, embedder = SearchEngine(grey_index[0]), get_embedder("grey")
    embedded, original = [], embedder.embed_images
    monkeypatch.setattr(embedder, "embed_images", lambda images: embedded.append(len(images)) or original(images))
    engine.encoder.load("grey")
    assert WARM_PASSES >= 2 and embedded == [1] * WARM_PASSES
