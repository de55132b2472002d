"""Streams a ``PairSource`` plus a ``NoisePlan`` into img2dataset-layout shards.

Memory is bounded by one shard of samples plus the plan's O(N) integer arrays: items are
drawn (or read) index by index, and a shuffled pair fetches its donor's caption or image by
index. Finished shards are skipped on a rerun with the same settings (``_settings.json``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from pairsift.models.storage.atomic import exists, join, read_json, write_json
from pairsift.pipeline.datasets.common import PairSource, Texts
from pairsift.pipeline.datasets.noise import (
    NoisePlan,
    clean_plan,
    corrupt_text,
    make_plan,
    pair_rng,
    replace_content_word,
)
from pairsift.pipeline.io.shard_writer import ShardSample, shard_complete, write_shard

log = logging.getLogger(__name__)
BASE_FIELDS = (
    "key", "caption", "is_noisy", "noise_kind", "split", "original_key",
    "image_source", "caption_source", "noise_detail",
)


def source_groups(source: PairSource) -> np.ndarray:
    return np.fromiter((source.group(i) for i in range(len(source))), dtype=np.int64,
                       count=len(source))


def source_splits(source: PairSource) -> np.ndarray:
    return np.array([source.split(i) for i in range(len(source))], dtype=object)


def lang_masks(source: PairSource, langs: list[str]) -> dict[str, np.ndarray]:
    """Which items carry a translation in each of ``langs``."""
    masks = {lang: np.zeros(len(source), dtype=bool) for lang in langs}
    for i in range(len(source)):
        captions = source.texts(i).captions
        for lang in langs:
            masks[lang][i] = lang in captions
    return masks


def plan_for(
    source: PairSource, mode: str, rate: float, seed: int, noise_langs: list[str]
) -> NoisePlan:
    """The noise plan over the train split (the test split stays clean)."""
    if rate == 0.0:
        return clean_plan(len(source), seed)
    groups = source_groups(source)
    train = np.flatnonzero(source_splits(source) == "train")
    masks = lang_masks(source, noise_langs) if mode == "translation" else None
    near_miss = None
    if mode in ("neighbour", "mixed"):
        found = [source.near_miss_group(i) for i in range(len(source))]
        if any(g is None for g in found):
            raise ValueError(f"{mode} noise needs near misses; source {source.name!r} defines none")
        near_miss = np.asarray(found, dtype=np.int64)
    return make_plan(groups, train, mode, rate, seed, masks, near_miss)


def noisy_texts(
    source: PairSource, plan: NoisePlan, index: int, noise_langs: list[str]
) -> tuple[Texts, int, str | None]:
    """Texts pair ``index`` carries under ``plan``: (texts, caption donor row, detail)."""
    text_row = index
    if plan.takes_caption(index):
        text_row = int(plan.partner[index])
    texts = source.texts(text_row)
    detail: str | None = None
    if not plan.noisy[index]:
        return texts, text_row, detail
    mode = plan.mode_of(index)
    if mode == "neighbour":
        detail = f"near miss of {source.key(index)}"
    if mode == "partial":
        texts, detail = partial_texts(source, index, plan.seed)
    elif mode == "translation":
        captions = dict(texts.captions)
        changed: list[str] = []
        for salt, lang in enumerate(noise_langs):
            partner = int(plan.trans_partner[lang][index])
            if lang not in captions or partner < 0:
                continue
            donor = source.texts(partner).captions.get(lang, "")
            if plan.trans_replace is not None and plan.trans_replace[index]:
                captions[lang] = donor
                changed.append(f"{lang}:replaced")
            else:
                captions[lang] = corrupt_text(captions[lang], donor, pair_rng(plan.seed, index, salt))
                changed.append(f"{lang}:corrupted")
        texts, detail = Texts(texts.caption, captions), ",".join(changed)
    return texts, text_row, detail


def partial_texts(source: PairSource, index: int, seed: int) -> tuple[Texts, str]:
    """Item ``index``'s texts with one content word changed, and what changed: the source's
    structured edit where it knows its captions, else a word-level replacement."""
    rng = pair_rng(seed, index)
    edit = source.partial(index, rng)
    if edit is not None:
        return edit.texts, edit.detail
    texts = source.texts(index)
    caption, detail = replace_content_word(
        texts.caption, rng, getattr(source, "noun_vocabulary", lambda: [])()
    )
    return Texts(caption, dict(texts.captions)), detail


def make_sample(
    source: PairSource,
    plan: NoisePlan,
    index: int,
    ship_langs: list[str] | None,
    noise_langs: list[str],
    ground_truth: bool = True,
) -> ShardSample:
    image_row = index
    if plan.mode == "image" and plan.noisy[index]:
        image_row = int(plan.partner[index])
    texts, text_row, detail = noisy_texts(source, plan, index, noise_langs)
    image_bytes, ext = source.image(image_row)
    key = f"{index:09d}"
    captions = {
        lang: text for lang, text in sorted(texts.captions.items())
        if ship_langs is None or lang in ship_langs
    }
    meta: dict[str, Any] = {
        "key": key,
        "is_noisy": bool(plan.noisy[index]) if ground_truth else None,
        "noise_kind": plan.kind(index) if ground_truth else None,
        "split": source.split(index),
        "original_key": source.key(index),
        "image_source": source.key(image_row),
        "caption_source": source.key(text_row),
        "noise_detail": detail,
        **source.extra(index),
    }
    files = {ext: image_bytes, "txt": texts.caption.encode("utf-8")}
    for lang, text in captions.items():
        files[f"{lang}.txt"] = text.encode("utf-8")
    files["json"] = json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
    row = {**meta, "caption": texts.caption}
    for lang, text in captions.items():
        row[f"caption_{lang}"] = text
    return ShardSample(key, files, row)


def parquet_schema(source: PairSource, ship_langs: list[str] | None) -> pa.Schema:
    langs = source.langs() if ship_langs is None else [
        lang for lang in source.langs() if lang in ship_langs
    ]
    fields = [pa.field(name, pa.bool_() if name == "is_noisy" else pa.string()) for name in BASE_FIELDS]
    fields += [pa.field(f"caption_{lang}", pa.string()) for lang in langs]
    fields += [pa.field(name, pa.string()) for name in source.extra_fields()]
    return pa.schema(fields)


def _shard_ranges(size: int, shard_size: int) -> Iterator[tuple[int, int, int]]:
    for number, start in enumerate(range(0, size, shard_size)):
        yield number, start, min(start + shard_size, size)


def build_dataset(
    source: PairSource,
    out_dir: str,
    *,
    noise: float = 0.0,
    mode: str = "caption",
    seed: int = 0,
    shard_size: int = 10_000,
    ship_langs: list[str] | None = None,
    noise_langs: list[str] | None = None,
    ground_truth: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write ``source`` with noise to ``out_dir``; returns the summary (also ``_dataset.json``).

    ``ship_langs`` limits which translations are written (None: all the source has);
    ``noise_langs`` are the languages translation noise corrupts (default: ``ship_langs``
    or every language of the source).

    Why one piece: one linear pass (plan the noise, write shard by shard, summarise) whose steps
    share the plan and the running counts.
    """
    if shard_size < 1:
        raise ValueError("shard size must be at least 1")
    if not ground_truth and noise > 0:
        raise ValueError(f"{source.name} has no ground truth: build it without --noise")
    noise_langs = list(noise_langs or ship_langs or source.langs())
    settings = {
        "dataset": source.name, "pairs": len(source), "noise": noise, "mode": mode,
        "seed": seed, "shard_size": shard_size, "ship_langs": ship_langs,
        "noise_langs": noise_langs if mode == "translation" else None,
    }
    settings_path = join(out_dir, "_settings.json")
    if exists(settings_path) and read_json(settings_path) != settings:
        raise ValueError(
            f"{out_dir} holds a dataset built with other settings ({read_json(settings_path)}); "
            "choose an empty output folder"
        )
    write_json(settings_path, settings)
    plan = plan_for(source, mode, noise, seed, noise_langs)
    schema = parquet_schema(source, ship_langs)
    shard_count = (len(source) + shard_size - 1) // shard_size
    started = time.perf_counter()
    for number, start, stop in _shard_ranges(len(source), shard_size):
        name = f"{number:05d}"
        if shard_complete(out_dir, name):
            continue
        samples: list[ShardSample] = []
        skipped: list[dict[str, str]] = []
        for i in range(start, stop):
            try:
                samples.append(make_sample(source, plan, i, ship_langs, noise_langs, ground_truth))
            except (ValueError, OSError) as exc:  # an unreadable source file skips one pair
                skipped.append({"original_key": source.key(i), "error": str(exc)})
                log.warning("skipping pair %d: %s", i, exc)
        noisy = sum(1 for s in samples if s.row.get("is_noisy"))
        write_shard(out_dir, name, samples, stats={"noisy": noisy, "skipped": skipped},
                    schema=schema, count_by="noise_kind")
        if progress is not None:
            rate = stop / max(time.perf_counter() - started, 1e-9)
            progress(f"shard {number + 1}/{shard_count}: {stop}/{len(source)} pairs ({rate:.0f}/s)")
    splits = source_splits(source)
    train = splits == "train"
    summary = {
        **settings,
        "shards": shard_count,
        "noisy": int(plan.noisy.sum()) if ground_truth else None,
        "true_noise_ratio": plan.ratio() if ground_truth else None,
        "train_noise_ratio": plan.ratio(train) if ground_truth else None,
        "by_split": {s: int((splits == s).sum()) for s in sorted(set(splits.tolist()))},
    }
    if mode in ("neighbour", "mixed"):
        summary["near_miss_fallbacks"] = plan.fallbacks
    write_json(join(out_dir, "_dataset.json"), summary)
    return summary
