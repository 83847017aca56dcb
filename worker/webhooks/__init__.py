"""Webhooks: signed, retried delivery of terminal events to a conversation's URL (``parley webhooks run``)."""
