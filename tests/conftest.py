"""Suite-wide settings: property tests must not fail on a slow, loaded CI machine
for being slow (they have no deadlines either)."""

from hypothesis import HealthCheck, settings

settings.register_profile("mailsrv", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mailsrv")
