"""`ganforge serve`: a page that shows a new generated image at every visit, and an HTTP API (FastAPI)."""
from .app import create_app, serve
from .models import Limits, load_models

__all__ = ["Limits", "create_app", "load_models", "serve"]
