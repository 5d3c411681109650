"""A synthetic SME book of several tables, with each firm's dated histories and a known true PD.

Per firm (one loan each): a loan table (industry, size, age, amount, application date, the
default flag and its true PD) and four event sources before and around the application:
monthly tax filings (revenue, VAT, days late; a firm's revenue has its own trend and volatility,
and some firms suffer a recent break), court cases (as defendant or plaintiff), IP grants and
administrative penalties. The true PD depends on the histories' dynamics: the revenue trend
and volatility, how recent a break is, court cases as defendant weighted by recency, penalties
that weigh more when revenue falls (an interaction across sources) and the IP portfolio. Fixed
window statistics see these only in part, so the Bayes-optimal AUC (the true PD's) is above
what aggregates reach. Filings and cases dated on or after the application date are written
too, as in a real export; a point-in-time reader must drop them.

``write_book`` writes ``loans.csv`` and one Parquet file per source; ``configs/data/
sme_histories.yaml`` reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MONTHS = 48  # tax filings per firm at most (fewer for young firms)
START, DAYS = np.datetime64("2019-01-01"), 5 * 365  # application dates: 2019-2023
INDUSTRIES = np.array(["software", "hardware", "biotech", "retail", "logistics", "media",
                       "energy", "services"])  # fmt: skip
INDUSTRY_RISK = np.array([0.0, 0.1, 0.3, 0.4, 0.2, 0.3, -0.1, 0.1])


def write_book(folder: Path, n_loans: int, seed: int = 0) -> Path:
    """The book under ``folder`` (created); returns the loan table's path."""
    rng = np.random.default_rng(seed)
    n = n_loans
    firm = np.arange(n)
    app = START + rng.integers(0, DAYS, n).astype("timedelta64[D]")
    industry = rng.integers(0, len(INDUSTRIES), n)
    size = rng.normal(0.0, 1.0, n)
    age = rng.uniform(0.5, 15.0, n)  # years in business: young firms have short histories

    # Monthly tax filings: log revenue with a firm's own trend, volatility and perhaps a break.
    trend = rng.normal(0.0, 0.03, n)
    vol = np.exp(rng.normal(np.log(0.12), 0.5, n))
    broke = rng.random(n) < 0.2
    break_month = rng.integers(1, 13, n)  # months before the application the break began
    drop = rng.uniform(0.3, 1.0, n)
    lateness = np.exp(rng.normal(0.0, 1.0, n))  # mean days late
    t = np.arange(1, MONTHS + 1)  # the filing's month, counted back from the application's
    level = 10.0 + 0.8 * size
    log_rev = (level[:, None] - trend[:, None] * t + vol[:, None] * rng.normal(0, 1, (n, MONTHS))
               - drop[:, None] * (broke[:, None] & (t <= break_month[:, None])))  # fmt: skip
    late = rng.poisson(lateness[:, None] * (1 + 2 * (broke[:, None] & (t <= break_month[:, None]))))
    filed = (t <= age[:, None] * 12) & (rng.random((n, MONTHS)) >= rng.beta(1, 15, n)[:, None])
    month = app.astype("datetime64[M]")[:, None] - t  # the month a filing reports
    date = (month + 1).astype("datetime64[D]") + 19 + late  # due the 20th of the next month
    i, j = np.nonzero(filed)
    revenue = np.round(np.exp(log_rev[i, j]), 2)
    tax = pd.DataFrame({"firm_id": firm[i], "filed": date[i, j], "revenue": revenue,
                        "vat": np.round(revenue * rng.uniform(0.10, 0.14, len(i)), 2),
                        "days_late": late[i, j]})  # fmt: skip

    # Court cases, IP grants and penalties: dated at random over the 4 years before the
    # application and the 6 months after it (those after it are not inputs).
    court = _events(rng, app, np.exp(rng.normal(-1.5, 1.0, n)))
    court["role"] = np.where(rng.random(len(court)) < 0.6, "defendant", "plaintiff")
    court["amount"] = np.round(np.exp(rng.normal(9.0, 1.2, len(court))), 2)
    ip = _events(rng, app, np.exp(rng.normal(-1.0, 1.2, n)))
    ip["kind"] = rng.choice(["patent", "trademark", "software"], len(ip))
    penalties = _events(rng, app, np.exp(rng.normal(-2.0, 1.0, n)) * (1 + broke))
    penalties["amount"] = np.round(np.exp(rng.normal(8.0, 1.0, len(penalties))), 2)

    # The true PD, from what a firm's records before its application show.
    def recent(events: pd.DataFrame, months: float, where=None) -> np.ndarray:
        age_m = (app[events["firm_id"]] - events["date"].to_numpy()).astype(float) / 30.4375
        w = np.where(age_m > 0, np.exp(-np.abs(age_m) / months), 0.0)
        if where is not None:
            w = w * where
        return np.bincount(events["firm_id"], weights=w, minlength=n)

    n_ip = np.bincount(ip["firm_id"], weights=(ip["date"].to_numpy() < app[ip["firm_id"]]),
                       minlength=n)  # fmt: skip
    logit = (-2.7 + INDUSTRY_RISK[industry] - 0.25 * size - 0.3 * np.log(age)
             - 25.0 * trend + 8.0 * (vol - 0.12)
             + 2.0 * broke * np.exp(-(break_month - 1) / 4.0)
             + 1.0 * recent(court, 6.0, court["role"].to_numpy() == "defendant")
             + 0.8 * recent(penalties, 12.0) * (1 + 1.5 * (trend < 0))
             - 0.25 * np.log1p(n_ip) + 0.3 * np.log(lateness))  # fmt: skip
    # (trend < 0 is a falling revenue: log revenue is level - trend * months back.)
    pd_true = 1 / (1 + np.exp(-logit))
    loans = pd.DataFrame({
        "loan_id": firm, "firm_id": firm, "applied": pd.to_datetime(app).strftime("%Y-%m-%d"),
        "industry": INDUSTRIES[industry], "employees": np.round(np.exp(2.5 + size)).astype(int),
        "firm_age": np.round(age, 1),
        "amount": np.round(np.exp(11 + 0.8 * size + rng.normal(0, 0.3, n)), -2),
        "default": (rng.random(n) < pd_true).astype(int), "pd_true": pd_true,
    })  # fmt: skip
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in {"tax": tax, "court": court, "ip": ip, "penalties": penalties}.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False, row_group_size=1 << 20)
    loans.to_csv(folder / "loans.csv", index=False)
    return folder / "loans.csv"


def _events(rng, app: np.ndarray, per_year: np.ndarray) -> pd.DataFrame:
    """Events at ``per_year`` a year per firm, dated uniformly over the 4 years before the
    application and the 6 months after it."""
    counts = rng.poisson(per_year * 4.5)
    firm = np.repeat(np.arange(len(app)), counts)
    offset = rng.integers(-4 * 365, 183, len(firm)).astype("timedelta64[D]")
    return pd.DataFrame({"firm_id": firm, "date": app[firm] + offset})
