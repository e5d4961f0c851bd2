"""Use cases every face calls: the query, the check, overrides, history, audit, listings, the scan pipeline.

No click, FastAPI, uvicorn or MCP here: a use case is the same function whether the CLI, the HTTP
API or an MCP tool asked.
"""
