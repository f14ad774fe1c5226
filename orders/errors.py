class OrderError(Exception):
    """A request the shop refuses: a machine-readable code, a sentence and an HTTP status."""

    status = 422

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status


class PaymentFailed(OrderError):
    status = 402


class ApiKeyExpired(OrderError):
    """A known key past its expiry: refused like an unknown key, saying why."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__("unauthorized", message)
