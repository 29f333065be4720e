"""User-facing errors: reported as one line, never as a traceback."""

import errno

#: what a full disk, a quota or a read-only folder answers a write with: the user fixes these, not us
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class FidBenchError(Exception):
    """Bad input or configuration the user can fix; the message says how."""


def one_line(err: BaseException, limit: int | None = None) -> str:
    """``err``'s message on one line (whitespace collapsed), its type name when it has none.

    Hydra appends its config search path to composition errors; that is noise for a user and cut.
    ``limit`` caps the length (for tags and table cells).
    """
    text = " ".join(str(err).split()) or type(err).__name__
    text = text.split(" Config search path:")[0]
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def storage_error(err: BaseException) -> FidBenchError | None:
    """A one-line error for an ``OSError`` of a full disk or an unwritable place (``STORAGE_ERRNOS``),
    naming the file; None for any other error."""
    if not isinstance(err, OSError) or err.errno not in STORAGE_ERRNOS:
        return None
    where = f": {err.filename}" if err.filename else ""
    full = err.errno in (errno.ENOSPC, errno.EDQUOT)
    hint = "free space or choose another folder" if full else "check its permissions or choose another folder"
    return FidBenchError(f"{err.strerror or one_line(err)}{where} ({hint})")


def user_error(err: BaseException | None) -> FidBenchError | None:
    """The ``FidBenchError`` behind ``err``: itself, or the cause a wrapper raised it ``from``; a full
    disk or an unwritable folder (``storage_error``) counts as one too.

    Hydra's ``instantiate`` wraps whatever a constructor raises in an ``InstantiationException``
    whose message repeats the cause; the user needs the cause's one line.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, FidBenchError):
            return err
        storage = storage_error(err)
        if storage is not None:
            return storage
        seen.add(id(err))
        err = err.__cause__
    return None


def first_line(err: BaseException) -> str:
    """``Type: message`` with only the message's first line: for errors of libraries (MLflow, Optuna,
    SQLAlchemy) whose messages run on with tracebacks or server pages; the type says which library."""
    text = str(err).strip()
    msg = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


class UsageError(FidBenchError):
    """Arguments that do not fit together (exit code 2, like argparse's own errors)."""

    exit_code = 2


#: exit code of a sweep or study that ran to its end while some of its jobs or trials failed
PARTLY_FAILED_EXIT = 3


class PartlyFailed(FidBenchError):
    """A sweep or study that finished with failed jobs or trials (exit code ``PARTLY_FAILED_EXIT``).

    The message is one line per failure, after a first line counting them.
    """

    exit_code = PARTLY_FAILED_EXIT

    def __init__(self, message: str, value: float = float("nan")) -> None:
        super().__init__(message)
        self.value = value  # what the study found all the same (its best validation value)


def failures_report(what: str, failures: list[tuple[str, str]], total: int) -> str:
    """``"2 of 6 jobs failed:"`` then one ``  name: error`` line per failure (the end of a sweep)."""
    lines = [f"{len(failures)} of {total} {what} failed (exit code {PARTLY_FAILED_EXIT}):"]
    lines += [f"  {name}: {error}" for name, error in failures]
    return "\n".join(lines)
