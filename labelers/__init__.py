"""Pure labeling rules: observations + policy -> labels, evidence, findings.

Nothing here imports a cloud SDK or touches storage (enforced by import-linter).
"""
