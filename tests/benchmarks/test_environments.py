"""Benchmarks of the environments of `profiler releases` (docs/releases.md): building one
for a release (target: at most 30 s with uv's cache warm) and finding one already built
(target: about nothing). Not timed tests: `make bench-baseline` / `make bench-history`."""

import pytest

from profiler.processes import environments

RELEASE = "0.10.2"


def test_build_environment(benchmark, tmp_path, monkeypatch):
    """A first build into an empty environment cache (the package cache of uv stays warm).
    The index's list of releases (asked once a day, `pip index versions`: about 7 s per
    package on this machine) is copied in: this times the build alone."""
    environments.served("jax"), environments.served("jaxlib")
    index = {p.name: p.read_text() for p in environments.cache_root().glob("index-*.json")}
    caches = iter(range(1000))

    def fresh_cache():
        root = tmp_path / f"cache-{next(caches)}"
        root.mkdir()
        for name, text in index.items():
            (root / name).write_text(text)
        monkeypatch.setenv(environments.CACHE_ENV, str(root))
        return (RELEASE,), {}

    env = benchmark.pedantic(environments.ensure, setup=fresh_cache, rounds=1, iterations=1)
    assert env.versions()["jax"] == RELEASE


@pytest.fixture(scope="module")
def built():
    return environments.ensure(RELEASE)


def test_cached_environment(benchmark, built):
    env = benchmark(environments.ensure, RELEASE)
    assert env.path == built.path
