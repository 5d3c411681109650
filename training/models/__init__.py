"""Networks for tabular credit risk: model configs, builders selected by ``model.name`` (``build.py``)
and PD prediction; models know nothing of training."""
