"""A synthetic SME book of several tables, with each firm's dated histories and a known true PD.

Per firm (one loan each): a loan table (industry, size, age, amount, application date, the
default flag and its true PD) and four event sources before and around the application:
monthly tax filings (revenue, VAT, days late; a firm's revenue has its own trend and volatility,
and some firms suffer a recent break), court cases (as defendant or plaintiff), IP grants and
administrative penalties. The true PD depends on the histories' dynamics as a lender sees them
(what was filed before the application): the revenue trend and volatility, a recent break,
lateness, court cases as defendant weighted by recency, penalties that weigh more when revenue
falls (an interaction across sources) and the IP portfolio. Fixed
window statistics see these only in part, so the Bayes-optimal AUC (the true PD's) is above
what aggregates reach. Filings and cases dated on or after the application date are written
too, as in a real export; a point-in-time reader must drop them.

``write_book`` writes ``loans.csv`` and a folder of Parquet part files per source
(``jobs.make_portfolio histories=true`` at any size); ``configs/data/sme_histories.yaml`` reads
it.
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


SOURCES = ("tax", "court", "ip", "penalties")
BLOCK = 50_000  # firms generated (and written as one part file per source) at a time


def write_book(folder: Path, n_loans: int, seed: int = 0, workers: int = 1) -> dict:
    """The book under ``folder`` (created): ``loans.csv`` and, per source, a folder of Parquet
    part files, one per block of ``BLOCK`` firms. Each block has its own seed, so the book is
    the same for any number of ``workers`` (processes writing blocks in parallel)."""
    import time
    from concurrent.futures import ProcessPoolExecutor

    t0, folder = time.perf_counter(), Path(folder)
    for name in SOURCES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    blocks = [(folder, b, min(BLOCK, n_loans - b * BLOCK), seed)
              for b in range(-(-n_loans // BLOCK))]  # fmt: skip
    with ProcessPoolExecutor(max(1, min(workers, len(blocks)))) as pool:
        events = sum(pool.map(_write_block, blocks))
    with open(folder / "loans.csv", "w") as out:
        for b in range(len(blocks)):
            part = folder / f"loans-{b:05d}.csv"
            text = part.read_text()
            out.write(text if b == 0 else text.split("\n", 1)[1])
            part.unlink()
    return {"loans": n_loans, "events": events, "output": str(folder),
            "seconds": time.perf_counter() - t0}  # fmt: skip


def _write_block(job: tuple[Path, int, int, int]) -> int:
    """Block ``b``'s firms written: its loan rows (a CSV part) and one part file per source."""
    folder, b, n, seed = job
    loans, sources = _block(n, np.random.default_rng([seed, b]), b * BLOCK)
    for name, frame in sources.items():
        frame.to_parquet(folder / name / f"part-{b:05d}.parquet", index=False)
    loans.to_csv(folder / f"loans-{b:05d}.csv", index=False)
    return sum(len(f) for f in sources.values())


