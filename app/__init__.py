"""Application core without widgets: CLI, frame sources, sessions, voice, settings, exports."""
