from collections.abc import Iterable
from typing import Any

from jobs.models import Job
from jobs.services import jobs_for
from orders.models import Order, OrderItem


def job_states(order: Order, jobs: Iterable[Job] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "id": str(job.id),
            "actor": job.actor_name,
            "queue": job.queue_name,
            "status": job.status,
            "attempts": job.attempts,
        }
        for job in (jobs_for(order) if jobs is None else jobs)
    ]


def order_document(
    order: Order, items: Iterable[OrderItem] | None = None, jobs: Iterable[Job] | None = None
) -> dict[str, Any]:
    """The order as the API shows it; `items` and `jobs` save their queries when the
    caller has them already (the request that just wrote them)."""
    return {
        "id": str(order.id),
        "email": order.email,
        "status": order.status,
        "priority": order.priority,
        "total": str(order.total),
        "created_at": order.created_at.isoformat(),
        "items": [
            {
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": str(item.unit_price),
                "line_total": str(item.line_total),
            }
            for item in (order.items.all() if items is None else items)
        ],
        "jobs": job_states(order, jobs),
    }


def order_placed_document(order_id: str) -> dict[str, Any] | None:
    """The `data` of an `order.placed` webhook: the order as the API shows it (None: gone)."""
    order = Order.objects.filter(pk=order_id).first()
    return None if order is None else order_document(order)
