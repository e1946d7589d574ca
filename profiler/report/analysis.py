"""What every view of the report reads, computed once from a results DataFrame: the ok
rows, the layout of lines and panels, per-point spreads and medians, power-law fits, and
the lookups and contrasts the summary sentences are made of. Draws nothing."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from profiler.analysis import stats
from profiler.analysis.forecast import Curve
from profiler.analysis.stats import key_value
from profiler.report.columns import FITTED, NOT_PLOTTED, RAW_OF
from profiler.report.forecast_figures import series_curves
from profiler.report.format import sort_key
from profiler.report.style import Layout

# (group of the other layout keys, base value, other value, layer count, ratios other / base)
Contrast = tuple[dict[str, Any], Any, Any, int, dict[str, float]]


class Analysis:
    """Everything the report shows, computed once from a results DataFrame."""

    def __init__(self, df: pd.DataFrame):
        self.df = stats.with_derived(df)
        self.ok = stats.ok_rows(self.df)
        self.layout = Layout.of(self.ok if len(self.ok) else self.df)
        self.summary = stats.summarize(self.df)
        metrics = [m for m in self.summary["metric"].unique() if m not in NOT_PLOTTED or m in FITTED]
        self.x = self.layout.x
        self.fits = stats.fit_table(self.ok, metrics, self.layout.keys, self.x)
        # dropna=False keeps NaN keys but also invents every combination of them: drop those
        medians = self.summary.pivot_table(
            index=self.point_columns(), columns="metric", values="median",
            dropna=False, sort=False) if len(self.summary) else pd.DataFrame()
        self.medians = medians.dropna(how="all").reset_index()
        self._fit = {
            (r["metric"], *(key_value(r[k]) for k in self.layout.keys)): r
            for r in self.fits.to_dict("records")
        }

    @functools.cached_property
    def curves(self) -> list[tuple[dict[str, Any], str, Curve]]:
        """The forecast's chosen model per series for each FITTED metric (profiler/analysis/forecast/;
        no bootstrap: the scaling table and the summary need the growth, not the band)."""
        return series_curves(self.ok, FITTED, bootstrap=0) if len(self.ok) and self.x == "cfg_layers" else []

    def curve(self, metric: str, values: Mapping[str, Any]) -> Curve | None:
        """The chosen model of `metric` for the series `values` (None: under 3 depths)."""
        for series, m, curve in self.curves:
            if m == metric and all(key_value(values.get(k)) == v for k, v in series.items()):
                return curve
        return None

    def has(self, metric: str) -> bool:
        return stats.has_data(self.ok, metric)

    def fit(self, metric: str, values: Mapping[str, Any]) -> stats.PowerLaw | None:
        r = self._fit.get((metric, *(key_value(values[k]) for k in self.layout.keys)))
        return None if r is None else stats.PowerLaw(r["a"], r["k"], r["k_low"], r["k_high"], r["n"], r["r2"])

    def points(self, metric: str, where: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """The summary rows of `metric` (one per point) whose keys equal `where`'s values."""
        s = self.summary[self.summary["metric"] == metric]
        for key, value in (where or {}).items():
            s = s[s[key].map(key_value) == value]
        return s

    def point_columns(self) -> list[str]:
        """The columns that tell points apart on the page: the layout's keys and the x axis."""
        return [*self.layout.keys, *([self.x] if self.x else [])]

    def by_x(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(self.x) if self.x else frame

    def series_groups(self, frame: pd.DataFrame, keys: Sequence[str] | None = None) -> list[tuple[dict[str, Any], pd.DataFrame]]:
        """`frame` split by `keys` (default: the layout's series), each part sorted by the
        x axis, the parts in reading order."""
        keys = list(self.layout.series if keys is None else keys)
        if not keys:
            return [({}, self.by_x(frame))]
        groups = [
            (dict(zip(keys, (v if isinstance(v, tuple) else (v,)), strict=True)), self.by_x(g))
            for v, g in frame.groupby(keys, dropna=False, sort=False)
        ]
        return sorted(groups, key=lambda item: [sort_key(key_value(item[0][k])) for k in keys])

    def cost_metric(self, corrected: str) -> str | None:
        """The corrected cost column when present, else XLA's raw one, else None."""
        if self.has(corrected):
            return corrected
        return RAW_OF[corrected] if self.has(RAW_OF[corrected]) else None

    def break_even(self) -> pd.DataFrame:
        """stats.break_even_table between modes; empty without modes or compile times."""
        if "cfg_mode" not in self.layout.series or not self.has("time_to_compiled_s"):
            return pd.DataFrame()
        return stats.break_even_table(self.summary)

    def representative(self, free: Sequence[str]) -> dict[str, Any]:
        """The group the summary speaks for: the largest facet value, and the first
        value (the default: remat none, api linen ...) of every series key not in `free`."""
        rep = {self.layout.facet: self.layout.facets[-1]} if self.layout.facet else {}
        rows = self.ok
        for key in self.layout.series:
            if key in free or not len(rows):
                continue
            # the value measured with the most combinations of the free keys (a cache
            # layout that only scan has would leave loop out of the summary)
            coverage = {key_value(v): len(g.drop_duplicates(list(free)))
                        for v, g in rows.groupby(key, sort=False, dropna=False)}
            rep[key] = min(coverage, key=lambda v: (-coverage[v], sort_key(v)))
            rows = rows[rows[key].map(key_value) == rep[key]]
        return rep

    def contrast(self, key: str, metrics: Sequence[str], where: Mapping[str, Any]) -> list[Contrast]:
        """For each group of the layout keys not in `where` (and not `key`): (group, base,
        other, L, median ratios other / base) at the largest layer count both have;
        base = the first value of `key`."""
        if self.medians.empty or key not in self.medians.columns or self.x is None:
            return []
        med = self.medians
        for k, v in where.items():
            med = med[med[k].map(key_value) == v]
        others = [k for k in self.layout.keys if k != key and k not in where]
        found = []
        for values, g in self.series_groups(med, others):
            by_value = {key_value(v): gg.set_index(self.x) for v, gg in g.groupby(key, sort=False)}
            order = sorted(by_value, key=sort_key)
            for other in order[1:]:
                base = order[0]
                common = sorted(set(by_value[base].index) & set(by_value[other].index))
                if not common:
                    continue
                top = common[-1]
                ratios = {m: by_value[other].at[top, m] / by_value[base].at[top, m]
                          for m in metrics if m in med.columns and by_value[base].at[top, m] > 0
                          and np.isfinite(by_value[other].at[top, m])}
                found.append((values, base, other, top, ratios))
        return found


def where_text(values: Mapping[str, Any]) -> str:
    """' (hidden=512, mode=scan)': the group a sentence speaks for, '' for all."""
    return f" ({', '.join(f'{k[4:]}={v}' for k, v in values.items())})" if values else ""
