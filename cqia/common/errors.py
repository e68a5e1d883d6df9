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


# --------------------------------------------------------------------------- a full disk

NO_SPACE = {28: "no space left on device", 122: "disk quota exceeded"}   # ENOSPC, EDQUOT (Linux)
NO_SPACE_TEXT = {"No space left on device": 28, "Disk quota exceeded": 122}


def no_space(exc: BaseException) -> int | None:
    """ENOSPC or EDQUOT when `exc` is an OSError saying the disk (or the quota) is full, else None.

    pyarrow raises an OSError whose errno is sometimes unset, with the C library's text in its message.
    """
    if not isinstance(exc, OSError):
        return None
    if exc.errno in NO_SPACE:
        return exc.errno
    return next((code for text, code in NO_SPACE_TEXT.items() if text in str(exc)), None)


def human_bytes(n: int) -> str:
    """`0 B`, `900 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB`."""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def mount_point(path: str) -> str:
    """The mount point of the filesystem that holds `path` (or would, for a path not made yet)."""
    import os

    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


class DiskFull(CqiaError):
    """Writing `path` found its filesystem full (ENOSPC) or the user's quota spent (EDQUOT).

    The message names the file (its final path, never a temporary's), the space that was free on its
    filesystem at that moment, and the fix: free space, then run the command again (`rerun` names it).
    """

    def __init__(self, path: str, *, code: int = 28, staged: bool = True, command: str | None = None,
                 elsewhere: str = "", free: int | None = None, total: int | None = None, mount: str | None = None):
        import shutil

        self.path, self.code, self.staged, self.elsewhere = path, code, staged, elsewhere
        self.mount = mount or mount_point(path)
        if free is None:
            try:
                usage = shutil.disk_usage(self.mount)
                free, total = usage.free, usage.total
            except OSError:
                free = total = None
        self.free, self.total = free, total
        self.command = command
        space = f"{human_bytes(free)} free of {human_bytes(total)} on {self.mount}" if free is not None else \
            f"on {self.mount}"
        message = f"{NO_SPACE.get(code, NO_SPACE[28])} ({space})"
        if staged:
            message += "; nothing was written"
        rerun = f"rerun `{command}`" if command else "run the command again"
        super().__init__(message, where=path, fix=f"Free space on {self.mount}{elsewhere} and {rerun}")

    def __reduce__(self):
        return _rebuild_disk_full, (type(self), self.path, self.code, self.staged, self.command, self.elsewhere,
                                    self.free, self.total, self.mount)

    def rerun(self, command: str, elsewhere: str = "") -> "DiskFull":
        """The same error, its fix naming the command to run again (and where else the output can go)."""
        return type(self)(self.path, code=self.code, staged=self.staged, command=command, elsewhere=elsewhere,
                          free=self.free, total=self.total, mount=self.mount)


def _rebuild_disk_full(cls, path, code, staged, command, elsewhere, free, total, mount) -> DiskFull:
    return cls(path, code=code, staged=staged, command=command, elsewhere=elsewhere, free=free, total=total,
               mount=mount)


def disk_full(exc: BaseException) -> DiskFull | None:
    """The first full-disk fault behind `exc` (itself, or what it was raised while handling), as a DiskFull.

    When one output fails to write, closing the others on the way out can fail the same way: the first
    file is the one to name. An OSError that no writer translated names its own file, or the working
    directory's filesystem when it names none, and does not promise that nothing was written.
    """
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    first = next((e for e in reversed(chain) if isinstance(e, DiskFull)), None)
    if first is not None:
        return first
    raw = next((e for e in reversed(chain) if no_space(e)), None)
    if raw is None:
        return None
    import os

    path = raw.filename if isinstance(raw.filename, str) else None
    return DiskFull(path or os.getcwd(), code=no_space(raw), staged=False)
