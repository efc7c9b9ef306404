"""Events, signals and features: everything between raw behaviour and a model row."""
