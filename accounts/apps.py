from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Staff accounts and roles"

    def ready(self) -> None:
        from .roles import roles_sync_after_migrate

        # After every migrate (tests included) the role groups match accounts.roles.ROLES.
        post_migrate.connect(roles_sync_after_migrate, dispatch_uid="accounts.roles_sync")

        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_in

        from .lockout import lockout_audit
        from .twofactor import remember_sign_in

        user_locked_out.connect(lockout_audit, dispatch_uid="accounts.lockout_audit")
        user_logged_in.connect(remember_sign_in, dispatch_uid="accounts.remember_sign_in")
