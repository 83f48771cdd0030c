"""Fetching URLs the worker does not control: the URL policy, the fetcher, media types from bytes."""
