"""How every entry point ends: ``error: <what is wrong>`` and exit status 2 for a user's mistake.

    def main(argv=None):
        run_main(lambda: run(load_config(MyConfig, argv, prog="python -m my.module")))

:class:`~common.errors.UserError` (config errors, schema errors, bad data), ``FileNotFoundError``
and ``NotADirectoryError`` (a path the user named) are printed as one line on stderr; the process
exits with status 2, the convention of ``argparse`` for a usage error. Every other exception is a bug
and propagates with its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn, TypeVar

from .errors import UserError

T = TypeVar("T")

USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, NotADirectoryError)
EXIT_USER_ERROR = 2


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)


def run_main(body: Callable[[], T], extra_errors: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``body``; a user error (or one of ``extra_errors``) ends the process through :func:`fail`."""
    try:
        return body()
    except USER_ERRORS + tuple(extra_errors) as err:
        text = str(err)
        if isinstance(err, (FileNotFoundError, NotADirectoryError)) and err.filename and str(err.filename) not in text:
            text = f"{err.filename}: {text}"
        fail(text.removeprefix("error: "))
