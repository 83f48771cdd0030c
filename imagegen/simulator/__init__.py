"""Local fake of the upstream image-generation APIs (APIDot today), with prompt-scripted faults.

Standalone on purpose: it imports nothing from the rest of imagegen (and no Celery), so it
behaves like a foreign server and can run in its own process.
"""

from .app import create_app, run
from .settings import SimSettings

__all__ = ["SimSettings", "create_app", "run"]
