"""The Slack bridge: ``POST /slack/events`` (Bolt), the reply relay (``parley slack-relay``), and the pure
rendering of replies for Slack."""
