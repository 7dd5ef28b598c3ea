from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from .immutability import register_sqlite_function

        # The SQLite triggers call this function; without it every UPDATE or DELETE fails (refused).
        connection_created.connect(register_sqlite_function, dispatch_uid="audit.sqlite_function")
