"""PySide6 widgets."""
