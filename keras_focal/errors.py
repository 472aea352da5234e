"""What every `keras-focal` command treats as bad input, and what as a crash: one rule, here.

The rule:

- **Bad input** (exit status 2, a one-line `error:` message) is whatever a
  command's *pre-flight* refuses: its arguments, its files, its folders. A
  pre-flight reads and checks but writes nothing, so a refused command
  leaves no file behind. Commands raise `BadInput`; `checking()` turns the
  `ValueError`/`TypeError` of a validator called in a pre-flight into one.
- **Stopped** (exit status 1, a `stopped:` message): the work began and
  stopped cleanly for a reason outside the program (a full disk while a
  run's state was saved); it resumes once that is fixed.
- **Interrupted** (exit status 130, as a shell reports Ctrl-C): one line,
  no traceback. Every command writes its files whole or not at all, so
  running it again resumes from what was finished.
- Anything else raised once the work has begun is a **crash**: a traceback
  and exit status 1, never reported as bad input after minutes of training.

`run_command` applies the rule for the command line; library callers get
the exceptions themselves.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class BadInput(ValueError):
    """Refused before any work: the command wrote nothing (exit status 2)."""


class Stopped(RuntimeError):
    """The work stopped cleanly and can be resumed (exit status 1)."""


@contextlib.contextmanager
def checking(error_class: type[BadInput] = BadInput) -> Iterator[None]:
    """A pre-flight block: a validator's ValueError or TypeError becomes `error_class` (a `BadInput`)."""
    try:
        yield
    except BadInput:
        raise
    except (ValueError, TypeError) as error:
        raise error_class(str(error)) from None


def run_command(name: str, command: Callable[[Any], int], args: Any) -> int:
    """Runs `command(args)` for `keras-focal NAME`; returns its exit status under the rule above."""
    try:
        return command(args)
    except BadInput as error:
        print(f"keras-focal {name}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as error:
        print(f"keras-focal {name}: stopped: {error}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print(f"\nkeras-focal {name}: interrupted. Run the same command again to resume: finished work is kept.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
