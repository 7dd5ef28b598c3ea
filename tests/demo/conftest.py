"""The demo tests reuse the SMS pipeline's fixtures: the local Africa's Talking gateway and the SDK."""

from tests.sms.conftest import at_backend, fake_gateway  # noqa: F401 - fixtures, found by name
