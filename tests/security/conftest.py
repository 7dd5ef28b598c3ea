"""Security tests reuse the care area's real keys, campaign and partner fixtures."""

from tests.care.conftest import campaign, keys, partner  # noqa: F401
