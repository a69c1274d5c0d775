"""The Ray backend (``backend: ray``): agent instances as Ray actors across a cluster.

Imported only when chosen (``metaagent.backends.base.load_backend``); needs ``metaagent[ray]``.
"""
