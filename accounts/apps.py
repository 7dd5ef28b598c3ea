from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Staff accounts and roles"

    def ready(self) -> None:
        from .roles import roles_sync_after_migrate

        # After every migrate (tests included) the role groups match accounts.roles.ROLES.
        post_migrate.connect(roles_sync_after_migrate, dispatch_uid="accounts.roles_sync")
