"""Names the command line needs without the `server` extra installed."""

from __future__ import annotations

#: The default database: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///peergrid.db"

#: Roles of an account on the platform (the public needs no account).
ROLES = ("participant", "operator", "network-operator")
