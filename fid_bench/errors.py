"""User-facing errors: reported as one line, never as a traceback."""


class FidBenchError(Exception):
    """Bad input or configuration the user can fix; the message says how."""


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
