"""The errors drlrec reports to users as one line, with the exit code each one means."""

from __future__ import annotations


class DrlrecError(Exception):
    """An expected failure: the CLI prints `drlrec: error: <message>` and exits with `exit_code`."""

    exit_code = 2


class ConfigError(DrlrecError):
    """params.yaml or a --set override is wrong."""


class InputError(DrlrecError):
    """An input file is missing, empty, binary or not in the log schema at all."""


class ValidationFailed(DrlrecError):
    """The data failed its expectation suite (exit 1, like a failed check)."""

    exit_code = 1


class RegistryError(DrlrecError):
    """The model registry has no such model, version or alias, or cannot be reached."""
