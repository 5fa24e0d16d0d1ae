"""DRF's per-user and per-address throttles (counted in the cache), with their rates read from
``settings.TANDEM_API_THROTTLE`` at each request instead of once at import."""

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _SettingsRate:
    def get_rate(self) -> str | None:
        return settings.TANDEM_API_THROTTLE.get(self.scope)


class UserThrottle(_SettingsRate, UserRateThrottle):
    """Authenticated callers, per user."""


class AnonThrottle(_SettingsRate, AnonRateThrottle):
    """Anonymous callers, per address."""
