"""MLflow "model from code": the pyfunc that MLflow loads and serves (no pickled objects)."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class CreditRiskModel(PythonModel):
    def load_context(self, context) -> None:
        from pathlib import Path

        from training.serving.bundle import Scorer

        self.scorer = Scorer(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """pd, score and reason_1..k per row; ``params={"reasons": k}`` sets k (0: none)."""
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        from training.errors import DataError

        reasons = (params or {}).get("reasons")
        try:
            return self.scorer.decide(model_input, None if reasons is None else int(reasons))
        except DataError as e:  # a value that is not a number: HTTP 400 naming its column
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from e


mlflow.models.set_model(CreditRiskModel())
