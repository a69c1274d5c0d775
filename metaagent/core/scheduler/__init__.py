"""The ``Scheduler``: events in, typed decisions out, over every run's graph and queues."""
