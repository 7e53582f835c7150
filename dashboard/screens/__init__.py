"""Provides the screens package."""
