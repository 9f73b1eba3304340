"""Fixtures for the OVO-Bench tests; the data themselves are in ovo_testdata.py."""

import pytest
from ovo_testdata import write_ovo


@pytest.fixture
def ovo_set(tmp_path):
    return write_ovo(tmp_path)
