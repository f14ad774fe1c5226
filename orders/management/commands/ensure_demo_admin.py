"""The demo admin user for `make run`, with the password kept in .env (DEMO_ADMIN_PASSWORD).

The settings read .env into the environment (django-environ), so the password is there
whichever way the command is started. Without one (a .env copied from .env.example) a
password is generated and printed instead of stopping `make run`.
"""

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo admin user (DEMO_ADMIN_PASSWORD, else a generated one) if missing; say how to log in."

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "")
        users = get_user_model().objects
        user = users.filter(username="admin").first()
        if user is None:
            generated = not password
            password = password or secrets.token_urlsafe(12)
            users.create_superuser("admin", "admin@buzzer.localhost", password)
            self.stdout.write(f"Demo admin created: user 'admin', password '{password}'")
            if generated:
                self.stdout.write(
                    "  (generated: DEMO_ADMIN_PASSWORD is not set; put DEMO_ADMIN_PASSWORD=<that password> "
                    "in .env to have it shown here on every start)"
                )
        elif not password:
            self.stdout.write(
                "Demo admin 'admin' exists; DEMO_ADMIN_PASSWORD is not set in .env, so its password was printed "
                "only when it was created (`manage.py changepassword admin` sets a new one)."
            )
        elif user.check_password(password):
            self.stdout.write(f"Demo admin: user 'admin', password '{password}'")
        else:
            self.stdout.write("Demo admin 'admin' exists with a password changed since; it was left alone.")
