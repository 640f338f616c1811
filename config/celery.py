"""The Celery app. Configuration comes from Django settings under the CELERY_ namespace.

The retry policy the tasks share is in common/retry.py (docs/reliability.md).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("marketing")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(bind=True, name="config.ping")
def ping(self, value: int = 1) -> dict:
    """A trivial task that proves a worker is up and can reach the result backend."""
    return {"pong": value, "hostname": self.request.hostname}
