"""Log-in pages behind the log-in limits (the site's and the admin's)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse

from limits import services
from limits.responses import too_many_requests


def login_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse a log-in POST with 429 while its username or address is locked out. The
    failures themselves are counted by limits.signals, wherever authenticate() ran."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            limited = services.login_blocked(request, request.POST.get("username", ""))
            if limited is not None:
                return too_many_requests(request, limited)
        return view(request, *args, **kwargs)

    return wrapped


login = login_limited(auth_views.LoginView.as_view())


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    return login_limited(admin.site.login)(request, extra_context)
