"""Suite-wide settings: property tests must not fail on a slow, loaded CI machine
for being slow (they have no deadlines either)."""

from hypothesis import HealthCheck, settings

settings.register_profile("mailsrv", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mailsrv")

# PostgreSQL fixtures (pg_cluster, pg_dsn): the store tests in tests/pg and
# the end-to-end suites run against it (tests/pgfixture.py says how).
from tests.pgfixture import pg_cluster, pg_dsn  # noqa: E402, F401
