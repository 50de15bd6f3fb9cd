"""The one exception type for a user's mistake (a bad config value, a missing file, a malformed row).

Entry points end on a :class:`UserError` with one ``error: ...`` line and exit status 2 (see
:func:`common.cli.run_main`); any other exception is a bug and keeps its traceback. Raise a
``UserError`` (or a subclass) whose message names the file, row and field that are wrong, and what
was expected.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: the message says where and what was expected."""
