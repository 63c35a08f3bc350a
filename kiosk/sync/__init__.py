"""Sync with the province over MQTT: topics and schemas (`topics`), trust (`signing`), the
durable outbox (`outbox`), the clock-offset estimate (`clockoffset`). See docs/sync.md."""
