"""The errors digitlab raises on purpose: each names what was wrong and what to do about it."""


class DigitlabError(Exception):
    """Base of every error digitlab raises for bad input; the CLI prints these without a traceback."""


class DataError(DigitlabError, ValueError):
    """A data file or folder is missing, malformed or inconsistent."""


class IdxError(DataError):
    """An IDX file is malformed: bad magic number, truncated, or not what the caller expected."""


class ChecksumError(DataError):
    """A data file's sha256 does not match the published one."""


class ConfigError(DigitlabError, ValueError):
    """An argument or setting is not one digitlab knows (an unknown model, stage, or a bad hyper-parameter)."""
