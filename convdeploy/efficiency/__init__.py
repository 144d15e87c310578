"""Per-layer efficiency: where a deployed model's time goes on each runtime, against a roofline
measured on this machine (``convdeploy profile``)."""
