"""Errors that describe a user's mistake; the command-line tools print them without a traceback."""


class Ppq2lError(Exception):
    """Base class for errors caused by input (config, data, checkpoints), not by a bug."""


class ConfigError(Ppq2lError):
    """A config file, an override or a component's keywords are wrong."""


class DataError(Ppq2lError):
    """A dataset, list file, annotation file or image cannot be used."""


class CheckpointError(Ppq2lError):
    """A checkpoint or weight file is missing, corrupt or does not fit the model."""


class RunStopped(Exception):
    """A run stopped on a signal (SIGTERM, Ctrl-C) after saving its state; not a mistake, so not
    a Ppq2lError. The tools exit with status 128 + `signum`."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
