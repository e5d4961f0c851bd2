"""envlabel: the authoritative environment of every cloud and cluster resource.

This package is the shared vocabulary (records, target ids, config schema,
errors) and the agent-side SDK (HTTP client, boto3 and kubernetes guards).
It imports no cloud SDK and no daemon dependency.
"""

__version__ = "0.1.0"
