"""MLflow models-from-code entry point of the served model (`training.mlflow_model` logs it).

MLflow executes this file when it loads the model: it names the model object instead of
pickling one, so loading runs our code, never a deserialized blob.
"""

from mlflow.models import set_model

from core.bundle_pyfunc import BundlePyfunc

set_model(BundlePyfunc())
