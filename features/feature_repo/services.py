"""The FeatureService named in configs/features.yaml: the model's feature contract."""

from features.store.definitions import repo_definitions

model_features = repo_definitions().service
