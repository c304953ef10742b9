r"""The one family of errors meant for the user, the environment problems treated like them, and data warnings.

Everything a user can fix (an option, a path, the data, the weights, a busy run) raises a subclass of
:class:`DetbenchError` whose message says what is wrong and how to fix it. The CLI prints such an error as
one line and exits 2; any other exception that escapes a command is a bug and is shown as one. Classes
keep a builtin base (``ValueError``, ``LookupError``, ``RuntimeError``, ``FileNotFoundError``) where callers
catch them by it. A full disk and a home folder detbench may not write to are the user's to fix too:
:func:`user_message` recognises them among ``OSError``\ s.

Data warnings (a damaged run skipped, a corrupt cache shard rebuilt) go through :func:`warn` as a
:class:`DetbenchWarning`; the CLI shows them even with ``-q``.
"""

from __future__ import annotations

import errno
import re
import warnings


class DetbenchError(Exception):
    """A problem the user can fix; the message says what and how (the CLI prints it as one line, exit 2)."""


class ConfigError(DetbenchError, ValueError):
    """A bad option: an unknown key, or a value of the wrong type or out of range."""


class SuiteLayoutError(DetbenchError, ValueError):
    """The root does not look like this suite; the message says what was found and what is accepted."""


class ProtocolError(DetbenchError, ValueError):
    """The requested protocol cannot run on the data found."""


class DataError(DetbenchError, ValueError):
    """The data found cannot support the request (e.g. too few usable images of a class)."""


class InputError(DetbenchError, FileNotFoundError):
    """A path the user named does not exist or holds nothing usable (a suite root, images to score...)."""


class WeightsError(DetbenchError, RuntimeError):
    """Weights are missing, unreadable, unsafe, or do not match; the message says how to fix it."""


class BackboneError(DetbenchError, ValueError):
    """A malformed backbone spec, an unknown architecture or tag, or a setting the backbone cannot take."""


class RegistryError(DetbenchError, LookupError):
    """An unknown or duplicate detector, suite or perturbation name."""


class LockedError(DetbenchError, RuntimeError):
    """Another process holds the lock (the same run is in progress elsewhere)."""


class PresetError(DetbenchError, ValueError):
    """An unknown preset, or an environment that cannot run it; the message lists what is missing."""


class RunLookupError(DetbenchError, LookupError):
    """No finished run, or several, match a run id prefix."""


class DamagedRunError(DetbenchError, ValueError):
    """A finished run's record or outputs are unreadable or differ from the hashes it recorded."""


class TrainingError(DetbenchError, RuntimeError):
    """Training cannot go on with these settings (e.g. the loss diverged to NaN or infinity)."""


class DetbenchWarning(UserWarning):
    """Something about the data or the stored results that the user must hear about, even with ``-q``."""


def warn(message: str) -> None:
    """Issue a :class:`DetbenchWarning` (the CLI prints it as one ``warning:`` line).

    Args:
        message: what the user must hear about.
    """
    warnings.warn(message, DetbenchWarning, stacklevel=2)


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # numpy's tofile() on a full disk (errno unset)
_READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def is_disk_full(exc: BaseException) -> bool:
    """A full disk or quota, whichever library reported it (numpy's short writes carry no errno).

    Args:
        exc: the exception raised.

    Returns:
        True for an ``OSError`` that means no space or quota is left.
    """
    if not isinstance(exc, OSError):
        return False
    text = str(exc).lower()
    return (
        exc.errno in (errno.ENOSPC, errno.EDQUOT)
        or "no space left on device" in text
        or bool(exc.errno is None and _SHORT_WRITE.search(text))
    )


def is_not_writable(exc: BaseException) -> bool:
    """A permission error or a read-only file system.

    Args:
        exc: the exception raised.

    Returns:
        True for a ``PermissionError`` or an ``OSError`` with EACCES, EPERM or EROFS.
    """
    return isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in _READ_ONLY_ERRNOS)


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None when ``exc`` is a bug.

    Args:
        exc: the exception that escaped a command.

    Returns:
        The message of a :class:`DetbenchError`, or one for a full disk or an unwritable folder; None otherwise.
    """
    if isinstance(exc, DetbenchError):
        return str(exc)
    if is_disk_full(exc):
        return _disk_full_message(exc)
    if is_not_writable(exc):
        return _not_writable_message(exc)
    return None


def _where(exc: BaseException) -> str:
    return f" {exc.filename}" if getattr(exc, "filename", None) else ""


def _disk_full_message(exc: BaseException) -> str:
    from detbench.paths import home_description

    return (
        f"no space left on device while writing{_where(exc) or ' a file'} ({exc}). Files are written atomically, "
        f"so nothing half-written was kept. Free space ({home_description()}) and run the same command again: "
        "finished work is reused."
    )


def _not_writable_message(exc: BaseException) -> str:
    from detbench.paths import home_description

    reason = "read-only file system" if getattr(exc, "errno", None) == errno.EROFS else "permission denied"
    return (
        f"cannot write{_where(exc) or ' a file'} ({reason}: {exc}). Make that folder writable, or point "
        f"DETBENCH_HOME at a writable folder ({home_description()}); nothing else was changed."
    )
