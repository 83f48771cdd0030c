"""Webhooks both ways: upstream callbacks in (``inbound``), signed notifications out (``outbound``, ``batches``)."""
