from ..daemon.conftest import daemon_factory  # noqa: F401  (the real-daemon fixture)
