"""Evaluation plots: four valid PNG files, also for an imbalanced book."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.governance.plots import save_evaluation_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["roc.png", "ks.png", "calibration.png", "score_distribution.png"]


def _imbalanced(
    n: int = 20_000, default_rate: float = 0.03, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < default_rate).astype(np.int64)
    p = 1.0 / (1.0 + np.exp(-(rng.normal(-3.5, 1.0, n) + 1.5 * y)))
    return y, p


def test_writes_four_valid_pngs_for_imbalanced_sample(tmp_path: Path) -> None:
    y, p = _imbalanced()
    assert 0.02 < y.mean() < 0.04
    out_dir = tmp_path / "eval" / "test"  # does not exist yet
    paths = save_evaluation_plots(y, p, out_dir, title="3% defaults")
    assert [path.name for path in paths] == NAMES
    for path in paths:
        assert path.parent == out_dir
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC, path
        assert len(data) > 10_000, f"{path} is only {len(data)} bytes"


def test_accepts_plain_lists_and_ties(tmp_path: Path) -> None:
    y = [0, 1, 0, 1, 0, 0]
    p = [0.1, 0.1, 0.5, 0.9, 0.5, 0.0]
    paths = save_evaluation_plots(y, p, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(NAMES)
    assert all(path.read_bytes()[:8] == PNG_MAGIC for path in paths)


def test_one_class_fails_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both classes"):
        save_evaluation_plots([0, 0, 0], [0.1, 0.2, 0.3], tmp_path / "out")
    assert not (tmp_path / "out").exists()
