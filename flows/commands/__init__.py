"""The `tlflow` commands, grouped by what they act on; `flows/cli.py` assembles them into the app.

- `pipelines`: run the Prefect flows (run, pretrain, retrain, report transfer, predict) and the data checks (validate);
- `registry`: read and change the MLflow model registry (models, history, promote, rollback, optimize);
- `serving`: serve a registered model over HTTP (serve);
- `ops`: local Prefect and MLflow servers and deployment runs (servers up/down, trigger).

Commands raise `tlflow.errors.TlflowError` subclasses for anything the user must fix; the app turns
them into a one-line message and the error's exit status (see `flows/cli.py`).
"""
