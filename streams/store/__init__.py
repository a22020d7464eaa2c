"""Redis keyspaces, one module each: health, owners, paging, orphans, plus the session and the
outage breaker.
"""
