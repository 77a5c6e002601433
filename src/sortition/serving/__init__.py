"""Request-time evaluation: Eppo-compatible flags and contextual bandits.

Nothing here imports offline code (pandas, stochtree, ...).
"""
