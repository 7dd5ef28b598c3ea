"""Every URL the rehearsal's simulated partners, customers, gateway and manager use, in one place.

Paths are relative to the web server (gunicorn) or the gateway.
"""

from __future__ import annotations

# --- the web server -----------------------------------------------------------------------------------
HEALTH = "/healthz"
PARTNER_METER = "/api/v1/meters/{meter_number}/"
PARTNER_VENDS = "/api/v1/vends/"
PARTNER_VEND = "/api/v1/vends/{reference}/"
USSD_CALLBACK = "/ussd/"
DELIVERY_REPORTS = "/sms/delivery-reports/{secret}/"
LOGIN = "/accounts/login/"
DASHBOARD_DATA = "/dashboard/campaigns/{campaign_id}/data.json"
DASHBOARD_EXPORT = "/dashboard/export/{name}.csv"

# --- the Africa's Talking-like gateway (sms/fake_gateway.py) --------------------------------------------
GATEWAY_MESSAGES = "/_fake/messages?since={since}&limit={limit}"
GATEWAY_STATS = "/_fake/stats"


def ussd_callback(*, secret: str = "") -> str:
    """The USSD callback path: /ussd/<secret>/, as Africa's Talking is configured (bare without one)."""
    return f"{USSD_CALLBACK}{secret}/" if secret else USSD_CALLBACK
