"""Bad input reported in one line: what the entry point prints instead of a traceback."""
from __future__ import annotations

import contextlib

from hydra.errors import InstantiationException
from omegaconf.errors import InterpolationResolutionError


class UserError(Exception):
    """A bad path, value or file in the user's config: reported in one line, exit code 2. Raise it (or a
    subclass) where the message is already the whole story; constructors raise ValueError / FileNotFoundError."""


@contextlib.contextmanager
def user_errors():
    """Turn the ValueError / FileNotFoundError our constructors raise for bad input (also when Hydra's
    instantiate wraps them) into a UserError."""
    try:
        yield
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (ValueError, FileNotFoundError, UserError)):
            raise UserError(str(cause)) from cause
        raise
    except InterpolationResolutionError as err:  # e.g. a `pick` with no entry for the chosen value
        raise UserError(f"{err.full_key}: {str(err).splitlines()[0]}") from err
    except UserError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from err
