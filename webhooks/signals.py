"""Saving or deleting an endpoint clears this process's cache of which events are wanted."""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from webhooks.models import Endpoint


@receiver(post_save, sender=Endpoint)
@receiver(post_delete, sender=Endpoint)
def _endpoints_changed(**_kwargs: Any) -> None:
    from webhooks.services import forget_endpoints

    forget_endpoints()
