"""Mixed precision chosen by measured latency under an accuracy budget (``convdeploy tune``)."""
