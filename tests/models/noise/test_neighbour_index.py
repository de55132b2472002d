"""The inverted-file neighbour search: close to the exact one, deterministic, saved whole."""

from __future__ import annotations

import numpy as np
import torch

from pairsift.models.noise.neighbour_index import NeighbourIndex, anchor_rows, list_count


def _pairs(n: int, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    topic = rng.integers(0, 40, n)
    image = centres[topic] + 0.6 * rng.normal(size=(n, dim))
    text = centres[topic] @ rng.normal(size=(dim, dim)) + 0.6 * rng.normal(size=(n, dim))
    text[: n // 3] = text[rng.permutation(n // 3)]  # a third mismatched
    return image.astype(np.float32), text.astype(np.float32)


def _build(image: np.ndarray, text: np.ndarray, probes: int, seed: int = 0) -> NeighbourIndex:
    return NeighbourIndex.build(image, text, [f"k{i}" for i in range(len(image))], 10,
                                probes=probes, seed=seed)


def test_ivf_search_tracks_the_exact_consistency() -> None:
    image, text = _pairs(4000)
    own = np.arange(len(image))
    exact = _build(image, text, probes=0).score(image, text, own, own)
    ivf_index = _build(image, text, probes=8)
    assert ivf_index.probes == 8 and ivf_index.image_centroids is not None
    approx = ivf_index.score(image, text, own, own)
    assert np.corrcoef(exact, approx)[0, 1] > 0.99
    assert np.median(np.abs(exact - approx)) < 0.01


def test_a_pair_never_counts_its_own_anchor() -> None:
    image, text = _pairs(1000)
    index = _build(image, text, probes=8)
    own = np.arange(len(image))
    excluded = index.score(image, text, own, own)
    included = index.score(image, text)
    # its own anchor is its nearest neighbour and carries its own caption: a higher score
    assert np.mean(included > excluded) > 0.9


def test_the_same_index_and_scores_on_any_thread_count_and_after_a_reload(tmp_path) -> None:
    import faiss

    image, text = _pairs(3000, seed=1)
    own = np.arange(len(image))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            faiss.omp_set_num_threads(threads)
            index = _build(image, text, probes=4, seed=3)
            results.append((index.image_centroids, index.score(image, text, own, own)))
    finally:
        torch.set_num_threads(before)
        faiss.omp_set_num_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    index.save(str(tmp_path / "n"), {"null_counts": [1, 2]})
    loaded = NeighbourIndex.load(str(tmp_path / "n"))
    assert loaded.probes == 4 and NeighbourIndex.meta(str(tmp_path / "n"))["null_counts"] == [1, 2]
    np.testing.assert_array_equal(loaded.score(image, text, own, own), results[1][1])
    # rows score alike in any chunking
    half = len(image) // 2
    parts = np.concatenate([loaded.score(image[:half], text[:half], own[:half], own[:half]),
                            loaded.score(image[half:], text[half:], own[half:], own[half:])])
    np.testing.assert_array_equal(parts, results[1][1])


def test_few_anchors_search_exactly_and_anchor_sampling_ignores_order() -> None:
    assert list_count(50, 8) == 0 and list_count(20_000, 8) == 141 and list_count(20_000, 0) == 0
    keys = [f"x{i}" for i in range(300)]
    chosen = {keys[i] for i in anchor_rows(keys, 40, seed=2)}
    assert len(chosen) == 40
    assert {keys[::-1][i] for i in anchor_rows(keys[::-1], 40, seed=2)} == chosen
