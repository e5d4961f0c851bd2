"""The running program: CLI, daemon, HTTP API, MCP server, authority decisions, audit."""
