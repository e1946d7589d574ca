"""The HTML report: built from a real sweep and from synthetic folders of known shape."""

import re

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from profiler import report
from profiler.analysis import stats
from profiler.report import registry, write_report
from profiler.report.analysis import Analysis
from profiler.report.columns import unit_of
from profiler.report.page import Section, Table
from profiler.storage import store
from profiler.units import fmt_ratio

EVIL_NAME = "<script>alert(1)</script>"
EVIL_ERROR = "<script>alert(2)</script> & friends"


def scripts(page: str) -> list[str]:
    return re.findall(r"<script[^>]*>", page)


@pytest.fixture(scope="module")
def real_page(real_results, tmp_path_factory):
    """The report of real_results, written where write_report puts it by default (under the
    working directory, which is a folder of its own while it writes): (its path, that folder)."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        return write_report(real_results), cwd


def test_report_of_a_real_sweep_is_self_contained(real_page):
    page = real_page[0].read_text()
    for fig in ("time_to_compiled_s", "time_compile_s", "time_step_median_s", "size_jaxpr_eqns",
                "size_hlo_instructions", "cost_flops", "mem_temp_bytes", "mem_footprint_bytes"):
        assert f'id="fig-{fig}"' in page, fig
    for section in ("Summary", "Scaling laws", "Break-even", "Medians and spread", "Environment"):
        assert f">{section}</h2>" in page
    # offline: plotly.js inline exactly once, no script loaded from anywhere
    assert page.count(get_plotlyjs()[:300]) == 1
    assert not any("src=" in tag for tag in scripts(page))
    assert len(scripts(page)) == 4  # metadata, plotly.js, figure data, the loop that draws them


def line_with(lines: list[str], *words: str) -> str:
    """The one summary line that names every word."""
    (line,) = [line for line in lines if all(w in line for w in words)]
    return line


def test_summary_is_computed_from_the_data(real_results):
    df = store.load(real_results)
    ok = stats.with_derived(df[df["run_status"] == "ok"])
    med = ok.groupby(["cfg_mode", "cfg_layers"])[["time_to_compiled_s", "mem_temp_bytes"]].median()
    ratio = med.loc[("scan", 4), "time_to_compiled_s"] / med.loc[("loop", 4), "time_to_compiled_s"]
    memory = med.loc[("scan", 4), "mem_temp_bytes"] / med.loc[("loop", 4), "mem_temp_bytes"]
    first = registry.findings(Analysis(df))[0]  # the modes' contrast opens the summary
    assert "4 layers" in first and "scan" in first and "loop" in first
    assert (f"{fmt_ratio(1 / ratio)} sooner" if ratio <= 1 else f"{fmt_ratio(ratio)} later") in first
    assert f"{fmt_ratio(memory)} its temp memory" in first


def test_real_sizes_fit_the_seeds_claim(real_results):
    """Measured: the loop's program grows linearly with layers, the scanned one is flat."""
    fits = Analysis(store.load(real_results)).fits.set_index(["cfg_mode", "metric"])
    assert fits.loc[("loop", "size_jaxpr_eqns"), "k"] == pytest.approx(1.0, abs=0.05)
    assert fits.loc[("scan", "size_jaxpr_eqns"), "k"] == pytest.approx(0.0, abs=1e-9)
    assert fits.loc[("loop", "size_hlo_instructions"), "k"] > 0.8


