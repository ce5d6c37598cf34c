"""The hostile-fetch table (hostile_fetch.CASES): each hostile manifest row fails with its
reason, the build goes on, nothing local or private is read or published, no credential is
written down. (An over-long BIOSCAN id is in the bad-input table.)"""

from __future__ import annotations

import pytest

from .hostile_fetch import CASES, HostileCase, check, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_fetch(case: HostileCase, tmp_path):
    check(case, run_case(case, tmp_path))
