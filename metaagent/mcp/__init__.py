"""The MCP server (``metaagent mcp``, and ``/mcp`` on ``metaagent serve``): a short list of tools,
resources and prompts over the service's REST API v1, built on the official ``mcp`` SDK (2.x).

``api`` reaches the runs (attached: a running service over HTTP; embedded: an own service
in this process), ``tools`` / ``views`` / ``prompts`` make the MCP surface, ``server`` puts
them together, ``http`` mounts it on the service's app. Needs the ``mcp`` extra.
"""
