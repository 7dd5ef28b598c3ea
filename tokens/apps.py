from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Vending keys and tokens"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from .keys import vending_key_cache_clear
        from .models import VendingKey

        # A vending key loaded or replaced in this process is used at once (others: within the TTL).
        post_save.connect(vending_key_cache_clear, sender=VendingKey, dispatch_uid="tokens.vending_key_cache_clear")
        post_delete.connect(vending_key_cache_clear, sender=VendingKey, dispatch_uid="tokens.vending_key_cache_del")
