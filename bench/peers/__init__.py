"""Peer comparisons: the gateway side by side with other gateways (`make bench-peers`)."""
