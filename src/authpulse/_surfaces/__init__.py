"""What people run: the CLI, the web and terminal dashboards, the demo, settings.

Nothing below imports this package.
"""
