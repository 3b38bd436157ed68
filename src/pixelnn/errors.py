"""Errors that carry a message meant for the user (the CLI prints them without a traceback)."""


class PixelNNError(Exception):
    """Base class: anything raised with this type is a problem in the user's input or setup."""


class DataError(PixelNNError):
    """A data source, an image file or a label file is missing or malformed."""


class BankError(PixelNNError):
    """An exemplar bank is missing, corrupt, of another format version, or built by another model."""


class ConfigError(PixelNNError):
    """An option or a combination of options cannot be used."""


class ClusterError(PixelNNError):
    """A Ray cluster cannot be reached, or one of its tasks failed for good (its retries spent)."""
