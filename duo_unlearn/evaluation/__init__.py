"""Evaluation laid out like the trainer: a pinned protocol (``protocol``), the figures with
their intervals (``metrics``, shared with the demo), the report (``report``), and two recipes
that write the same results schema: the ShapeWorld study (``study``) and a real model
(``real_model``). `duo eval` (``duo_unlearn.evaluate``) picks the recipe."""
