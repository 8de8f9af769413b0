"""Training: losses, metrics, optimiser groups, schedules, EMA (layer 5)."""
