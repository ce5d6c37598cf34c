"""docs/config.md is generated from treeoflife/config.py and cannot drift from it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO
from treeoflife import config_docs


def test_checked_in_config_reference_is_what_the_code_generates():
    page = REPO / "docs" / "config.md"
    assert page.read_text() == config_docs.render(), (
        "docs/config.md is out of date: run `python -m treeoflife.config_docs`"
    )


def test_every_setting_is_documented_with_its_rule():
    assert config_docs.undocumented() == []
    text = config_docs.render()
    # a few keys with what the page must say about them (type, default, rule, comment)
    assert (
        "| `concurrency` | `int` | `256` | >= 1 | a ceiling: requests in flight, all hosts "
        "together |" in text
    )
    assert "| `val_fraction` | `float` | `0.05` | >= 0 and < 1 |" in text
    assert "| `resize_mode` | `str` | `shorter_side` | one of shorter_side, square |" in text
    assert "## sources.inat21.archives[]" in text and "## sample" in text


def test_the_command_writes_and_checks_the_page(tmp_path):
    out = tmp_path / "config.md"
    run = [sys.executable, "-m", "treeoflife.config_docs", "--output", str(out)]
    check = subprocess.run([*run, "--check"], capture_output=True, text=True, cwd=REPO)
    assert check.returncode == 1 and "out of date" in check.stdout
    assert subprocess.run(run, capture_output=True, cwd=REPO).returncode == 0
    assert out.read_text() == config_docs.render()
    assert subprocess.run([*run, "--check"], capture_output=True, cwd=REPO).returncode == 0
