"""Django admin of the routing app: each room registers its own models."""

from routing.judges import admin as judges_admin  # noqa: F401
from routing.router import admin as router_admin  # noqa: F401
