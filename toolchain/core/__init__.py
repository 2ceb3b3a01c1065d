"""The bottom layer: helpers that import nothing of edgeprune's (errors, files, JSON lines,
progress, registries, pre/post-processing, latency statistics, devices).
"""
