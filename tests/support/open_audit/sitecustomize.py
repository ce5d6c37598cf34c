"""Records every path a Python process opens or lists, one per line, in the file named by
TREEOFLIFE_OPEN_LOG (inactive without it). Put this folder on PYTHONPATH and every Python
process started with that environment (forkserver workers, subprocesses) loads it at start-up
(the `site` module imports `sitecustomize`). Used by tests/test_self_contained.py."""

import os
import sys

_LOG = os.environ.get("TREEOFLIFE_OPEN_LOG")

if _LOG:
    _LOG = os.path.abspath(_LOG)
    _seen = {_LOG}  # writing the log is an "open" event too
    _EVENTS = frozenset({"open", "os.listdir", "os.scandir"})

    def _record(event, args):
        if event not in _EVENTS or not args or args[0] is None or isinstance(args[0], int):
            return
        try:
            path = os.path.abspath(os.fsdecode(args[0]))
        except (TypeError, ValueError):
            return
        if path in _seen:
            return
        _seen.add(path)
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (path + "\n").encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)

    sys.addaudithook(_record)
