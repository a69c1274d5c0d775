"""Workflow files: the schema, the hardened reader, building agents and tasks (with catalog roles
merged in), identity."""
