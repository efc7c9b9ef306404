"""The FeatureService named in configs/features.yaml: the model's feature contract."""

from features.feast_defs import repo_definitions

model_features = repo_definitions().service
