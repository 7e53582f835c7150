"""Provides the Textual app: screens, widgets, dialogs and the actions behind the keys.

May import: clustertop.{wire,config,store,read,control,themes}; never agents, collectors, the simulator or the CLI.
"""
