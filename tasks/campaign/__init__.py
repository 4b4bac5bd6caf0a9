"""A campaign of rounds: the rounds declared in params.yaml, when a campaign stops, and the lock
that keeps one round at a time in a workspace."""
