"""`pairsift bench crosslingual` on a tiny in-memory dataset: noise ground truth, detection,
curation, retrieval items and the table writer (no towers, no translator)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest
import torch

from pairsift.benchmarks.crosslingual import render_table, write_report
from pairsift.benchmarks.crosslingual_data import (
    CrosslingualData,
    TextEmbedder,
    TranslatedSource,
    apply_translation_noise,
)
from pairsift.benchmarks.crosslingual_runs import (
    DETECTORS,
    MODELS,
    SeedResult,
    curate,
    detect,
    eval_items,
)
from pairsift.benchmarks.embedding_cache import CleanEmbeddings
from pairsift.models.config import PairsiftConfig
from pairsift.models.metrics import detection_auc
from pairsift.models.pairdata import PairEmbeddings
from pairsift.models.training.heads import ProjectionHeads
from pairsift.pipeline.datasets.common import BaseSource, Texts

N, DIM = 24, 16
WORDS = ["frog", "apple", "kettle", "tiger", "boat", "house", "star", "drum", "lamp", "kite",
         "moon", "fish"]


class TinySource(BaseSource):
    """24 items, the last 4 in the test split; English captions, no images needed."""

    name = "tiny"

    def __len__(self) -> int:
        return N

    def key(self, index: int) -> str:
        return f"item{index:03d}"

    def split(self, index: int) -> str:
        return "test" if index >= N - 4 else "train"

    def group(self, index: int) -> int:
        return index

    def texts(self, index: int) -> Texts:
        return Texts(f"A big {WORDS[index % 12]} number {index} on a table.", {})

    def image(self, index: int) -> tuple[bytes, str]:
        raise AssertionError("the benchmark's noise never touches images")


def _hash_encode(texts: list[str]) -> torch.Tensor:
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rows.append(np.random.default_rng(seed).normal(size=DIM))
    x = torch.tensor(np.array(rows), dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


def _data(tmp_path: Any) -> tuple[CrosslingualData, TextEmbedder]:
    base = TinySource()
    mt = {
        "pt": [f"Um grande {WORDS[i % 12]} numero {i} sobre uma mesa." for i in range(N)],
        "es": [f"Un gran {WORDS[i % 12]} numero {i} sobre una mesa." for i in range(N)],
    }
    embed = TextEmbedder(str(tmp_path), encode=_hash_encode)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(N, DIM)).astype(np.float32)
    clean = CleanEmbeddings(
        image=image, text=image.copy(), groups=np.arange(N, dtype=np.int64),
        splits=np.array([base.split(i) for i in range(N)]),
    )
    refs = {lang: embed(texts) for lang, texts in mt.items()}
    refs["es"][N - 1] = np.nan  # one test item without a human reference
    src_ml = embed([base.texts(i).caption for i in range(N)])
    data = CrosslingualData(clean, src_ml, mt, {k: embed(v) for k, v in mt.items()},
                            TranslatedSource(base, mt), refs)
    return data, embed


def test_corruption_ground_truth_is_honoured(tmp_path: Any) -> None:
    data, embed = _data(tmp_path)
    noisy = apply_translation_noise(data, 0.5, seed=3, embed=embed)
    assert list(noisy.rows) == list(range(N - 4))  # the train split only
    for lang in ("pt", "es"):
        pairs = zip(noisy.texts[lang], noisy.rows, strict=True)
        changed = np.array([t != data.mt[lang][i] for t, i in pairs])
        assert np.array_equal(noisy.is_noisy[lang], changed)
        assert noisy.is_noisy[lang].sum() == 10  # round(0.5 * 20)
        replaced = noisy.kind[lang] == "replaced"
        assert set(noisy.kind[lang][noisy.is_noisy[lang]]) <= {"replaced", "corrupted"}
        for j in np.flatnonzero(replaced):  # another pair's translation, verbatim
            assert noisy.texts[lang][j] in data.mt[lang] and noisy.texts[lang][j] != \
                data.mt[lang][noisy.rows[j]]
        assert np.array_equal(noisy.emb[lang], embed(noisy.texts[lang]))
    assert np.array_equal(noisy.is_noisy["pt"], noisy.is_noisy["es"])  # noise picks pairs
    again = apply_translation_noise(data, 0.5, seed=3, embed=embed)
    assert again.texts == noisy.texts  # deterministic per seed
    before = embed.embedded
    embed(noisy.texts["pt"])
    assert embed.embedded == before  # cached by content


def test_detection_ranks_corrupted_translation_above_faithful(tmp_path: Any) -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(size=(N, DIM)).astype(np.float32)
    src /= np.linalg.norm(src, axis=1, keepdims=True)
    is_noisy = np.arange(N) % 4 == 0
    faithful = src + 0.05 * rng.normal(size=src.shape).astype(np.float32)
    tgt = np.where(is_noisy[:, None], np.roll(src, 7, axis=0), faithful).astype(np.float32)
    pairs = PairEmbeddings(src.copy(), src.copy(), {"pt": tgt}, src)
    heads = ProjectionHeads(DIM, DIM, DIM, identity=True, target_text_dims={"pt": DIM})
    cfg = PairsiftConfig()
    cfg.train.num_negatives = 8

    class Noisy:
        emb = {"pt": tgt}

    scores = detect(Noisy(), pairs, heads, cfg)["pt"]  # type: ignore[arg-type]
    assert set(scores) == set(DETECTORS)
    for name in ("pairsift", "consistency", "translation_view", "target_similarity"):
        assert detection_auc(is_noisy, scores[name]) == 1.0, name
    worst_noisy = scores["pairsift"][is_noisy].min()
    assert worst_noisy > scores["pairsift"][~is_noisy].max()


def test_curation_replaces_only_distrusted_translations(tmp_path: Any) -> None:
    data, _ = _data(tmp_path)
    pairs = PairEmbeddings(data.clean.image, data.clean.text, dict(data.mt_emb), data.text_src_ml)
    trusted = {"pt": np.arange(N) % 2 == 0, "es": np.ones(N, dtype=bool)}
    out = curate(pairs, trusted)
    assert np.array_equal(out.text_tgt["pt"][1], data.text_src_ml[1])
    assert np.array_equal(out.text_tgt["pt"][0], data.mt_emb["pt"][0])
    assert np.array_equal(out.text_tgt["es"], data.mt_emb["es"])
    assert np.array_equal(eval_items(data, "pt"), np.arange(N - 4, N))
    assert np.array_equal(eval_items(data, "es"), np.arange(N - 4, N - 1))  # no reference


def _result(seed: int, auc: float) -> SeedResult:
    langs = ("es", "pt")
    recall = {f"{d}_r{k}": 10.0 * k + seed for d in ("i2t", "t2i") for k in (1, 5, 10)}
    return SeedResult(
        seed=seed, rate=0.3,
        auc={lang: {name: auc for name in DETECTORS} for lang in langs},
        auc_by_kind={lang: {"replaced": 0.99, "corrupted": 0.8} for lang in langs},
        noise={lang: 0.3 for lang in langs},
        curation={lang: {"precision": 0.95, "recall": 0.8, "kept_fraction": 0.6}
                  for lang in langs},
        retrieval={m: {lang: dict(recall) for lang in langs} for m in MODELS},
        eval_items={lang: 186 for lang in langs},
    )


def test_table_writer(tmp_path: Any) -> None:
    results = [_result(0, 0.92), _result(1, 0.94)]
    markdown = write_report(results, ["# title", "Command: `pairsift bench crosslingual`"],
                            str(tmp_path))
    assert (tmp_path / "crosslingual.md").read_text().startswith("# title")
    assert "0.930 ± 0.010" in markdown and "Acceptance" in markdown and ": met" in markdown
    for title, _ in DETECTORS.values():
        assert title in markdown
    for title in MODELS.values():
        assert title in markdown
    assert "| 10.5 ± 0.5 | 50.5 ± 0.5 | 100.5 ± 0.5 |" in markdown  # t2i R@1/5/10 per lang
    saved = json.loads((tmp_path / "crosslingual.json").read_text())
    assert [s["seed"] for s in saved["seeds"]] == [0, 1]
    assert "NOT met" in render_table([_result(0, 0.85)])
    with pytest.raises(ValueError):
        render_table([])
