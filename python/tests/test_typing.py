"""The package ships py.typed: its annotations must hold, so that users' type checkers can rely on
them. Runs mypy where it is installed."""

import os

import pytest

mypy_api = pytest.importorskip("mypy.api")


def test_package_type_checks(tmp_path):
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/padec"
    stdout, stderr, status = mypy_api.run(
        ["--cache-dir", str(tmp_path), "--no-error-summary", "--hide-error-context", package])
    assert status == 0, stdout + stderr
