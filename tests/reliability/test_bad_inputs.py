"""Hostile and broken inputs through the real readers: one table (bad_inputs.CASES), each case
with its expected outcome: a recorded reason per row (no row lost, none twice) or one clear
error naming the thing (no traceback)."""

from __future__ import annotations

import asyncio
import os

import pytest

from treeoflife.sources.download import Downloader, DownloadSettings
from treeoflife.sources.fetch_policy import FetchPolicy

from .bad_inputs import CASES, Case, check


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path):
    check(case, case.run(tmp_path))


def test_file_url_naming_a_fifo_is_refused_not_read(tmp_path):
    fifo = tmp_path / "pipe.jpg"  # what a local mirror folder or a file:// manifest URL may name
    os.mkfifo(fifo)

    async def fetch():
        policy = FetchPolicy(file_roots=(str(tmp_path),))  # a mirror folder holding the FIFO
        async with Downloader(DownloadSettings(retries=0, policy=policy)) as downloader:
            task = asyncio.ensure_future(downloader.fetch(fifo.as_uri()))
            done, _ = await asyncio.wait({task}, timeout=2)
            if not done:  # stuck in open(): let the reader through so the thread can end
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                await task
                return None
            return task.result()

    result = asyncio.run(fetch())
    assert result is not None, "the fetch hung on a FIFO"
    assert result.data is None and result.reason == "not_found"  # not a regular file
