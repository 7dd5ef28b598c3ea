"""Django's PostgreSQL backend with a health check that costs no round trip.

CONN_HEALTH_CHECKS makes Django run `SELECT 1` before the first query of every request, so that a
persistent connection PostgreSQL dropped (a restart, a failover, pg_terminate_backend) is reopened
instead of failing the request (issue 11, finding 5). That is one more round trip, and one more
statement for the server, on every vend and every delivery report (issue 10: about a tenth of the
report handler's time). A server that ends a connection tells the client: it sends a FATAL
message and closes the socket, so the idle connection's socket turns readable. Nothing else makes
an idle connection readable except an asynchronous notice (a parameter change after a reload), for
which the full check still runs. So: not readable and idle means usable, without asking.

What the poll does not see is a server that vanished without closing: a cable cut, or a failover
that moves the server's address to another host. Nothing reaches an idle socket then, so it looks
usable; `SELECT 1` would have been answered by a reset (after a failover) and reconnected. With the
poll, that connection's next request fails its first query instead (one error per pooled
connection, each then closed and reopened by Django), a cost paid once per failover against a
round trip saved on every request. A cable cut costs the same either way: both wait for TCP.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base as postgresql
from psycopg2 import extensions


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def is_usable(self) -> bool:
        raw = self.connection
        if raw is None or raw.closed:
            return False
        if raw.info.transaction_status == extensions.TRANSACTION_STATUS_IDLE:
            try:
                poller = select.poll()
                poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
                if not poller.poll(0):
                    return True
            except (OSError, ValueError):
                return False
        return bool(super().is_usable())
