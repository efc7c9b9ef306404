"""Real-time scoring: model bundles, rules fallback, policy, caps, experiments, decision log,
the in-process decision engine and the BentoML service (`serving.service:IntentService`)."""
