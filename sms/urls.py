from django.urls import path

from . import views

app_name = "sms"
urlpatterns = [
    path("delivery-reports/<str:secret>/", views.delivery_report, name="delivery-report"),
]
