"""MLflow "model from code": the pyfunc that MLflow loads and serves (no pickled objects)."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class CreditRiskModel(PythonModel):
    def load_context(self, context) -> None:
        from pathlib import Path

        from training.serving import Scorer

        self.scorer = Scorer(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"pd": self.scorer.predict(model_input)})


mlflow.models.set_model(CreditRiskModel())
