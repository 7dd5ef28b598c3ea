from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "partners"
    verbose_name = "Vending partners"

    def ready(self) -> None:
        from . import schema  # noqa: F401 - registers the OpenAPI security scheme
