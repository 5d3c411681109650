"""The model card: every section filled from the report, missing keys said, limitations that
follow the run's facts, and an HTML page that loads nothing from outside itself."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from pathlib import Path

import pytest

from training.governance.card import PLOTS, WARN, write_card
from training.report import Report

SECTIONS = [
    "Model", "Data", "Architecture and recipe", "Test metrics", "GBDT benchmark", "Plots",
    "Stability", "Monotonicity", "Reason codes", "Fairness", "Limitations", "Reproduce",
]  # fmt: skip
CONFIG = """\
data:
  name: taiwan
  protected: [SEX]
model:
  name: tabm
  d_block: 512
  k: 32
optim:
  lr: 0.0003
  batch_size: 256
trainer:
  max_epochs: 40
  patience: 8
benchmark:
  enabled: true
launcher:
  name: mpi
  parallelism: ensemble
seed: 7
"""
COMMAND = "python -m jobs.train data=taiwan model=tabm launcher=mpi"


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def sample_report() -> dict:
    """A report with every key the card reads, as the pipeline writes it (Taiwan-like)."""
    metrics = {"auc": 0.7812, "gini": 0.5624, "ks": 0.4301, "brier": 0.1355, "log_loss": 0.4312,
               "ece": 0.0123, "n": 4500, "default_rate": 0.2212, "mean_pd": 0.2190}  # fmt: skip
    return {
        "test": metrics,
        "valid": metrics | {"auc": 0.7755},
        "test_ci": {
            "auc": [0.7654, 0.7968],
            "ks": [0.4012, 0.4599],
            "level": 0.95,
            "resamples": 1000,
            "rows": 4500,
        },
        "psi_train_test": 0.0031,
        "monotonicity": {
            "LIMIT_BAL": {"direction": -1, "rows": 4500, "violations": 0, "share": 0.0},
            "PAY_0": {"direction": 1, "rows": 4500, "violations": 12, "share": 0.00267},
        },
        "explain": {
            "method": "integrated gradients",
            "reference_rows": 16,
            "reasons": 4,
            "steps": 16,
            "tolerance": 0.02,
            "rows_checked": 100,
            "max_abs_error": 0.0116,
            "mean_abs_error": 0.0028,
            "passed": True,
        },  # fmt: skip
        "training": {"best_epoch": 9, "best_valid_auc": 0.7755, "epochs_run": 17, "world_size": 2},
        "ensemble": [
            {"best_epoch": 9, "best_valid_auc": 0.7741, "epochs_run": 17, "seed": 7, "member": 0},
            {"best_epoch": 6, "best_valid_auc": 0.7702, "epochs_run": 14, "seed": 8, "member": 1},
        ],
        "benchmark": {
            "model": "lightgbm",
            "params": {"num_leaves": 31},
            "rounds": 211,
            "valid_auc": 0.7801,
            "monotone": True,
            "train_rows": 21000,
            "valid_rows": 4500,
            "seconds": 12.5,
            "test": metrics | {"auc": 0.7858, "ks": 0.4388},
        },  # fmt: skip
        "lift": {"auc": 0.7812 - 0.7858, "ks": 0.4301 - 0.4388},
        "split": {
            "method": "stratified",
            "seed": 7,
            "train": {"rows": 21000, "default_rate": 0.2212},
            "valid": {"rows": 4500, "default_rate": 0.2211},
            "test": {"rows": 4500, "default_rate": 0.2212},
        },  # fmt: skip
        "data": {
            "source": "taiwan/default of credit card clients.csv",
            "rows": 30000,
            "unused_columns": ["ID"],
            "protected": ["SEX"],
        },  # fmt: skip
        "data_fingerprint": "0badc0ffee123456",
        "fairness": {
            "cutoff_pd": 0.3312,
            "approve_rate": 0.8,
            "min_rows": 30,
            "attributes": {
                "SEX": {
                    "approval_ratio": 0.7431,
                    "groups": [
                        {
                            "group": "1",
                            "rows": 1800,
                            "approval_rate": 0.74,
                            "default_rate": 0.24,
                            "mean_pd": 0.23,
                            "auc": 0.77,
                            "ece": 0.02,
                        },
                        {
                            "group": "2",
                            "rows": 2700,
                            "approval_rate": 0.9958,
                            "default_rate": 0.21,
                            "mean_pd": 0.21,
                            "auc": None,
                            "ece": 0.01,
                        },
                    ],
                }
            },
        },  # fmt: skip
        "run_id": "feedfacefeedfacefeedfacefeedface",
        "model_uri": "models:/m-1234",
        "registered": {"name": "credit-risk-taiwan", "version": 7, "alias": "challenger"},
    }


@pytest.fixture
def plots(tmp_path: Path) -> Path:
    folder = tmp_path / "run" / "plots"
    folder.mkdir(parents=True)
    for i, (name, _) in enumerate(PLOTS):
        (folder / name).write_bytes(_png(4 + i, 3, (200, 30 * i, 10)))
    return folder


def _card(report: dict, plots: Path, config_text: str = CONFIG, **kw) -> tuple[str, str]:
    args = {"config_text": config_text, "command": COMMAND, "title": "taiwan / tabm"} | kw
    md, page = write_card(Report.from_dict(report), plots, plots.parent, **args)
    assert (md.name, page.name) == ("model_card.md", "model_card.html")
    assert md.parent == page.parent == plots.parent
    return md.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")


def _text(page: str) -> str:
    """The HTML's visible text, tags dropped and entities kept escaped (good enough to search)."""
    return re.sub(r"<[^>]+>", " ", page)


