"""Application core without widgets: CLI, frame sources, narrate, sessions, settings, exports."""
