"""Finding 12: the partner allowlist read only REMOTE_ADDR (behind a proxy, every partner is the
proxy), and a revoked key kept working in other processes for up to 5 s."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.db import connection
from rest_framework.test import APIClient

from partners.models import PartnerApiKey
from tests.support import REDIS_URL, needs_postgres_and_redis
from tests.vending.factories import make_partner

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.5"


@pytest.fixture
def allowlisted(partner, settings):
    partner.allowed_ips = "196.201.214.0/24"
    partner.save()
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    return partner


def _meter_lookup(client: APIClient, **meta: str):
    return client.get("/api/v1/meters/54000000015/", **meta)


def test_behind_the_proxy_the_partners_own_address_is_judged(allowlisted, api) -> None:
    allowed = _meter_lookup(api, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="196.201.214.9")
    assert allowed.status_code == 404 and allowed.json()["error"]["code"] == "UNKNOWN_METER"
    refused = _meter_lookup(api, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.4")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "IP_NOT_ALLOWED"


def test_a_client_cannot_claim_an_allowed_address(allowlisted, api) -> None:
    # Straight to gunicorn (not through the proxy): its X-Forwarded-For is ignored.
    forged = _meter_lookup(api, REMOTE_ADDR="203.0.113.4", HTTP_X_FORWARDED_FOR="196.201.214.9")
    assert forged.status_code == 403
    # Through the proxy, an address the client wrote in front of the proxy's is not believed either.
    spoofed = _meter_lookup(api, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="196.201.214.9, 203.0.113.4")
    assert spoofed.status_code == 403


def test_a_chain_of_our_proxies_is_walked(allowlisted, api) -> None:
    chained = _meter_lookup(api, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="196.201.214.9, 10.1.1.1")
    assert chained.status_code == 404  # 10.1.1.1 is ours too: the partner is 196.201.214.9


# --- revocation across processes -------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_in_another_process_is_refused_at_once(settings) -> None:
    needs_postgres_and_redis("the other process must share a PostgreSQL test database")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    caches["default"].clear()
    try:
        _partner, raw_key = make_partner("Cross Process Bank")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
        assert _meter_lookup(client).status_code == 404  # authenticated; now cached in this process
        key = PartnerApiKey.objects.get(partner__name="Cross Process Bank")

        db = connection.settings_dict
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.base",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "CACHE_URL": REDIS_URL,
            "STS_KEK": django_settings.STS_KEK,
        }
        script = (
            "import django; django.setup(); "
            "from partners.models import PartnerApiKey; from partners.services import partner_api_key_revoke; "
            f"print(partner_api_key_revoke(api_key=PartnerApiKey.objects.get(pk={key.pk}), actor_label='test'))"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0 and result.stdout.strip().endswith("True"), result.stderr
        refused = _meter_lookup(client)  # immediately: no sleep for the 5 s cache
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "INVALID_API_KEY"
    finally:
        caches["default"].clear()
