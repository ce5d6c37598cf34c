"""The doc-block runner itself: it finds blocks and markers, runs a page as one session, names
the block that failed, replaces only a loopback block's ports, and leaves no process behind."""

from __future__ import annotations

import os
import re

from tests.docs.doc_blocks import blocks, run_page

PAGE = """# A page

<!-- doctest: page: after make shards -->

```bash
export GREETING=hello
```

<!-- doctest: skip: would wipe the disk -->
```bash
exit 7
```

```python
import os, sys
print("python sees", os.path.isdir("data"), os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED"))
```

<!-- doctest: loopback: the test replaces port 4200 with a free port -->
```bash
echo "$GREETING on 4200, not 14200"
sleep 300 &
echo $! > sleeper.pid
```

<!-- doctest: excerpt: a listing -->
```
not a program
```

   ```yaml
   splits: {val_fraction: 0}
   ```
"""


def test_blocks_and_their_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    found = blocks(page)
    assert [(b.lang, b.mark) for b in found] == [
        ("bash", None),
        ("bash", "skip"),
        ("python", None),
        ("bash", "loopback"),
        ("", "excerpt"),
        ("yaml", None),
    ]
    assert [b.runs for b in found] == [True, False, True, True, False, False]
    assert found[3].ports() == [4200] and found[0].ports() == []
    assert found[5].text == "splits: {val_fraction: 0}\n"  # an indented fence, dedented
    assert found[1].note == "would wipe the disk" and found[1].line == 10


def test_a_page_runs_as_one_session_without_the_test_settings(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(PAGE.replace("<!-- doctest: page: after make shards -->", ""))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    run = run_page(page, tmp_path / "run", timeout=120)
    assert run.returncode == 0, run.output
    assert "python sees True None" in run.output  # from the workspace; test settings removed
    port = run.ports[4200]
    assert port != 4200 and f"hello on {port}, not 14200" in run.output
    assert "::doctest end" in run.output and run.failed_block is None
    sleeper = int((run.workspace / "sleeper.pid").read_text())
    try:
        os.kill(sleeper, 0)
        raise AssertionError(f"process {sleeper} the page started in the background still runs")
    except ProcessLookupError:
        pass


def test_the_failing_block_is_named_and_later_blocks_do_not_run(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\ntrue\n```\n\n```python\nraise SystemExit(3)\n```\n\n```sh\necho after\n```\n"
    )
    run = run_page(page, tmp_path / "run", timeout=120)
    assert run.returncode == 3
    assert run.failed_block is not None and re.search(r"page\.md:5$", run.failed_block)
    assert "after" not in run.output.replace("::doctest", "")
