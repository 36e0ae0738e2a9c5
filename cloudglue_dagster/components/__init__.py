"""The ``dg`` component: :mod:`.component` (its YAML) and :mod:`.scaffolder` (what
``dg scaffold defs`` writes)."""
