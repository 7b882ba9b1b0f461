"""Cloud speech engines, each used only when the operator has set its API key.

Their keys are read from the server's environment and sent to their own provider only.
"""
