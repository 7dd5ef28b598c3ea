"""Keep the token digest index in step with tokens and key change codes as they are issued."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save


def _issued_token_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if created and not raw:
        from .services import token_digest_index_issued

        token_digest_index_issued(token=instance)


def _key_change_set_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if created and not raw:
        from .services import token_digest_index_key_change_set

        token_digest_index_key_change_set(key_change_set=instance)


def connect() -> None:
    from tokens.models import IssuedToken, KeyChangeSet

    post_save.connect(_issued_token_saved, sender=IssuedToken, dispatch_uid="care.index_issued_token")
    post_save.connect(_key_change_set_saved, sender=KeyChangeSet, dispatch_uid="care.index_key_change_set")
