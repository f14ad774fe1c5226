from typing import Any

from jobs.services import jobs_for
from orders.models import Order


def job_states(order: Order) -> list[dict[str, Any]]:
    return [
        {
            "id": str(job.id),
            "actor": job.actor_name,
            "queue": job.queue_name,
            "status": job.status,
            "attempts": job.attempts,
        }
        for job in jobs_for(order)
    ]


def order_document(order: Order) -> dict[str, Any]:
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
            for item in order.items.all()
        ],
        "jobs": job_states(order),
    }
