"""Reports: ``BatchResult`` and its figures, ``explain``, and reports of stored runs."""
