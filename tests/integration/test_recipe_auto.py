"""``recipe=auto``: the real job tries its candidate recipes on validation rows, trains the best
as its model, and says so in the report, the card and the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_config, run_job
from training.core.recipe import FILE, choose
from training.core.run_dir import RunDir
from training.errors import ConfigError
from training.models.config import NumEmbeddings


def _job(tmp_path: Path, *overrides: str) -> tuple[dict, Path]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_job("debug=tiny", "recipe=auto", f"tracking.uri={uri}", *overrides, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    run = tmp_path / "outputs" / "run"
    return json.loads((run / "evaluation.json").read_text()), run


def test_auto_trains_the_best_candidate_by_validation_auc(tmp_path):
    report, run = _job(tmp_path)
    recipe = report["recipe"]
    tried = {c["name"]: c for c in recipe["candidates"]}
    assert list(tried) == ["base", "embeddings", "embeddings_ls"]
    assert all(0.5 < c["valid_auc"] < 1 and c["valid_ece"] >= 0 for c in tried.values())
    best = max(tried.values(), key=lambda c: c["valid_auc"])
    assert recipe["chosen"] == best["name"] and [c["chosen"] for c in tried.values()].count(True) == 1
    # the job's model is that recipe, trained again: the same validation AUC, the same network
    assert report["training"]["best_valid_auc"] == pytest.approx(best["valid_auc"], abs=1e-6)
    bundle = json.loads((run / "checkpoint" / "bundle.json").read_text())
    embedded = bundle["members"][0]["model"]["num_embeddings"] == NumEmbeddings.piecewise
    assert embedded == (best["name"] != "base")
    assert json.loads((run / FILE).read_text())["chosen"] == best["name"]
    card = (run / "model_card.md").read_text()
    assert "Recipe chosen for this file" in card and "embeddings_ls" in card


def test_the_budget_stops_further_candidates_and_a_rerun_reads_the_choice(tmp_path):
    report, run = _job(tmp_path, "recipe.budget_minutes=0.0001")
    tried = report["recipe"]["candidates"]
    assert [c["name"] for c in tried if "valid_auc" in c] == ["base"]  # the first always runs
    assert [c.get("skipped") for c in tried[1:]] == ["budget spent", "budget spent"]
    assert report["recipe"]["chosen"] == "base"
    # a resumed job reads recipe.json and trains nothing to choose (no data, no ranks needed)
    saved = json.loads((run / FILE).read_text())
    saved["chosen"] = "embeddings_ls"
    (run / FILE).write_text(json.dumps(saved))
    cfg, summary = choose(compose_config("recipe=auto"), None, None, RunDir(run))
    assert summary.chosen == "embeddings_ls" and cfg.optim.label_smoothing == 0.1
    assert cfg.model.num_embeddings == NumEmbeddings.piecewise


def test_config_names_a_wrong_candidate_and_refuses_auto_in_a_sweep():
    with pytest.raises(ConfigError, match=r"recipe.candidates\[1\].*gbdt.*one of"):
        compose_config("recipe=auto", "recipe.candidates=[base,gbdt]")
    with pytest.raises(ConfigError, match="recipe.name.*sweep"):
        compose_config("recipe=auto", "sweep=smoke")
