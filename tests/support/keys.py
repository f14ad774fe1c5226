"""Redis keys of the suite's installation: every key carries BUZZER_NAMESPACE."""

from django.conf import settings


def key(suffix: str) -> str:
    """`key("default.msgs")` is the installation's "<namespace>:default.msgs"."""
    return f"{settings.BUZZER_NAMESPACE}:{suffix}"
