from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Update campaigns"

    def ready(self) -> None:
        # The apps below campaigns report events; campaigns decides what they mean for its state.
        from meters.events import register_imported
        from sms.events import codes_delivered, notices_out, notices_sent

        from . import receivers

        register_imported.connect(receivers.register_imported, dispatch_uid="campaigns.register_imported")
        notices_sent.connect(receivers.notices_sent, dispatch_uid="campaigns.notices_sent")
        notices_out.connect(receivers.notices_out, dispatch_uid="campaigns.notices_out")
        codes_delivered.connect(receivers.codes_delivered, dispatch_uid="campaigns.codes_delivered")
