from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "partners"
    verbose_name = "Vending partners"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from . import schema  # noqa: F401 - registers the OpenAPI security scheme
        from .models import Partner, PartnerApiKey
        from .services import partner_api_key_cache_clear

        # A partner or key edited in this process (suspension, limits, revocation) takes effect at once.
        for model in (Partner, PartnerApiKey):
            post_save.connect(partner_api_key_cache_clear, sender=model, dispatch_uid=f"partners.key_cache.{model}")
            post_delete.connect(partner_api_key_cache_clear, sender=model, dispatch_uid=f"partners.key_cache_d.{model}")
