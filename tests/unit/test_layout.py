"""Repository rules that otherwise break only on a full run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


def test_test_modules_have_unique_basenames() -> None:
    # tests/ has no __init__.py files (harness imports rely on rootdir sys.path), so pytest
    # imports every module by its basename: two of the same name fail the whole collection.
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name.startswith("test_"))
    assert [n for n, c in names.items() if c > 1] == []
