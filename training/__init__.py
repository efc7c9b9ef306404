"""Model training, evaluation, MLflow registry and ONNX export."""
