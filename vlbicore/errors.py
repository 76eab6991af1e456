"""User-facing errors: one clear line naming the file or field and what to do.

Every error a user can cause (bad file, bad config, unknown model or parameter) is raised as a
``VlbiError``; the CLI prints ``vlbicore: error: <message>`` and exits with status 2, never a deep
traceback from ehtim or JAX.
"""


class VlbiError(Exception):
    """An error caused by input (files, names, settings), with a single-line, actionable message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
