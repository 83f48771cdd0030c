"""Operator actions and views: cancel/retry/resume, statistics, bulk requeue and purge, pricing, liveness."""