def _block(n: int, rng: np.random.Generator, first: int) -> tuple[pd.DataFrame, dict]:
    """``n`` firms numbered from ``first``: the loan table's rows and each source's events."""
    firm = first + np.arange(n)
    app = START + rng.integers(0, DAYS, n).astype("timedelta64[D]")
    industry = rng.integers(0, len(INDUSTRIES), n)
    size = rng.normal(0.0, 1.0, n)
    age = rng.uniform(0.5, 15.0, n)  # years in business: young firms have short histories

    tax, record = _tax(rng, firm, app, size, age)
    log_rev, late, filed, date, broke = record

    # Court cases, IP grants and penalties: dated at random over the 4 years before the
    # application and the 6 months after it (those after it are not inputs).
    court = _events(rng, app, firm, np.exp(rng.normal(-1.5, 1.0, n)))
    court["role"] = np.where(rng.random(len(court)) < 0.6, "defendant", "plaintiff")
    court["amount"] = np.round(np.exp(rng.normal(9.0, 1.2, len(court))), 2)
    ip = _events(rng, app, firm, np.exp(rng.normal(-1.0, 1.2, n)))
    ip["kind"] = rng.choice(["patent", "trademark", "software"], len(ip))
    penalties = _events(rng, app, firm, np.exp(rng.normal(-2.0, 1.0, n)) * (1 + broke))
    penalties["amount"] = np.round(np.exp(rng.normal(8.0, 1.0, len(penalties))), 2)

    # The true PD, from what a firm's records before its application show.
    def recent(events: pd.DataFrame, months: float, where=None) -> np.ndarray:
        return _recent(events, app, first, months, where)

    i_ip = ip["firm_id"].to_numpy() - first
    n_ip = np.bincount(i_ip, weights=(ip["date"].to_numpy() < app[i_ip]), minlength=n)
    # The tax record as a lender sees it: filings made before the application, last 2 years.
    t = np.arange(1, MONTHS + 1)
    seen = filed & (date < app[:, None]) & (t <= 24)
    dyn = _dynamics(np.where(seen, log_rev, np.nan), np.where(seen & (t <= 12), late, np.nan))
    logit = (-6.0 + INDUSTRY_RISK[industry] - 0.25 * size - 0.3 * np.log(age)
             - 25.0 * dyn["trend"] + 12.0 * dyn["volatility"]
             + 1.2 * ((seen & (late > 15))[:, :4].sum(1) >= 3)  # late 3 of the last 4 months
             + 2.0 * np.clip(-dyn["change"], 0.0, None)
             + 1.0 * recent(court, 6.0, court["role"].to_numpy() == "defendant")
             + 0.8 * recent(penalties, 12.0) * (1 + 1.5 * (dyn["trend"] < 0))
             - 0.25 * np.log1p(n_ip) + 0.4 * np.log1p(dyn["late"]))  # fmt: skip
    pd_true = 1 / (1 + np.exp(-logit))
    loans = pd.DataFrame({
        "loan_id": firm, "firm_id": firm, "applied": pd.to_datetime(app).strftime("%Y-%m-%d"),
        "industry": INDUSTRIES[industry], "employees": np.round(np.exp(2.5 + size)).astype(int),
        "firm_age": np.round(age, 1),
        "amount": np.round(np.exp(11 + 0.8 * size + rng.normal(0, 0.3, n)), -2),
        "default": (rng.random(n) < pd_true).astype(int), "pd_true": pd_true,
    })  # fmt: skip
    return loans, {"tax": tax, "court": court, "ip": ip, "penalties": penalties}


def _tax(rng, firm: np.ndarray, app: np.ndarray, size: np.ndarray, age: np.ndarray):
    """Monthly tax filings: log revenue with a firm's own trend, volatility and perhaps a break;
    the filings as events, and (log revenue, days late, filed, filing date, broke) per firm and
    month back (columns: 1 to ``MONTHS`` months before the application's)."""
    n = len(firm)
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

    return tax, (log_rev, late, filed, date, broke)


def _recent(events: pd.DataFrame, app: np.ndarray, first: int, months: float, where=None):
    """Per firm, its events before the application weighted by recency (exp(-age / months))."""
    i = events["firm_id"].to_numpy() - first
    age_m = (app[i] - events["date"].to_numpy()).astype(float) / 30.4375
    w = np.where(age_m > 0, np.exp(-np.abs(age_m) / months), 0.0)
    if where is not None:
        w = w * where
    return np.bincount(i, weights=w, minlength=len(app))


def _dynamics(log_rev: np.ndarray, late: np.ndarray) -> dict[str, np.ndarray]:
    """What the true PD reads off a firm's filed tax record (columns: months back, NaN where no
    filing was seen): the revenue trend (least-squares slope of log revenue per month), its
    volatility (the spread of month-on-month changes), the last 3 months against the 12 before
    (a break), and mean days late; 0 where the record is too short to say."""
    import warnings

    x = -np.arange(1, log_rev.shape[1] + 1, dtype=float)  # later months are larger
    ok = ~np.isnan(log_rev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means of empty records
        xc = np.where(ok, x - np.nanmean(np.where(ok, x, np.nan), 1, keepdims=True), 0.0)
        yc = np.where(ok, log_rev - np.nanmean(log_rev, 1, keepdims=True), 0.0)
        trend = (xc * yc).sum(1) / np.maximum((xc * xc).sum(1), 1e-9)
        volatility = np.nanstd(log_rev[:, :-1] - log_rev[:, 1:], 1)
        change = np.nanmean(log_rev[:, :3], 1) - np.nanmean(log_rev[:, 3:15], 1)
        mean_late = np.nanmean(late, 1)
    trend = np.where(ok.sum(1) >= 3, trend, 0.0)
    return {name: np.nan_to_num(v) for name, v in
            {"trend": trend, "volatility": volatility, "change": change, "late": mean_late}.items()}  # fmt: skip


def _events(rng, app: np.ndarray, firm: np.ndarray, per_year: np.ndarray) -> pd.DataFrame:
    """Events at ``per_year`` a year per firm, dated uniformly over the 4 years before the
    application and the 6 months after it."""
    i = np.repeat(np.arange(len(app)), rng.poisson(per_year * 4.5))
    offset = rng.integers(-4 * 365, 183, len(i)).astype("timedelta64[D]")
    return pd.DataFrame({"firm_id": firm[i], "date": app[i] + offset})
