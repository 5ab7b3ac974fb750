"""Errors the user can act on, each carrying the process exit code the CLI documents.

The codes follow BSD sysexits so that systemd's RestartPreventExitStatus and shell scripts
can tell a bad config (78) from a missing file (66) or a broken model (69).
"""

EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78


class EdgeAgentError(Exception):
    """Base of every error that is reported as one line instead of a traceback."""

    exit_code = EX_SOFTWARE


class UsageError(EdgeAgentError):
    """The command line asks for something that cannot be done (argparse catches the rest)."""

    exit_code = EX_USAGE


class InputError(EdgeAgentError):
    """The input path is missing, unreadable, or not an image or video we can decode."""

    exit_code = EX_NOINPUT


class BadMediaError(EdgeAgentError):
    """The input exists but its content is not usable media (corrupt, empty, wrong type)."""

    exit_code = EX_DATAERR


class ModelError(EdgeAgentError):
    """A model file is missing, altered, or cannot run on the chosen accelerator."""

    exit_code = EX_UNAVAILABLE


class ConfigError(EdgeAgentError):
    """The configuration is invalid; the message names the key path and the bad value."""

    exit_code = EX_CONFIG


class StateDirBusy(EdgeAgentError):
    """Another daemon holds the state directory's lock; trying again later may succeed."""

    exit_code = EX_TEMPFAIL
