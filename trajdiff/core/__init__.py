"""The engine: schedules, plans, samplers, guides, networks and training. Imports no plugin."""
