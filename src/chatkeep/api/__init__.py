"""HTTP: ``create_app``, one thin router per resource, problem+json errors, auth."""

from chatkeep.api.app import create_app

__all__ = ["create_app"]
