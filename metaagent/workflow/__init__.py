"""Workflow files: the schema, the hardened reader, building agents and tasks, identity."""
