"""Real-time scoring: BentoML service, rules fallback, policy, caps, experiments."""
