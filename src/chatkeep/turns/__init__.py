"""A turn's life: the context from the stored path, the generation task, the checkpoint writer,
and the live relay that streams attach to."""
