"""The Training tab's core without widgets: the clip library and the training/evaluation jobs."""
