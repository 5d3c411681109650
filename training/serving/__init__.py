"""The served model: preprocessing, network, score scale and reason codes together as an MLflow
pyfunc (``bundle.py``); what a registered model carries (``package.py``)."""
