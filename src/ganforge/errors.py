"""User-facing errors: raised before training starts, printed as one readable paragraph."""

import contextlib
import sys
from collections.abc import Iterator


class GanforgeError(Exception):
    """A mistake in the user's setup (config, data, paths) that no traceback would explain better."""

    exit_code = 2
    refused = False  # set when raised before training started: the run dir is left as it was found


class ConfigError(GanforgeError):
    """An option or a combination of options that cannot work."""


class DataError(GanforgeError):
    """A dataset that is missing, empty or unreadable."""


class DivergedError(GanforgeError):
    """Training produced NaN/Inf for too long and rolling back did not help (exit code 3)."""

    exit_code = 3


class CollapsedError(DivergedError):
    """A network stopped learning (its gradient zero for a window) and rolling back did not help (exit
    code 3, status ``collapsed``)."""


class NothingToTrainError(ConfigError):
    """The checkpoint to continue is already at or past ``train.steps`` (a requeued job: nothing to do)."""


class RunDirInUseError(ConfigError):
    """Another ganforge-train process holds the run dir's lock."""


class ResourceError(GanforgeError):
    """The machine cannot hold the run: no disk space for its outputs, a batch that does not fit in
    memory, or a run dir that cannot be written (exit code 4; resume with ``ckpt_path=auto`` once fixed)."""

    exit_code = 4


@contextlib.contextmanager
def one_line_errors(command: str) -> Iterator[None]:
    """A GanforgeError in the block ends ``command`` (``ganforge-eval``, ...) with its one line on stderr
    and its exit code, as every entry point's mistakes do."""
    try:
        yield
    except GanforgeError as err:
        print(f"{command}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """A GanforgeError raised in the block refuses the run before training started: it is marked so (the
    command leaves the run dir as it found it)."""
    try:
        yield
    except GanforgeError as err:
        err.refused = True
        raise
