"""The demo: the bundled demo estate, the local fakes it runs in, and the run that scans and serves it."""
