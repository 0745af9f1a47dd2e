"""Fixtures for the emulator's own tests.

Every test has a deadline: pytest-timeout's marker when the plugin is there
(tests/pytest.ini sets it up), otherwise SIGALRM; every HTTP call and every
process wait has its own timeout as well (see emulator_harness.py).
"""
import os
import signal

import pytest

from emulator_harness import Emulator

TEST_TIMEOUT = 60

try:
    import pytest_timeout  # noqa: F401
    HAVE_TIMEOUT_PLUGIN = True
except ImportError:
    HAVE_TIMEOUT_PLUGIN = False


HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items):
    """Session-wide hook: touch only this directory's tests."""
    if HAVE_TIMEOUT_PLUGIN:
        for item in items:
            if str(item.fspath).startswith(HERE + os.sep) and \
                    item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


@pytest.fixture(autouse=True)
def _deadline():
    if HAVE_TIMEOUT_PLUGIN:
        yield
        return

    def expired(signum, frame):
        raise TimeoutError("test exceeded %d s" % TEST_TIMEOUT)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def start_emulator():
    """Factory: start_emulator(*extra_args) -> Emulator; all stopped at teardown."""
    started = []

    def start(*args, **kw):
        emu = Emulator(*args, **kw)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def emu(start_emulator):
    """A fresh emulator with the sample data only."""
    return start_emulator()
