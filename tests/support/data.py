from typing import Any


def order_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "email": "ada@example.com",
        "items": [{"sku": "BUZ-001", "quantity": 2}],
        "card": "4242424242424242",
        "priority": "standard",
    }
    body.update(overrides)
    return body
