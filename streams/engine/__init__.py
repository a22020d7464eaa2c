"""The framework-free core that the live worker and replay share: routing, the join,
watermarks, tracks and alert ids. No Faust, aiokafka, Redis, asyncio or clock.
"""
