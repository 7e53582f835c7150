"""Provides the job-control dialogs: confirm, pick, prompt, logs viewer, launcher."""
