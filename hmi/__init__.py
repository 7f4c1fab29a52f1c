"""The operator HMI: a web process of its own that reads the event store and sends commands."""
