"""The pure core: decisions, the task graph, routing, learning, the pool policy and the scheduler.

Nothing here does I/O, sleeps or reads a clock: every call carries ``now`` (a test guards it).
"""
