"""Small faithful fakes of APIs that have no local server (Kubernetes, GCP Resource Manager), for tests and the demo."""
