"""Failed log-ins count against the log-in limits, whichever view took them (the site's
log-in page or the admin's): Django sends `user_login_failed` from `authenticate()`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from limits import services


@receiver(user_login_failed, dispatch_uid="limits.count_failed_login")
def count_failed_login(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any) -> None:
    if request is None:  # not a web log-in (a shell, a test client's login())
        return
    services.record_login_failure(request, str(credentials.get("username") or ""))