def test_corrected_costs_with_raw_one_click_away(real_results):
    df = store.load(real_results)
    fig = report.figures(df)["cost_flops"]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["corrected: every loop trip", "XLA raw: loop bodies once"]
    shown, raw = buttons[0].args[0]["visible"], buttons[1].args[0]["visible"]
    assert [t.visible is not False for t in fig.data] == shown
    for trace, a, b in zip(fig.data, shown, raw, strict=True):
        # each line is in one view only; the analytic reference is in both
        assert (a and b) if trace.legendgroup == "reference" else a != b
    assert any(t.legendgroup == "reference" for t in fig.data)  # cost_analytic_flops drawn
    # Marked where corrected and raw differ by > 10%: the scanned program at 2 and 4 layers.
    ok = df[df["run_status"] == "ok"]
    differ = ok[(ok["cost_flops"] / ok["cost_xla_flops"] - 1).abs() > 0.1]
    expected = {(m, int(n)) for m, n in differ[["cfg_mode", "cfg_layers"]].drop_duplicates().values}
    marked = {(t.name, int(x)) for t in fig.data if t.visible is not False
              for x, h in zip(t.x, t.hovertext, strict=True) if "XLA raw" in h}
    assert marked == expected and ("scan", 4) in marked


def test_index_lists_every_report_and_leaves_foreign_files_alone(real_page, synthetic, tmp_path):
    a = real_page[0]  # the real sweep's report, its index written beside it
    write_report(synthetic(name="second sweep"), a.parent / "b.html")
    index = (a.parent / "index.html").read_text()
    assert f'href="{a.name}"' in index and 'href="b.html"' in index
    assert "tiny-real" in index and "second sweep" in index and "jax " in index
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "index.html").write_text("<p>mine</p>")
    report.write_page(foreign / "c.html", a.read_text())  # write_report's last step: the page, then the index
    assert (foreign / "c.html").read_text() == a.read_text()
    assert (foreign / "index.html").read_text() == "<p>mine</p>"


def test_strings_from_data_are_escaped(synthetic, tmp_path):
    folder = synthetic(name=EVIL_NAME, failures=[("error", EVIL_ERROR), ("timeout", "stopped after 60 s")])
    out = write_report(folder, tmp_path / "evil.html")
    for page in (out.read_text(), (tmp_path / "index.html").read_text()):
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    page = out.read_text()
    assert "&lt;script&gt;alert(2)&lt;/script&gt; &amp; friends" in page  # the failures table
    assert ">Failures</h2>" in page and ">timeout<" in page
    line = line_with(re.findall(r"<li>(.*?)</li>", page), "failed")
    assert all(w in line for w in ("2 of 20", "error 1", "timeout 1"))


def test_default_sweep_report_is_under_10_mb(synthetic, tmp_path):
    folder = synthetic(modes=("loop", "scan", "scan_shared"), layers=(2, 8, 32, 64, 128),
                       hidden=(256, 512), repeats=3)
    assert len(store.load(folder)) == 90
    size = write_report(folder, tmp_path / "default.html").stat().st_size
    assert size < 10 * 2**20


def test_generic_over_configuration_remat(synthetic):
    df = store.load(synthetic(modes=("loop", "scan"), layers=(2, 8, 32), hidden=(256, 512),
                              remat=("none", "full")))
    an = Analysis(df)
    assert an.layout.series == ("cfg_mode", "cfg_remat") and an.layout.facet == "cfg_hidden"
    figs = report.figures(df)
    assert "remat" in figs
    assert len(figs["time_compile_s"].data) == 2 * 2 * 2  # (mode, remat) lines in each hidden panel
    # LAWS: remat divides temp memory by 4 and multiplies the raw FLOPs by 1.3, at the
    # largest layer count and hidden size, for each mode
    lines = registry.findings(an)
    for mode in ("loop", "scan"):
        line = line_with(lines, "remat=full", f"mode={mode}")
        assert all(w in line for w in ("32 layers", "hidden=512", "remat=none", "0.25× the temp memory", "1.3× the FLOPs"))


