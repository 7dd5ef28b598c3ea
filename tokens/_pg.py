"""The vend's PostgreSQL statements (LATERAL joins, data-modifying CTEs, FOR UPDATE).

Same functions, same signatures as `tokens._portable`; callers pick one per call through
`kplc_sts.db.by_vendor`. The vend is the hot path (hundreds per second): its facts come back in
one statement and its rows go in with one more, rather than a dozen ORM queries. The open
enrollment is `campaigns.rules.OPEN_ENROLLMENT`, compiled to SQL here from the same predicate
the ORM filter is built from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, models

from campaigns import rules
from campaigns.models import Batch, Campaign, Enrollment
from kplc_sts.db import sql_value
from meters.models import Meter

from .keys import MeterKey
from .models import IssuedToken, KeyChangeSet, TidCounter, Vend, VendReference
from .plan import VendFacts

_NOW = object()  # where the vend's "now" goes in the facts statement's parameters


@cache
def _attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


@cache
def _facts_widths() -> tuple[int, ...]:
    """Where each model's columns start in the facts row (meter, enrollment, its campaign, set, covering)."""
    widths = [len(_attnames(model)) for model in (Meter, Enrollment, Campaign, KeyChangeSet, Campaign)]
    return tuple(sum(widths[:index]) for index in range(len(widths)))


def _select_list(alias: str, model: type[models.Model]) -> str:
    return ", ".join(f'{alias}."{name}"' for name in _attnames(model))


def _order_sql(alias: str, order: Sequence[str]) -> str:
    parts = []
    for name in order:
        column = name.lstrip("-")
        column = "id" if column == "pk" else column
        parts.append(f"{alias}.{column} {'DESC' if name.startswith('-') else 'ASC'}")
    return ", ".join(parts)


@cache
def _facts_statement() -> tuple[str, tuple[Any, ...]]:
    """The facts statement and its parameter template (built once, after the app registry)."""
    predicate, predicate_params = rules.OPEN_ENROLLMENT.sql(
        aliases={"": "e", "campaign": "ec", "batch": "eb"}, now=_NOW
    )
    campaign_table = Campaign._meta.db_table
    sql = (
        f"SELECT {_select_list('m', Meter)}, {_select_list('e', Enrollment)}, {_select_list('c', Campaign)}, "  # noqa: S608
        f"{_select_list('k', KeyChangeSet)}, {_select_list('cov', Campaign)} "
        f"FROM {Meter._meta.db_table} m "
        f"LEFT JOIN LATERAL (SELECT e.* FROM {Enrollment._meta.db_table} e "
        f"JOIN {campaign_table} ec ON ec.id = e.campaign_id "
        f"LEFT JOIN {Batch._meta.db_table} eb ON eb.id = e.batch_id "
        f"WHERE e.meter_id = m.id AND {predicate} "
        f"ORDER BY {_order_sql('e', rules.OPEN_ENROLLMENT_ORDER)} LIMIT 1) e ON true "
        f"LEFT JOIN {campaign_table} c ON c.id = e.campaign_id "
        f"LEFT JOIN LATERAL (SELECT * FROM {KeyChangeSet._meta.db_table} k "
        "WHERE k.meter_id = m.id AND k.from_sgc = m.sgc AND k.from_krn = m.krn "
        "ORDER BY k.created_at DESC, k.id DESC LIMIT 1) k ON true "
        # The covering campaign (campaigns.selectors.campaign_covering): sgcs is a JSON list.
        f"LEFT JOIN LATERAL (SELECT * FROM {campaign_table} cc WHERE cc.status = %s AND cc.from_krn = m.krn "
        "AND cc.sgcs @> to_jsonb(m.sgc::text) ORDER BY cc.id DESC LIMIT 1) cov ON true "
        "WHERE m.meter_number = %s"
    )
    return sql, (*predicate_params, Campaign.Status.ACTIVE)


@cache
def _converters(model: type[models.Model]) -> tuple[tuple[int, Any], ...]:
    return tuple(
        (index, field) for index, field in enumerate(model._meta.concrete_fields) if hasattr(field, "from_db_value")
    )


def _from_row(model: type[models.Model], row: Sequence[Any], start: int) -> Any:
    """A model instance from a slice of a raw row, with the fields' database converters applied
    (JSONField text -> Python) as the ORM's compiler would."""
    names = _attnames(model)
    values = list(row[start : start + len(names)])
    for index, field in _converters(model):
        if values[index] is not None:
            values[index] = field.from_db_value(values[index], None, connection)
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


