"""Comparing two results folders: ratios with intervals, environment warnings, CI exit codes."""

import re
import subprocess
import sys

import pytest

from profiler.analysis import machines
from profiler.gates.compare import compare


def profiler(*args):
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True)


@pytest.fixture
def slower(synthetic):
    """A, and B whose compile time is 1.5× A's (same noise otherwise)."""
    return synthetic(name="a", seed=3), synthetic(name="b", seed=3, scale={"time_compile_s": 1.5})


def test_ratio_of_medians_with_intervals(slower, tmp_path):
    a, b = slower
    result = compare(a, b, tmp_path / "c.html", fail_above=20)
    compile_ = result.ratios[result.ratios["metric"] == "time_compile_s"]
    assert len(compile_) == 6  # every point of the grid matched
    assert compile_["ratio"].to_numpy() == pytest.approx(1.5)
    assert (compile_["low"] <= compile_["ratio"]).all() and (compile_["ratio"] <= compile_["high"]).all()
    trace = result.ratios[result.ratios["metric"] == "time_trace_s"]
    assert trace["ratio"].to_numpy() == pytest.approx(1.0)
    assert result.failed and compile_["exceeds"].all() and not trace["exceeds"].any()
    assert not compare(a, b, tmp_path / "c.html", fail_above=60).failed
    page = (tmp_path / "c.html").read_text()
    assert 'id="fig-ratio-time_compile_s"' in page and "<script src" not in page
    assert 'href="c.html"' in (tmp_path / "index.html").read_text()


def test_same_folder_compares_equal(real_results, tmp_path):
    result = compare(real_results, real_results, tmp_path / "same.html", fail_above=0)
    assert not result.failed
    sizes = result.ratios[result.ratios["metric"].str.startswith(("size_", "cost_", "mem_"))]
    assert len(sizes) and (sizes["ratio"] == 1).all() and (sizes["low"] == 1).all()
    assert "not comparable" not in (tmp_path / "same.html").read_text()


def test_different_machines_are_flagged(synthetic, tmp_path):
    a = synthetic(env_values={"env_cpu_model": "CPU A", "env_jax_version": "0.9.0"})
    b = synthetic(env_values={"env_cpu_model": "CPU <B>"})
    compare(a, b, tmp_path / "env.html")
    page = (tmp_path / "env.html").read_text()
    (critical,) = re.findall(r'<div class="warning critical">(.*?)</div>', page)
    assert "cpu_model" in critical and "not comparable" in critical and "jax_version" not in critical
    (other,) = re.findall(r'<div class="warning">(.*?)</div>', page)
    assert "jax_version" in other and "cpu_model" not in other
    assert "CPU &lt;B&gt;" in page


def test_gating_across_machines_needs_the_flag_and_gates_no_timing(synthetic, tmp_path):
    """--fail-above on folders from two machines: refused (exit 2, one line naming the
    differing facts), or with --cross-machine gated on sizes, costs and memory only."""
    a = synthetic(name="a", seed=3, env_values={"env_cpu_model": "CPU A"})
    slower = synthetic(name="b", seed=3, scale={"time_compile_s": 1.5}, env_values={"env_cpu_model": "CPU B"})
    out = tmp_path / "x.html"
    refused = profiler("compare", str(a), str(slower), "--out", str(out), "--fail-above", "20")
    assert refused.returncode == 2 and refused.stdout == "" and not out.exists()
    assert refused.stderr.count("\n") == 1 and "cpu_model CPU A vs CPU B" in refused.stderr
    assert "--cross-machine" in refused.stderr

    result = compare(a, slower, out, fail_above=20, cross_machine=True)
    assert not result.failed  # a 1.5x compile time is not gated across machines
    assert [d.column for d in result.other_machine] == ["env_cpu_model"]
    timing = result.ratios[result.ratios["metric"] == "time_compile_s"]
    assert timing["ratio"].to_numpy() == pytest.approx(1.5) and not timing["exceeds"].any()
    page = out.read_text()
    assert "Timings were not gated" in page and "cpu_model CPU A vs CPU B" in page

    bigger = synthetic(name="c", seed=3, scale={"size_hlo_instructions": 1.5}, env_values={"env_cpu_model": "CPU B"})
    result = compare(a, bigger, out, fail_above=20, cross_machine=True)
    assert result.failed and set(result.ratios[result.ratios["exceeds"]]["metric"]) == {"size_hlo_instructions"}
    # without --fail-above nothing is gated: the page is written, with the warning
    assert compare(a, slower, out).other_machine and "not comparable" in out.read_text()


