from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from orders.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key for the JSON API and print it (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who the key is for, e.g. 'mobile-app'.")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        _, raw = ApiKey.issue(name)
        self.stdout.write(raw)
