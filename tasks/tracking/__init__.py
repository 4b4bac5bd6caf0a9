"""Tracks: link each clip's boxes over time (link), write one file per clip (clips), score them
against truth (score); the DVC stage track@N (stages)."""
