from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.services import issue_api_key


class Command(BaseCommand):
    help = "Create an API key for the JSON API and print it (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who the key is for, e.g. 'mobile-app'.")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Refuse the key after this many days (default: it never expires).",
        )

    def handle(self, *args: Any, name: str, expires_in_days: int | None, **options: Any) -> None:
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be 1 or more.")
        api_key, raw = issue_api_key(name, expires_in_days)
        self.stdout.write(raw)
        if api_key.expires_at is not None:
            self.stderr.write(f"It expires on {api_key.expires_at:%Y-%m-%d %H:%M} UTC.")
