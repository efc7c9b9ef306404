"""Policy learning offline: the contextual bandit from decision logs, off-policy evaluation."""
