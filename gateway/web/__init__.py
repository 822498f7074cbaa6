"""The optional HTTP listener: the status page, its JSON endpoints and Prometheus ``/metrics``."""
