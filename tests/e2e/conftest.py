import pytest

from tests.e2e.harness import Server

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture
def server(tmp_path):
    """A fresh server with users alice and bob and no mail."""
    srv = Server(str(tmp_path / "data"))
    for name, pw in USERS.items():
        srv.add_user(name, pw)
    srv.start()
    yield srv
    srv.stop()
