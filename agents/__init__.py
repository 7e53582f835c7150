"""Provides the agents package."""
