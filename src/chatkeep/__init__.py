"""chatkeep: a self-hosted chat service for language models whose history is always right."""

__version__ = "0.1.0"

__all__ = ["__version__"]
