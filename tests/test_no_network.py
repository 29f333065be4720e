"""The suite's own hygiene: nothing phones home (``NO_PHONE_HOME`` in conftest, inherited by
subprocesses) and any connection to another host is refused, recorded and fails the session."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import NO_PHONE_HOME


def test_telemetry_is_off_here_and_in_subprocesses() -> None:
    from mlflow.telemetry.utils import is_telemetry_disabled

    assert is_telemetry_disabled()
    code = "from mlflow.telemetry.utils import is_telemetry_disabled as d; print(d())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.stdout.strip() == "True", child.stderr[-500:]
    assert all(os.environ[k] == v for k, v in NO_PHONE_HOME.items())


def test_a_connection_to_another_host_is_refused_and_recorded(no_network: list[str]) -> None:
    before = len(no_network)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            with pytest.raises(OSError) as err:
                sock.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed anywhere
        assert err.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError):
            socket.create_connection(("198.51.100.7", 443), timeout=1)
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("example.org", 443)
        assert no_network[before:] == ["192.0.2.1:80", "198.51.100.7:443", "dns:example.org"]
    finally:
        del no_network[before:]  # these were on purpose: the session must not fail for them


def test_loopback_stays_open(no_network: list[str]) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    assert socket.getaddrinfo("localhost", 80)
