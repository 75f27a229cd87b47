"""The domain core: traffic sources, pool rules, number leases and call attribution. No I/O."""
