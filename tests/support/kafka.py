"""Tests talk to Kafka through the same client the operator CLI uses."""

from shared.client import OfframpClient as TopicClient
from shared.client import of_type

__all__ = ["TopicClient", "of_type"]
