"""Webhooks both ways: upstream callbacks in (``inbound``), signed caller notifications out (``outbound``)."""
