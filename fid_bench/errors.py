"""User-facing errors: reported as one line, never as a traceback."""


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


def user_error(err: BaseException | None) -> FidBenchError | None:
    """The ``FidBenchError`` behind ``err``: itself, or the cause a wrapper raised it ``from``.

    Hydra's ``instantiate`` wraps whatever a constructor raises in an ``InstantiationException``
    whose message repeats the cause; the user needs the cause's one line.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, FidBenchError):
            return err
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
