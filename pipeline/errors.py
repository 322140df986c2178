"""Exception types that separate user mistakes and bad inputs from bugs."""


class MmfeatError(Exception):
    """A user-facing error: bad arguments, a missing file, a refused operation.

    The CLI prints its message on one line and exits non-zero, without a traceback.
    """


class StoreError(MmfeatError):
    """The feature store is inconsistent or a request to it cannot be met."""


class BadInput(Exception):
    """One input item cannot be used (undecodable, empty, unsafe...).

    Extractors raise or record it per item; the runner turns it into a row of the
    rejects table. Any *other* exception type is treated as a bug and fails the shard.
    """

    def __init__(self, reason: str, message: str = "", stage: str = "decode"):
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message or reason
        self.stage = stage


class UnknownName(MmfeatError, ValueError):
    """An unknown extractor, head, feature set or option name; the message lists the valid ones."""
