"""Offline analysis of results (no MPI): the cost formulas' model (:mod:`.cost`), fits
(:mod:`.fit`), the ``model``, ``report`` and ``compare`` commands, plots and the table
definitions shared with the live tables (:mod:`.tables`)."""
