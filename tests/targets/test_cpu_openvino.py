from tests.targets.conformance import TargetConformance


class TestOpenVinoCpu(TargetConformance):
    target_name = "cpu-openvino"
    # OpenVINO folds scales and requantizes in its own order: measured here, 64% of outputs
    # equal the simulation and all are within 1 LSB on the tiny model (5-7 LSB max on ResNet-20).
    max_lsb = 2.0
    min_exact_fraction = 0.5

    def test_float_runs_in_f32_not_bf16(self, target, tmp_path):
        from convdeploy.targets.base import RuntimeOptions
        from tests.artifacts import tiny_artifacts

        flt, _ = tiny_artifacts()
        runnable = target.compile(flt, tmp_path, options=RuntimeOptions(threads=1))
        assert runnable.details["inference_precision_hint"] == "f32"
        assert set(runnable.details["weighted_layer_precisions"]) <= {"f32", "FP32"}

    def test_int8_convolutions_are_used(self, target, tmp_path):
        from convdeploy.targets.base import RuntimeOptions
        from tests.artifacts import tiny_artifacts

        _, qdq = tiny_artifacts()
        runnable = target.compile(qdq, tmp_path, options=RuntimeOptions(threads=1))
        precisions = runnable.details["weighted_layer_precisions"]
        assert any(p.lower() in ("u8", "i8") for p in precisions), precisions
