"""The runtime: scheduled scans, leader election, Kubernetes watches, webhooks, metrics, the served app."""
