"""Dashboards: the live web page the API serves, and (later) Grafana dashboards to provision."""

from pathlib import Path

LIVE = Path(__file__).parent / "live"
"""A static page that shows the latest reading of every point, refreshed every few seconds."""
