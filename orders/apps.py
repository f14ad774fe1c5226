from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        # Subscribing the actors to their events: every process that publishes needs them.
        from orders import tasks  # noqa: F401
