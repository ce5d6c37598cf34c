"""Exceptions that carry a clear message for the user."""


class TreeOfLifeError(Exception):
    """Base class: an error the CLI reports in one line, without a traceback."""


class ConfigError(TreeOfLifeError):
    """The build config is invalid (the message names the key)."""


class InputError(TreeOfLifeError):
    """An input file is missing or malformed beyond per-row recovery."""


class OutputError(TreeOfLifeError):
    """An output cannot be written (disk full, file too large, read-only, no permission); the
    message names the path. Nothing partial is left under the final name: free space or fix
    the permissions and rerun."""


class ImageRejected(Exception):  # noqa: N818 - a recorded outcome, not a crash
    """An image's bytes cannot be used; `reason` is the recorded reason code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
