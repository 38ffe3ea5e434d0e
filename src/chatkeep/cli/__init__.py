"""The ``chatkeep`` command: thin Typer commands over the store (admin) or the SDK (chat)."""
