"""One exception type for every error a user can meet.

A `CqiaError` is printed as one line (``error: <message>``) by the stage
entries and the CLI, never as a traceback. The message names the file, the
line and the field where there is one, and says what to do.
"""


class CqiaError(Exception):
    """An error with a message written for the person who has to fix it."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        self.where = where
        self.fix = fix
        self.bare = message
        text = f"{where}: {message}" if where else message
        if fix:
            text = f"{text}. {fix}"
        super().__init__(text)

    def __reduce__(self):  # pickles whole (the gate's helper process sends its errors to the stage)
        return _rebuild, (type(self), self.bare, self.where, self.fix)


def _rebuild(cls: type, message: str, where: str | None, fix: str | None) -> "CqiaError":
    return cls(message, where=where, fix=fix)


def did_you_mean(name: str, choices, cutoff: float = 0.6) -> str:
    """`Did you mean 'x'? ` when one of `choices` is close to `name` (difflib), else ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return f"Did you mean {close[0]!r}? " if close else ""


class ReleaseUnavailable(CqiaError):
    """A release was built at that revision, but its files are neither in the DVC cache nor on the remote."""


class GateFailed(CqiaError):
    """A gate (schema, Great Expectations suite, accounting) did not pass."""
