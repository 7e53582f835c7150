"""Provides the dashboard package."""
