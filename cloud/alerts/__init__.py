"""Alert episodes: lifecycle (manager), persistence (store), outputs (log, MQTT, database, notifiers)."""
