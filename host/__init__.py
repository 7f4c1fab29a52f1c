"""The host interface: the event store published over MQTT, and the host's requests taken from it."""