def decode_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows shaped like the decode workload's: two phases, a scanned and a carried cache."""
    parts = []
    for phase in ("prefill", "decode"):
        for cache in ("scanned", "carried"):
            part = df[(df["cfg_mode"] == "scan") | (cache == "scanned")].assign(cfg_phase=phase, cfg_kv_cache=cache)
            double = (phase == "decode") & (cache == "scanned")  # the cache copied once more in temp
            part["mem_temp_bytes"] = part["mem_temp_bytes"] * (2 if double else 1)
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def test_decode_section(synthetic):
    df = decode_rows(store.load(synthetic(layers=(2, 8))))
    assert "decode" in report.figures(df)
    # decode_rows doubles the scanned cache's temp memory in the decode phase only
    lines = registry.findings(Analysis(df))
    decode, prefill = line_with(lines, "Decode at"), line_with(lines, "Prefill at")
    assert all(w in decode for w in ("8 layers", "mode=scan", "carried", "0.5× the temp memory", "scanned"))
    assert "1.0× the temp memory" in prefill


def test_decode_columns_and_phase_panels(synthetic):
    """The decode workload's own columns are drawn; its phases become the panels."""
    df = decode_rows(store.load(synthetic(layers=(2, 8))))
    df = df.assign(time_per_token_s=df["time_step_median_s"], run_tokens_per_s=1 / df["time_step_median_s"],
                   mem_kv_cache_bytes=df["cfg_layers"] * 4096, cfg_mesh="1x1")
    an = Analysis(df)
    assert an.layout.facet == "cfg_phase" and an.layout.facets == ("prefill", "decode")
    assert {"time_per_token_s", "run_tokens_per_s", "mem_kv_cache_bytes"} <= set(report.figures(df))
    assert unit_of("run_tokens_per_s") in ("/s", "tokens/s")


def test_missing_columns_are_handled(real_results):
    df = store.load(real_results).drop(columns=["cost_flops", "cost_transcendentals", "cost_bytes_accessed",
                                                "mem_footprint_bytes", "time_step_median_s"])
    page = report.report_html(df)
    assert 'id="fig-cost_xla_flops"' in page and "Corrected costs are not in this dataset" in page
    assert 'id="fig-time_step_median_s"' not in page and "Steps were not run" in page


def test_differing_environments_are_warned_about(synthetic, tmp_path):
    a = store.load(synthetic(env_values={"env_cpu_model": "CPU A"}))
    b = store.load(synthetic(env_values={"env_cpu_model": "CPU B"}))
    page = report.report_html(pd.concat([a, b], ignore_index=True))
    critical = re.findall(r'<div class="warning critical">(.*?)</div>', page)
    assert critical and all("cpu_model" in w and "not comparable" in w for w in critical)


def test_bad_folder_is_a_store_error(tmp_path):
    with pytest.raises(store.StoreError, match="holds no Parquet results"):
        write_report(tmp_path, tmp_path / "x.html")


def test_sections_and_findings_come_from_the_registry(real_results, tmp_path):
    """A view is one registered function: it appears where its order puts it."""
    def dummy_section(an):
        return Section("dummy", "Dummy view", tables=[Table(["layers"], [], f"{len(an.ok)} ok rows")])

    def dummy_finding(an):
        return [f"Dummy finding about {an.ok['cfg_layers'].max()} layers."]

    registry.section(order=32.5)(dummy_section)  # between Program size (32) and Cost (33)
    registry.finding(order=15)(dummy_finding)
    try:
        page = write_report(real_results, tmp_path / "dummy.html").read_text()
    finally:
        registry.unregister(dummy_section)
        registry.unregister(dummy_finding)
    ok = len(store.load(real_results).query("run_status == 'ok'"))
    assert ">Dummy view</h2>" in page and f"{ok} ok rows" in page
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings.index("Program size") < headings.index("Dummy view") < headings.index("Cost")
    items = re.findall(r"<li>(.*?)</li>", page)
    assert items[1] == "Dummy finding about 4 layers."  # after the modes' contrast (10)
    assert "Dummy view" not in write_report(real_results, tmp_path / "again.html").read_text()


def test_default_reports_folder_is_under_the_working_directory(real_results, real_page):
    out, cwd = real_page  # written with no `out`, from `cwd`
    assert out == cwd / "reports" / f"{real_results.name}.html" and out.is_file()
