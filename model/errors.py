"""Errors a user can act on. Kept free of heavy imports so the CLI can catch them cheaply."""


class ModelLoadError(RuntimeError):
    """A model, processor or adapter could not be loaded; the message names the path and the fix."""
