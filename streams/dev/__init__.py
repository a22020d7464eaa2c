"""The embedded broker and Redis, the simulator, the demo and process helpers. Never imported
by runtime code.
"""
