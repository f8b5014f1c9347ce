"""Errors the engine raises for bad input: the CLI prints them as one line and exits 2."""


class FedtuiError(Exception):
    """A problem the user can fix (bad config, unknown model, unreadable run folder)."""


class ConfigError(FedtuiError):
    """A config file, a --set override or a resolved value is invalid."""


class RunFolderError(FedtuiError):
    """A path is not a readable run folder."""
