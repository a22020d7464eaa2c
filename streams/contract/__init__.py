"""The wire formats, pure: prediction and label events, the dead-letter envelope, outcomes,
alerts, channel specs and the id grammar.
"""
