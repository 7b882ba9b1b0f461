"""Flows: validated action lists (:mod:`.actions`) and the sans-IO engine that runs them (:mod:`.engine`)."""
