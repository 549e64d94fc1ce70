"""The gateway agent: poll sensors, decode by profile, flag quality, store, publish over MQTT."""
