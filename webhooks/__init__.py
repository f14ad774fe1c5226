"""Outbound webhooks: signed (Standard Webhooks), retried for about three days, logged
and resendable. Apps declare their event types with `webhooks.event(...)`."""

from webhooks.registry import event

__all__ = ["event"]