def test_machines_compares_recorded_facts_only():
    a = {"env_cpu_model": ["CPU A"], "env_backend": ["cpu"], "env_jax_version": ["0.9"]}
    b = {"env_cpu_model": ["CPU B"], "env_backend": ["cpu"], "env_jax_version": ["0.10"], "env_cpu_flags": ["avx512f"]}
    assert [d.column for d in machines.between(a, b)] == ["env_cpu_flags", "env_cpu_model", "env_jax_version"]
    # a fact one side did not record cannot tell machines apart
    assert [str(d) for d in machines.other_machine(a, b)] == ["cpu_model CPU A vs CPU B"]
    assert machines.other_machine(a, {**a, "env_cpu_flags": ["avx2"]}) == []
    assert machines.within({"env_cpu_model": ["CPU A", "CPU B"], "env_backend": ["cpu"]}) == ["env_cpu_model"]
    # same model, other flags: another machine, named by the flags that differ
    flags = {**a, "env_cpu_flags": ["avx avx2 avx512f sse4_2"]}
    assert [str(d) for d in machines.other_machine(flags, {**a, "env_cpu_flags": ["avx avx2 sse4_2"]})] == [
        "cpu_flags avx512f vs – (the rest alike)"]


def test_rows_record_this_machine_s_cpu_flags():
    from profiler.measurement import env

    row = env.host()
    assert row["env_cpu_flags"] == " ".join(env.cpu_flags())
    assert not env.cpu_flags() or len(row["env_cpu_flags"].split()) > 5  # /proc/cpuinfo lists dozens


def test_cli_exit_codes(slower, tmp_path):
    a, b = slower
    out = tmp_path / "cli.html"
    failed = profiler("compare", str(a), str(b), "--out", str(out), "--fail-above", "20")
    assert failed.returncode == 1 and "time_compile_s" in failed.stderr and out.is_file()
    assert profiler("compare", str(a), str(b), "--out", str(out), "--fail-above", "60").returncode == 0
    missing = profiler("compare", str(a), str(tmp_path / "nope"), "--out", str(out))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert profiler("compare", str(empty), str(b)).stderr.startswith("error: ")


def test_failed_measurements_of_either_side_are_listed_with_their_error(synthetic, tmp_path):
    """The report's failures table (report/views/failures.py), led by the side."""
    a = synthetic(name="a", failures=[("timeout", "took longer than timeout_s = 5")])
    b = synthetic(name="b", failures=[("oom", "resident memory went over max_rss_gb"), ("error", "boom <b>")])
    compare(a, b, tmp_path / "f.html")
    page = (tmp_path / "f.html").read_text()
    (section,) = re.findall(r'<section id="failures">.*?</section>', page, re.S)
    header, *rows = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r) for r in re.findall(r"<tr>(.*?)</tr>", section)]
    assert header[0] == "" and header[-2:] == ["status", "error"] and "layers" in header
    found = {(r[0], r[header.index("layers")], r[-2], r[-1]) for r in rows}
    assert found == {("A", "1000", "timeout", "took longer than timeout_s = 5"),
                     ("B", "1000", "oom", "resident memory went over max_rss_gb"),
                     ("B", "1001", "error", "boom &lt;b&gt;")}
