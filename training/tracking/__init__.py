"""Tracking, the one MLflow wing: the tracker, its journal, the local server, credentials, the registry."""
