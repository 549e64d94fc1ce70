"""Streaming detection: readings in, the levels of alertable conditions out (cloud.detect.engine)."""
