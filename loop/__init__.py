"""The closed loop: policy evaluation in simulation, the efficacy report, and the decision
log's way back into events and training data (`intent evaluate-policy`, `intent report`,
`intent loop export`, `intent loop exposure`)."""
