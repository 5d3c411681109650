"""An ensemble is one model whose PD is the mean of its members' PDs, saved and served as one."""

from __future__ import annotations

import numpy as np
import torch

from tests.unit.test_loop import SCHEMA, _model, toy  # noqa: F401 - the toy data fixture
from training.models.build import predict_pd
from training.models.config import MLPConfig, TabMConfig
from training.models.ensemble import Ensemble
from training.serving.bundle import Scorer, load_model_configs, save_bundle

# Different architectures and ensemble sizes (k = 1, 4, 2): the mean is over members, not heads.
CONFIGS = [
    MLPConfig(d_block=16, n_blocks=1),
    TabMConfig(k=4, d_block=16, n_blocks=1, num_embeddings="piecewise", n_bins=8),
    TabMConfig(k=2, d_block=8, n_blocks=2, num_embeddings="none"),
]


def _members(pre, train):
    return [_model(pre, cfg, train, seed=i) for i, cfg in enumerate(CONFIGS)]


def test_ensemble_pd_is_the_mean_of_its_members_pds(toy):  # noqa: F811
    pre, train, valid, _ = toy
    networks = [m for m, _ in _members(pre, train)]
    each = np.stack([predict_pd(m, valid.x_num, valid.x_cat) for m in networks])
    ensemble = Ensemble(networks)
    assert ensemble(valid.x_num[:7], valid.x_cat[:7]).shape == (7, len(networks))
    got = predict_pd(ensemble, valid.x_num, valid.x_cat)
    np.testing.assert_allclose(got, each.mean(0), rtol=0, atol=1e-6)
    assert np.abs(each[0] - each[1]).max() > 1e-3  # the members really differ


def test_an_ensemble_bundle_scores_like_the_ensemble(toy, tmp_path):  # noqa: F811
    pre, train, valid, frame = toy
    built = _members(pre, train)
    ensemble = Ensemble([m for m, _ in built])
    members = [(cfg, bins) for cfg, (_, bins) in zip(CONFIGS, built, strict=True)]
    save_bundle(tmp_path, model=ensemble, members=members, pre=pre, schema=SCHEMA)
    assert load_model_configs(tmp_path) == CONFIGS
    scorer = Scorer(tmp_path)
    expected = predict_pd(ensemble, valid.x_num, valid.x_cat)
    np.testing.assert_allclose(scorer.predict(frame), expected, rtol=0, atol=1e-6)
    assert isinstance(scorer.model, Ensemble) and len(scorer.model.members) == 3
    with torch.no_grad():  # the weights came back, not fresh ones
        a = scorer.model.members[2].state_dict()
        b = ensemble.members[2].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
