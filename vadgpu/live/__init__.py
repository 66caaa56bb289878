"""Live scoring: frames from a stream, scored causally as they arrive (stream.py: sources; scoring.py: clips,
smoothing, normalisation, alarms and the files written as it goes)."""
