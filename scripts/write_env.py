"""Write a development .env (DEBUG on, random secrets) unless there is one already."""

import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    path = ROOT / ".env"
    if path.exists():
        print(".env exists; left as it is.")
    else:
        path.write_text(
            "DEBUG=true\n"
            f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
            f"DEMO_ADMIN_PASSWORD={secrets.token_urlsafe(12)}\n"
            "# Webhook endpoints may point at a receiver on this machine (never in production).\n"
            "BUZZER_WEBHOOKS_ALLOW_PRIVATE=true\n"
            "# Without REDIS_URL, `make run` starts a Redis of this checkout's own (var/redis/).\n"
            "# REDIS_URL=redis://127.0.0.1:6379/0\n"
        )
        print("Wrote .env with DEBUG on and a new SECRET_KEY.")
