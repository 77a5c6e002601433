"""Workflows: the end-to-end jobs that sit on top of the library (above experiment, learning, store
and report): the simulated demo, ``analyze`` of a user's data, and the daily round against an event
store. The CLI calls these; nothing below imports them."""
