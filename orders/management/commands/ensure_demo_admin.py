"""The demo admin user for `make run`, with the password kept in .env."""

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the demo admin user (DEMO_ADMIN_PASSWORD) if missing, and print how to log in."

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("DEMO_ADMIN_PASSWORD")
        if not password:
            raise CommandError("DEMO_ADMIN_PASSWORD is not set (make run writes it into .env).")
        users = get_user_model().objects
        user = users.filter(username="admin").first()
        if user is None:
            users.create_superuser("admin", "admin@buzzer.localhost", password)
            self.stdout.write(f"Demo admin created: user 'admin', password '{password}'")
        elif user.check_password(password):
            self.stdout.write(f"Demo admin: user 'admin', password '{password}'")
        else:
            self.stdout.write("Demo admin 'admin' exists with a password changed since; it was left alone.")
