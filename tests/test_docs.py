"""Documentation that is generated from the code stays in step with it."""

from pathlib import Path

from profiler.spec import keys_markdown
from profiler.storage.record import COLUMNS, columns_markdown


def test_generated_docs_are_current():
    assert Path("docs/columns.md").read_text() == columns_markdown(), "run `make docs`"
    assert Path("docs/keys.md").read_text() == keys_markdown(), "run `make docs`"


def test_every_column_is_documented_with_a_prefix():
    prefixes = ("run_", "cfg_", "time_", "size_", "cost_", "mem_", "env_")
    for column in COLUMNS:
        assert column.name.startswith(prefixes), column.name
        assert column.doc, column.name
