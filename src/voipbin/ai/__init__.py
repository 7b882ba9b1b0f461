"""AI voice agents: VoIPBIN's AIs, aicalls and aimessages, answered by a local-first LLM."""
