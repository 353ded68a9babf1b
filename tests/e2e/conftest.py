import pytest

from tests.e2e.harness import Server

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(params=["maildir", "postgresql"])
def store_dsn(request):
    """Every end-to-end suite runs on both stores: None (the Maildir
    default) and a fresh PostgreSQL database."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_dsn")
    return None


@pytest.fixture
def server(tmp_path, store_dsn):
    """A fresh server with users alice and bob and no mail."""
    srv = Server(str(tmp_path / "data"), dsn=store_dsn)
    for name, pw in USERS.items():
        srv.add_user(name, pw)
    srv.start()
    yield srv
    srv.stop()
    # every read the protocols made was prefetched: none waited in the reactor thread
    assert "blocking database read" not in srv.log()
