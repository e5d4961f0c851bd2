"""The MCP face: the tools agents call, over stdio or streamable HTTP."""