def test_every_section_is_in_both_files(plots):
    md, page = _card(sample_report(), plots)
    assert re.findall(r"^## (.+)$", md, flags=re.M) == SECTIONS
    assert re.findall(r"<h2>(.+?)</h2>", page) == SECTIONS


@pytest.mark.parametrize(
    "expected",
    [
        "credit-risk-taiwan", "@challenger", "feedfacefeedfacefeedfacefeedface",  # model
        "30,000", "0badc0ffee123456", "ID", "SEX", "22.12%", "21,000",  # data and split
        "model.d_block", "512", "optim.lr", "0.0003", "trainer.patience", "mpi",  # recipe
        "Ensemble of 2", "0.7741",
        "0.7812", "[0.7654, 0.7968]", "1000 resamples", "0.7755",  # metrics
        "0.7858", "-0.0046", "does not beat",  # benchmark
        "0.0031, stable",  # PSI
        "PAY_0", "PD rises", "12",  # monotonicity
        "integrated gradients", "0.011600", "passed",  # reasons
        "0.3312", "99.58%", "0.743", "below 0.8: fails",  # fairness
        COMMAND, "abc1234", "2025-03-04",  # reproduce
    ],
)  # fmt: skip
def test_the_report_values_are_in_both_files(plots, expected):
    md, page = _card(sample_report(), plots, commit="abc1234", date="2025-03-04")
    assert expected in md
    assert expected in _text(page)


def test_the_config_is_in_a_collapsible_block_in_both_files(plots):
    md, page = _card(sample_report(), plots)
    assert re.search(r"<details><summary>config\.yaml.*?</summary>\s+```yaml\ndata:\n", md)
    assert "<details><summary>config.yaml" in page
    assert "  name: taiwan\n" in page


def test_markdown_links_the_plots_relatively(plots):
    md, _ = _card(sample_report(), plots)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == [f"plots/{name}" for name, _ in PLOTS]


def test_html_is_self_contained(plots):
    _, page = _card(sample_report(), plots)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "a link out"
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page)
    assert "@import" not in page and "url(" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(PLOTS)
    for src, (name, _) in zip(sources, PLOTS, strict=True):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (plots / name).read_bytes()


def test_a_missing_plot_is_said(plots):
    (plots / "ks.png").unlink()
    md, page = _card(sample_report(), plots)
    assert "plots/ks.png is missing" in md and "plots/ks.png is missing" in page
    assert len(re.findall(r"<img ", page)) == len(PLOTS) - 1


def test_report_text_is_escaped_in_html_and_markdown_tables(plots):
    report = sample_report()
    report["data"]["source"] = "<script>alert('x')</script> a|b.csv"
    md, page = _card(report, plots)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "a\\|b.csv" in md


@pytest.mark.parametrize("key", list(sample_report()))
def test_any_missing_key_still_writes_the_card(plots, key):
    report = sample_report()
    del report[key]
    md, page = _card(report, plots)
    assert re.findall(r"<h2>(.+?)</h2>", page) == SECTIONS
    assert md.count("\n## ") == len(SECTIONS)


