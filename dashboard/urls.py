from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("campaigns/<int:campaign_id>/", views.overview, name="overview"),
    path("campaigns/<int:campaign_id>/data.json", views.overview_data, name="overview_data"),
    path("campaigns/<int:campaign_id>/left/", views.who_is_left, name="who_is_left"),
    path("campaigns/<int:campaign_id>/left.csv", views.who_is_left_csv, name="who_is_left_csv"),
    path("campaigns/<int:campaign_id>/push/", views.codes_push, name="codes_push"),
    path("campaigns/<int:campaign_id>/reminders/", views.reminder_rule, name="reminder_rule"),
    path("batches/", views.batch_list, name="batch_list"),
    path("batches/<int:batch_id>/", views.batch_detail, name="batch_detail"),
    path("batches/<int:batch_id>/delivery.json", views.batch_delivery_data, name="batch_delivery_data"),
    path("batches/<int:batch_id>/<slug:action>/", views.batch_action, name="batch_action"),
    path("schedule/", views.batch_schedule, name="batch_schedule"),
    path("schedule/preview.json", views.batch_preview, name="batch_preview"),
    path("vending/", views.vending_health, name="vending_health"),
    path("vending/data.json", views.vending_data, name="vending_data"),
    path("export/<slug:name>.csv", views.export_csv, name="export_csv"),
]
