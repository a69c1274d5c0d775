"""The asyncio shell around the core: the ``Orchestrator``, its config, run handles and events."""
