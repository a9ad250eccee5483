"""Read: load and validate manifests, open a store (the engine or the plain directory) and scan it into frozen
facts. Nothing here changes a model file (the hash cache is the one side file it writes, beside the store).
"""
