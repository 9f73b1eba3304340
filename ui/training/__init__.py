"""The Training tab: clip library, annotator, train panel."""