def vend_facts_load(*, meter_number: str, now: dt.datetime) -> VendFacts | None:
    sql, template = _facts_statement()
    at = sql_value(now)
    params = [at if value is _NOW else value for value in template]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, meter_number])
        row = cursor.fetchone()
    if row is None:
        return None
    starts = _facts_widths()
    meter = _from_row(Meter, row, starts[0])
    enrollment = None
    if row[starts[1]] is not None:
        enrollment = _from_row(Enrollment, row, starts[1])
        enrollment.campaign = _from_row(Campaign, row, starts[2])
        enrollment.meter = meter
    latest_set = _from_row(KeyChangeSet, row, starts[3]) if row[starts[3]] is not None else None
    covering = _from_row(Campaign, row, starts[4]) if row[starts[4]] is not None else None
    return VendFacts(meter=meter, enrollment=enrollment, latest_set=latest_set, covering=covering)


# --- Writing the vend -----------------------------------------------------------------------------


@cache
def _issue_statement(vend_columns: tuple[str, ...], token_columns: tuple[str, ...]) -> str:
    # The reference, the vend, its counter's new TID and its credit token in one round trip. The
    # vend table is partitioned by month, so the partner's reference is unique in VendReference: the
    # vend is inserted only if its reference was, under the id the reference row drew, and the token
    # only if the counter took its TID (a duplicate reference writes nothing and is replayed).
    vend_table = Vend._meta.db_table
    token_into = f"INSERT INTO {IssuedToken._meta.db_table} ({', '.join(token_columns)}, vend_id)"
    return (
        f"WITH r AS (INSERT INTO {VendReference._meta.db_table} (partner_id, reference, vend_id, created_at) "  # noqa: S608 - our tables
        f"VALUES (%s, %s, nextval('{vend_table}_id_seq'), %s) ON CONFLICT (partner_id, reference) DO NOTHING "
        "RETURNING vend_id), "
        f"v AS (INSERT INTO {vend_table} (id, {', '.join(vend_columns)}) "
        f"SELECT r.vend_id, {', '.join(['%s'] * len(vend_columns))} FROM r RETURNING id), "
        f"c AS (UPDATE {TidCounter._meta.db_table} SET last_tid = %s, updated_at = %s WHERE id = %s "
        "AND EXISTS (SELECT 1 FROM v) RETURNING last_tid), "
        f"t AS ({token_into} SELECT {', '.join(['%s'] * len(token_columns))}, v.id FROM v, c RETURNING id) "
        "SELECT (SELECT id FROM v), (SELECT id FROM t)"
    )


def vend_rows_insert(
    *, vend: Mapping[str, Any], counter: TidCounter, token: Mapping[str, Any]
) -> tuple[int, int] | None:
    """Insert the vend's reference and the vend, write the counter's new TID (counter.last_tid) and
    insert the credit token.

    Returns (vend id, token id), or None when a vend with this partner and reference exists:
    then nothing is written."""
    sql = _issue_statement(tuple(vend), tuple(token))
    # psycopg2 adapts every value of these rows itself (UUID, Decimal, aware datetimes, str, int):
    # no per-field preparation on the hot path, unlike the portable twin.
    params: list[Any] = [
        vend["partner_id"], vend["reference"], vend["created_at"],
        *vend.values(), counter.last_tid, counter.updated_at, counter.pk, *token.values(),
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        vend_id, token_id = cursor.fetchone()
    if vend_id is None:
        return None
    if token_id is None:
        raise RuntimeError(f"the TID counter {counter.pk} was not written: no credit token for vend {vend_id}")
    return vend_id, token_id


_COUNTER_TABLE = TidCounter._meta.db_table
_COUNTER_SQL = f"SELECT id, last_tid FROM {_COUNTER_TABLE} WHERE meter_id = %s AND sgc = %s AND krn = %s FOR UPDATE"  # noqa: S608


def tid_counter_lock(*, meter_id: int, key: MeterKey, now: dt.datetime) -> TidCounter:
    params: list[Any] = [meter_id, key.sgc, key.krn]
    with connection.cursor() as cursor:
        cursor.execute(_COUNTER_SQL, params)
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                f"INSERT INTO {_COUNTER_TABLE} (meter_id, sgc, krn, base_date, last_tid, updated_at) "  # noqa: S608
                "VALUES (%s, %s, %s, %s, NULL, %s) ON CONFLICT (meter_id, sgc, krn) DO NOTHING",
                [*params, key.base_date, sql_value(now)],
            )
            cursor.execute(_COUNTER_SQL, params)
            row = cursor.fetchone()
    return TidCounter(pk=row[0], meter_id=meter_id, sgc=key.sgc, krn=key.krn, last_tid=row[1])
