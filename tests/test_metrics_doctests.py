"""The docstring examples of the metrics and statistics modules run and give the printed results."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["nctransfer.metrics", "nctransfer.metrics.collapse", "nctransfer.metrics.registry",
           "nctransfer.metrics.table", "nctransfer.stats.feature_stats"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
