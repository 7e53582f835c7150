"""Provides the themes package."""
