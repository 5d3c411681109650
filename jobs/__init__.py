"""Entry points: compose the config, validate it, dispatch, set the exit code."""
