"""llmops-actions: the library behind the actions (data checks, training, evaluation gates, promotion, canaries).

Each action's logic lives in a subpackage or module here; ``llmops.gha`` alone talks to the runner and
``llmops.errors`` holds the one error hierarchy.
"""
__version__ = "1.0.0"
