"""The errors a user can fix: the CLI prints each as one line, `genact: error: ...`,
and exits with status 2. Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class GenactError(Exception):
    """A mistake in what the user gave genact (a config, a path, a file) or bad input;
    the message names the thing and says what is wrong."""


class ConfigError(GenactError, ValueError):
    """A config file, override or command-line option that cannot be used."""


class DataError(GenactError, ValueError):
    """A data root, split list, class file or result that cannot be used."""
