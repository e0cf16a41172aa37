"""Learning curves of a study: train/val loss and accuracy per epoch, mean ± std over each variant's runs.

Each run's curves come from its ``csv/metrics.csv`` (Lightning's CSVLogger: one row per logging
call, epoch-level metrics in the rows of their epoch). Runs without that file (e.g. W&B-only runs)
are skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

CURVE_METRICS = ("train/loss", "val/loss", "train/acc", "val/acc")
METRICS_CSV = Path("csv") / "metrics.csv"


def run_curves(run_dir: Any) -> pd.DataFrame | None:
    """One row per epoch with the :data:`CURVE_METRICS` the run logged, or ``None`` without a metrics file."""
    if not isinstance(run_dir, str) or not (Path(run_dir) / METRICS_CSV).is_file():
        return None
    try:
        frame = pd.read_csv(Path(run_dir) / METRICS_CSV)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        log.warning("cannot read %s: %s", Path(run_dir) / METRICS_CSV, err)
        return None
    columns = [c for c in CURVE_METRICS if c in frame]
    if "epoch" not in frame or not columns:
        return None
    return frame.groupby("epoch")[columns].mean()  # train and val values of an epoch sit in different rows


def variant_curves(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per variant: a frame indexed by epoch with ``<metric>_mean``, ``<metric>_std`` and ``runs`` (how many
    runs reached that epoch), over its ok runs that have curves."""
    out: dict[str, pd.DataFrame] = {}
    ok = runs[runs["status"] == "ok"]
    for variant, group in ok.groupby("variant", sort=True):
        curves = [c for c in (run_curves(d) for d in group["run_dir"]) if c is not None]
        if not curves:
            continue
        stacked = pd.concat(curves, keys=range(len(curves)), names=["run", "epoch"])
        by_epoch = stacked.groupby(level="epoch")
        table = by_epoch.mean().add_suffix("_mean").join(by_epoch.std(ddof=1).add_suffix("_std"))
        table["runs"] = by_epoch.size()
        out[str(variant)] = table
    return out
