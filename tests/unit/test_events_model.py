"""The event-history network: built from a book's slot layout, monotone in the flat features it
declares for any weights, and explained exactly by DeepLIFT over every input, the events too."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import ROOT
from training.data.config import DataConfig
from training.data.loaders import load_dataset
from training.data.preprocess import Preprocessor
from training.data.tensors import Tensors
from training.governance.checks import monotonicity
from training.models.build import build_model
from training.models.config import MLPConfig, TabMConfig
from training.models.embeddings import fit_bins
from training.models.events import Events
from training.models.monotone import Monotone
from training.runtime.dist import DistContext
from training.serving.config import ExplainConfig
from training.serving.explain import Explainer, reference_sample


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """The synthetic book of histories (1,500 firms), with firm_age declared monotone (-1)."""
    yaml = OmegaConf.load(ROOT / "configs" / "data" / "sme_histories.yaml")
    yaml.root, yaml.n_rows = str(tmp_path_factory.mktemp("book")), 1500
    yaml.features[2].monotone = -1
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), yaml))
    data = load_dataset(cfg)
    pre = Preprocessor.fit(data.frame, data.schema)
    x_num, x_cat = (torch.from_numpy(x) for x in pre.transform(data.frame))
    return data.schema, pre, Tensors(x_num, x_cat, torch.zeros(len(x_num)))


def _network(cfg, schema, pre, t, seed=0):
    torch.manual_seed(seed)
    model = build_model(
        cfg, n_num=pre.n_num_features, cat_cardinalities=pre.cat_cardinalities,
        bins=fit_bins(cfg, t.x_num), directions=pre.directions(schema), events=pre.events(schema),
    )  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def test_the_layout_names_every_slot_and_nothing_else(book):
    schema, pre, _ = book
    layout = pre.events(schema)
    assert [s["source"] for s in layout] == ["tax", "court", "ip", "penalties"]
    tax = layout[0]
    assert len(tax["values"]) == 24 and len(tax["values"][0]) == 4  # revenue, vat, days_late, age
    names = pre.numeric + pre.binary
    assert [names[j] for j in tax["values"][0]] == [
        "tax.revenue@1", "tax.vat@1", "tax.days_late@1", "tax.age@1"]  # fmt: skip
    assert names[layout[1]["values"][7][-1]] == "court.role=plaintiff@8"
    slots = {j for s in layout for e in s["values"] for j in e}
    assert all("@" not in names[j] for j in range(len(names)) if j not in slots)


@pytest.mark.parametrize("cfg", [MLPConfig(d_block=32, n_blocks=2), TabMConfig(k=4, d_block=32, n_blocks=1, n_bins=8)])  # fmt: skip
def test_a_monotone_flat_feature_holds_for_any_weights(book, cfg):
    schema, pre, t = book
    model = _network(cfg, schema, pre, t)
    assert isinstance(model, Events) and isinstance(model.base, Monotone)
    report = monotonicity(model, t, pre, schema, DistContext())
    assert report["firm_age"]["rows"] > 0 and report["firm_age"]["violations"] == 0


def test_deeplift_reasons_add_up_over_flat_features_and_events(book):
    schema, pre, t = book
    model = _network(MLPConfig(d_block=32, n_blocks=2), schema, pre, t)
    cfg = ExplainConfig(reference_rows=4)
    explainer = Explainer(model, pre, schema, reference_sample(t.x_num, t.x_cat, 4), cfg)
    contributions, error = explainer.contributions(t.x_num[:40], t.x_cat[:40])
    assert error.max() < 1e-4
    per_feature = dict(zip(schema.names(), abs(contributions).mean(0).tolist(), strict=True))
    assert sum(v for n, v in per_feature.items() if "@" in n) > 0  # the events carry weight
