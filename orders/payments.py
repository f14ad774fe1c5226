"""The payment gateway interface and a fake gateway that behaves like a card
processor's test mode."""

import logging
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from orders.errors import PaymentFailed

logger = logging.getLogger(__name__)

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_PROCESSING_ERROR = "4000000000000119"


@dataclass(frozen=True)
class Charge:
    reference: str
    amount: Decimal


class PaymentGateway(Protocol):
    def charge(self, amount: Decimal, card: str, reference: str) -> Charge:
        """Charge the card or raise `PaymentFailed`."""

    def refund(self, charge: Charge) -> None:
        """Give a charge back (the order could not be saved after all)."""


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number]
    checksum = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        checksum += digit
    return checksum % 10 == 0


class FakeGateway:
    """Test-mode card processor: 4242… succeeds, 4000…0002 is declined, 4000…0119 fails
    with a processing error, any other number passing the Luhn check succeeds."""

    def __init__(self, latency_ms: int | None = None) -> None:
        self.latency = (settings.PAYMENT_LATENCY_MS if latency_ms is None else latency_ms) / 1000

    def charge(self, amount: Decimal, card: str, reference: str) -> Charge:
        if self.latency:
            time.sleep(self.latency)
        if not luhn_ok(card):
            raise PaymentFailed("incorrect_number", "The card number is incorrect.")
        if card == CARD_DECLINED:
            raise PaymentFailed("card_declined", "The card was declined.")
        if card == CARD_PROCESSING_ERROR:
            raise PaymentFailed(
                "processing_error", "An error occurred while processing the card. Try again in a little while."
            )
        return Charge(reference=f"ch_{uuid.uuid4().hex[:24]}", amount=amount)

    def refund(self, charge: Charge) -> None:
        logger.info("Refunded charge %s (%s)", charge.reference, charge.amount)


def get_gateway() -> PaymentGateway:
    return import_string(settings.PAYMENT_GATEWAY)()
