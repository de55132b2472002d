"""The run config and the method's recipes: defaults, files, inheritance, readable errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pairsift.models.config import PairsiftConfig
from pairsift.models.recipe import Recipe, load_recipe, recipe_changes, recipe_names


def test_the_default_recipe_file_is_the_code_default() -> None:
    recipe = load_recipe("pairsift")
    assert dataclasses.replace(recipe, description="") == Recipe()
    assert PairsiftConfig().method == recipe


def test_every_packaged_recipe_loads_and_changes_something() -> None:
    names = recipe_names()
    assert {"pairsift", "ncr", "decl", "contrastive", "pairsift-no-consistency"} <= set(names)
    full = Recipe().to_dict()
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name and recipe.description
        if name != "pairsift":
            assert recipe.to_dict() | {"name": "", "description": ""} != full | {
                "name": "", "description": ""}, f"{name} changes nothing"


def test_a_recipe_file_starts_from_its_base(tmp_path: Path) -> None:
    path = tmp_path / "strict.json"
    path.write_text(json.dumps({"name": "strict", "base": "pairsift-no-null",
                                "division": {"clean_threshold": 0.7}}))
    recipe = load_recipe(str(path))
    assert recipe.division.clean_threshold == 0.7
    assert recipe.mixture.null_model == "none"  # from the base
    assert recipe.train.epochs == Recipe().train.epochs  # from the base's base
    cfg = PairsiftConfig(recipe=str(path))
    assert cfg.division.clean_threshold == 0.7


def test_recipe_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="did you mean 'pairsift-no-null'"):
        load_recipe("pairsift-no-nul")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"base": "pairsift", "division": {"clean_treshold": 0.7}}))
    with pytest.raises(ValueError, match="division.clean_treshold; did you mean division.clean_threshold"):
        load_recipe(str(bad))
    loop = tmp_path / "loop.json"
    loop.write_text(json.dumps({"base": str(loop)}))
    with pytest.raises(ValueError, match="loop"):
        recipe_changes(str(loop))


def test_unknown_run_key_suggests_the_closest_one() -> None:
    with pytest.raises(ValueError, match="encoder.batchsize; did you mean encoder.batch_size"):
        PairsiftConfig.from_dict({"encoder": {"batchsize": 8}})
    with pytest.raises(ValueError, match="unknown config key divison"):
        PairsiftConfig.from_dict({"divison": {}})  # method keys live in recipes


def test_a_recorded_config_round_trips_with_its_method() -> None:
    cfg = PairsiftConfig(recipe="ncr", seed=3)
    cfg.train.epochs = 2  # as a benchmark or test would tune it
    again = PairsiftConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.train.loss == "ncr" and again.train.epochs == 2
    partial = PairsiftConfig.from_dict({"method": {"division": {"keep_rule": "posterior"}}})
    assert partial.division.keep_rule == "posterior" and partial.mixture == Recipe().mixture


def test_with_method_copies_rather_than_mutates() -> None:
    cfg = PairsiftConfig()
    other = cfg.with_method(division=dataclasses.replace(cfg.division, method="bmm"))
    assert other.division.method == "bmm" and cfg.division.method == "pairsift"


def test_a_recorded_config_reads_back_without_its_recipe_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "base": "pairsift",
                                "division": {"clean_threshold": 0.6}}))
    recorded = json.loads(json.dumps(PairsiftConfig(recipe=str(path)).to_dict()))
    path.unlink()  # e.g. `pairsift train` on that run from another machine
    again = PairsiftConfig.from_dict(recorded)
    assert again.division.clean_threshold == 0.6 and again.recipe == str(path)


def test_configs_from_before_recipes_are_migrated() -> None:
    old = {
        "encoder": {"spec": "default", "device": "cpu"},
        "translate": {"target_langs": ["pt"], "device": "cuda", "back_translate": True},
        "division": {"keep_hard": True, "keep_rule": "posterior"},
        "train": {"epochs": 3, "refurbish": False, "device": "auto", "max_fit_pairs": 9},
        "mixture": {"bins": 512},
        "max_caption_chars": 99,
        "seed": 4,
    }
    cfg = PairsiftConfig.from_dict(old)
    assert cfg.seed == 4 and cfg.translate.target_langs == ["pt"]
    assert cfg.train.epochs == 3 and cfg.mixture.bins == 512
    assert cfg.division.keep_rule == "posterior"
    assert cfg.division.refurbish is False  # the old train flag gated the same soft labels
    assert cfg.limits.max_caption_chars == 99 and cfg.limits.max_fit_pairs == 9
