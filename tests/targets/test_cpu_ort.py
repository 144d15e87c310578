from tests.targets.conformance import TargetConformance


class TestOrtCpu(TargetConformance):
    target_name = "cpu-ort"
    max_lsb = 2.0

    def test_int8_kernels_are_used(self, target, tmp_path):
        """uint8 activations let ORT fuse QDQ convs into QLinearConv: the int8 row is real."""
        from convdeploy.targets.base import RuntimeOptions
        from tests.artifacts import tiny_artifacts

        _, qdq = tiny_artifacts()
        runnable = target.compile(qdq, tmp_path, options=RuntimeOptions(threads=1))
        assert runnable.details["integer_kernels"].get("QLinearConv", 0) >= 3
