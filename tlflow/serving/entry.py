"""Model code of the logged `TaskModel` (MLflow "models from code"): MLflow stores this file with
the model and runs it at load time, so no pickled Python object is ever loaded."""

from mlflow.models import set_model

from tlflow.serving import TaskModel

set_model(TaskModel())
