"""`manage.py create_webhook_endpoint URL [--event TYPE ...]`: an endpoint, its id and secret."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webhooks import registry, services


class Command(BaseCommand):
    help = "Create a webhook endpoint and print its id and signing secret."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("url")
        parser.add_argument(
            "--event",
            action="append",
            default=[],
            dest="events",
            help=f"an event type it wants (repeat; none: all). Known: {', '.join(registry.types())}",
        )
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            endpoint = services.create_endpoint(
                options["url"], events=options["events"], description=options["description"]
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"id: {endpoint.pk}\nsecret: {endpoint.secret}\n")
