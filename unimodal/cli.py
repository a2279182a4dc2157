"""How the runnable scripts end: the project's user-facing errors as one line, not a traceback.

Errors the code raises to explain bad input (a config key, a missing file, an out-of-range value,
bad data) print `error: <message>` and exit with code 2. Anything else keeps its traceback. Set
UNIMODAL_TRACEBACK=1 to see the traceback of the explained errors too.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from unimodal.checkpointing import UnsafeFileError
from unimodal.config import ConfigError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, UnsafeFileError, ValueError,
                                                FileNotFoundError, FileExistsError)


def run_main(main: Callable[[], object]) -> None:
    try:
        from unimodal.data.image_sources import DataError
        errors = (*USER_ERRORS, DataError)
    except ImportError:  # a script without the data extras
        errors = USER_ERRORS
    try:
        main()
    except errors as err:
        if os.environ.get("UNIMODAL_TRACEBACK"):
            raise
        print(f"error: {err}\n(UNIMODAL_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)
