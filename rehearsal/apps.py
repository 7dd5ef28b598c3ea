from django.apps import AppConfig


class RehearsalConfig(AppConfig):
    name = "rehearsal"
    verbose_name = "Campaign rehearsal"
