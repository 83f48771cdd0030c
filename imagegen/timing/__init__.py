"""When the next call happens: pure backoff and poll schedules, learned durations, durable timers."""