def test_an_empty_report_and_no_config_say_what_is_missing(plots):
    md, page = _card({}, plots, config_text="", command="")
    for said in [
        "not registered",
        "No split in the report",
        "No config given",
        "No test metrics in the report",
        "No GBDT benchmark in the report",
        "No PSI in the report",
        "No monotonicity check in the report",
        "No reason-code check in the report",
        "No protected attributes declared in the data config",
        "command not given",
    ]:
        assert said in md and said in _text(page), said


def test_what_is_absent_is_said_in_the_words_of_its_setting(plots):
    report = sample_report()
    for key in ("benchmark", "lift", "fairness", "test_ci"):
        del report[key]
    report["data"]["protected"], report["monotonicity"] = [], {}
    config = CONFIG.replace("enabled: true", "enabled: false")
    md, _ = _card(report, plots, config_text=config)
    assert "GBDT benchmark off (benchmark.enabled=false)" in md
    assert "No protected attributes declared in the data config (data.protected)" in md
    assert "No bootstrap confidence intervals in the report" in md
    assert "No monotone directions declared in the data config" in md
    assert "| AUC | 0.7812 | n/a | 0.7755 |" in md


def test_declared_protected_columns_without_a_table_are_said(plots):
    report = sample_report()
    del report["fairness"]
    md, _ = _card(report, plots)
    assert "Protected columns SEX are declared but the report has no fairness table" in md


def _found_in_this_run(md: str) -> str:
    return md.split("### Found in this run", 1)[1].split("###", 1)[0]


def _clean(report: dict) -> dict:
    """The sample with every check passing."""
    report["lift"] = {"auc": 0.01, "ks": 0.01}
    report["monotonicity"]["PAY_0"]["violations"] = 0
    report["fairness"]["attributes"]["SEX"]["approval_ratio"] = 0.95
    return report


LIMITS = [
    ("lift", lambda r: r["lift"].update(auc=-0.02), "Does not beat the GBDT benchmark"),
    ("no benchmark", lambda r: r.pop("benchmark"), "Not compared with a GBDT benchmark"),
    ("psi", lambda r: r.update(psi_train_test=0.12), "PSI 0.120: some shift"),
    ("major psi", lambda r: r.update(psi_train_test=0.3), "PSI 0.300: a major shift"),
    ("monotone", lambda r: r["monotonicity"]["PAY_0"].update(violations=5), "5 test rows move"),
    ("fairness", lambda r: r["fairness"]["attributes"]["SEX"].update(approval_ratio=0.79),
     "across SEX is 0.790, below the 80 % rule"),
    ("reasons", lambda r: r["explain"].update(passed=False), "fail the completeness check"),
    ("calibration", lambda r: r["test"].update(ece=0.08), "poorly calibrated"),
    ("few rows", lambda r: r["test"].update(n=800), "Few test rows (800"),
    ("few defaults", lambda r: r["test"].update(default_rate=0.01), "about 45 defaults"),
    ("synthetic", lambda r: r["data"].update(source="synthetic(n_rows=100, seed=0)"),
     "synthetic data"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "said"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_each_limitation_follows_its_fact(plots, change, said):
    clean = _found_in_this_run(_card(_clean(sample_report()), plots)[0])
    assert "None found in this run's checks." in clean
    assert said not in clean
    report = _clean(sample_report())
    change(report)
    found = _found_in_this_run(_card(report, plots)[0])
    assert f"- {WARN} " in found and said in found


def test_flagged_values_are_marked_in_the_html(plots):
    _, page = _card(sample_report(), plots)
    assert re.search(r'<td class="warn">⚠ 12</td>', page)
    assert re.search(r'<p class="warn">Approval-rate ratio: 0\.743, ⚠ below', page)


def test_a_failed_completeness_check_is_marked(plots):
    report = sample_report()
    assert '<td class="warn">' + WARN + " FAILED</td>" not in _card(report, plots)[1]
    report["explain"]["passed"] = False
    assert '<td class="warn">' + WARN + " FAILED</td>" in _card(report, plots)[1]


def test_an_unmoved_alias_and_an_unregistered_run_are_said(plots):
    report = sample_report()
    report["registered"]["alias"] = None
    assert "none moved" in _card(report, plots)[0]
    del report["registered"]
    assert "not registered (registry.register=false)" in _card(report, plots)[0]
