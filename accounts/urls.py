from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("setup/", views.setup, name="2fa-setup"),
    path("verify/", views.verify, name="2fa-verify"),
]
