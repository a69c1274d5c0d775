"""Routing: which agent takes a ready task, and why.

- ``router``: the ``Router`` (earliest expected finish, or the cheapest good enough), its
  ``Choice`` and the score's parts;
- ``weights``: ``RoutingWeights``, what each part weighs and the objective;
- ``order``: the orders a scored list is read in (``cheapest_meeting``, complexity bands,
  the runners-up);
- ``scarcity``: what taking a rare server costs the work only it can do;
- ``repeat``: the soft fallback priced (a retry on a spec that failed the task);
- ``round``: scores reused within one dispatch round;
- ``chooser``: a routing policy that replaces scoring (baselines).

Nothing is re-exported here: ``core.learning`` imports ``repeat``, and ``router`` imports
``core.learning``.
"""
