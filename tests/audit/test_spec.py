"""Audit specs and export config files: parsed once into frozen dataclasses; every invalid
spec is refused before any work with one message naming the key or value."""
import textwrap

import pytest

from convdeploy.audit.spec import load_spec, parse_spec, validate
from convdeploy.configfile import SpecError, parse_export_file
from convdeploy.quant.config import PTQMethod


def _write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_full_spec_parses_into_frozen_dataclasses(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"x")
    (tmp_path / "calib").mkdir()
    spec = load_spec(_write(tmp_path, """
        models:
          - digits-convnet
          - {name: resnet20-cifar10, weights: w.pt}
        data: {calib: calib, calib_size: 64, eval_limit: 100}
        schemes: [float, w8a8, w4a8+cle+adaround, {scheme: w8a16, calibration: mse}]
        targets: [cpu-ort, mobile-litert]
        threads: [1, 2]
        batch_sizes: [1, 32]
        repeats: 20
        skip_unsupported: true
    """))
    assert [m.ref for m in spec.models] == ["digits-convnet", "resnet20-cifar10"]
    assert spec.models[1].weights == str(tmp_path / "w.pt")  # relative to the spec file
    assert spec.data.calib == str(tmp_path / "calib") and spec.data.eval_limit == 100
    assert [s.label for s in spec.schemes] == ["float", "w8a8", "w4a8+cle+adaround",
                                               "w8a16-mse"]
    assert spec.schemes[2].methods == (PTQMethod.CLE, PTQMethod.ADAROUND)
    assert spec.threads == (1, 2) and spec.batch_sizes == (1, 32) and spec.repeats == 20
    with pytest.raises(Exception):
        spec.repeats = 3  # frozen


def test_default_ptq_methods_are_the_measured_ones():
    spec = parse_spec({"models": ["digits-convnet"], "schemes": ["w4a8", "w8a8"],
                       "targets": ["cpu-ort"]})
    assert spec.schemes[0].label == "w4a8+adaround" and spec.schemes[1].label == "w8a8"


@pytest.mark.parametrize("tree,needle", [
    ({"models": ["digits-convnet"], "schemes": ["w8a8"], "targets": ["cpu-ort"], "repeat": 3},
     "unknown key 'repeat'"),
    ({"models": ["digits-convnet"], "schemes": ["w8a8"], "targets": ["cpu-ort", "gpu-magic"]},
     "targets[1]: unknown target 'gpu-magic'"),
    ({"models": ["digits-convnet"], "schemes": ["w8a9"], "targets": ["cpu-ort"]},
     "schemes[0]: unknown scheme 'w8a9'"),
    ({"models": ["digits-convnet"], "schemes": ["w4a8+adaroud"], "targets": ["cpu-ort"]},
     "schemes[0].ptq: unknown PTQ method(s) adaroud"),
    ({"models": [{"name": "resnet20-cifar10", "weights": "nope.th"}], "schemes": ["w8a8"],
      "targets": ["cpu-ort"]}, "models[0].weights: file"),
    ({"models": ["digits-convnet"], "schemes": ["w8a8"], "targets": ["cpu-ort"],
      "data": {"calb": "x"}}, "unknown key 'data.calb'"),
    ({"models": ["digits-convnet"], "schemes": ["w8a8"], "targets": ["cpu-ort"],
      "threads": [1, 0]}, "'threads' must be a list of positive integers"),
    ({"models": ["digits-convnet"], "schemes": ["w8a8", "w8a8"], "targets": ["cpu-ort"]},
     "w8a8 listed twice"),
    ({"schemes": ["w8a8"], "targets": ["cpu-ort"]}, "key 'models' is missing"),
])
def test_invalid_specs_name_the_key(tree, needle, tmp_path):
    with pytest.raises(SpecError) as err:
        parse_spec(tree, tmp_path)
    assert needle in str(err.value), str(err.value)
    assert err.value.fix


def test_missing_data_and_unrunnable_schemes_are_refused_before_work(tmp_path):
    spec = parse_spec({"models": ["digits-convnet"], "schemes": ["w8a8"],
                       "targets": ["cpu-ort"], "data": {"eval": "no/such/dir"}}, tmp_path)
    with pytest.raises(SpecError, match="data.eval: path .*no/such/dir does not exist"):
        validate(spec)
    pytest.importorskip("ai_edge_litert", reason="the mobile extra is not installed")
    tree = {"models": ["digits-convnet"], "schemes": ["float", "w4a8"],
            "targets": ["cpu-ort", "mobile-litert"]}
    with pytest.raises(SpecError, match="scheme w4a8\\+adaround cannot run on target "
                                        "mobile-litert: mobile-litert has no 4-bit weights"):
        validate(parse_spec(tree))
    skipped = validate(parse_spec({**tree, "skip_unsupported": True}))
    assert [(e.label, t) for e, t, _ in skipped] == [("w4a8+adaround", "mobile-litert")]


def test_export_config_file_takes_the_same_fields_and_flags_win(tmp_path):
    from convdeploy.cli import build_parser, config_from_args

    path = _write(tmp_path, """
        model: digits-convnet
        data: {eval_limit: 50, calib_size: 32}
        scheme: w4a8+cle
        targets: [cpu-ort]
        measure: {repeats: 7}
    """, "export.yaml")
    f = parse_export_file(path)
    assert f.scheme.label == "w4a8+cle" and f.targets == ("cpu-ort",)
    args = build_parser().parse_args(["export", "--config", str(path), "--calib-size", "16"])
    cfg = config_from_args(args)
    assert cfg.scheme.name == "w4a8" and [m.value for m in cfg.ptq.methods] == ["cle"]
    assert cfg.data.eval_limit == 50 and cfg.data.calib_size == 16  # the flag wins
    assert cfg.targets == ("cpu-ort",) and cfg.measure.repeats == 7
    bad = _write(tmp_path, "model: digits-convnet\nschem: w8a8\n", "bad.yaml")
    with pytest.raises(SpecError, match="unknown key 'schem'"):
        parse_export_file(bad)


def test_cells_are_keyed_by_the_code_that_computed_them(tmp_path, monkeypatch):
    """A fix to a kernel or target changes the code fingerprint, so no stale cell is reused."""
    import sys

    from convdeploy.audit import store

    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "kernel.py").write_text("ROUND = 'half away from zero'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(store, "CODE_PACKAGES", ("fakepkg",))
    sys.modules.pop("fakepkg", None)
    before = store.code_fingerprint()
    assert store.code_fingerprint() == before
    (pkg / "kernel.py").write_text("ROUND = 'half to even'\n")
    assert store.code_fingerprint() != before
    assert "code" in store.environment_fingerprint()


def test_code_fingerprint_is_the_same_for_a_checkout_and_an_installed_wheel(tmp_path,
                                                                            monkeypatch):
    """Editable, a subpackage lives in its own folder (setup.cfg's package_dir); installed, it
    sits inside the parent's folder: the same source must give the same digest."""
    import sys

    from convdeploy.audit import store

    init = ("from pathlib import Path\n"
            "__path__.append(str(Path(__file__).parent.parent / 'split'))\n")
    digests = []
    for layout, sub in (("checkout", "split/sub"), ("wheel", "fakepkg/sub")):
        root = tmp_path / layout
        (root / "fakepkg").mkdir(parents=True)
        (root / sub).mkdir(parents=True)
        (root / "fakepkg" / "__init__.py").write_text(init)
        (root / "fakepkg" / "kernel.py").write_text("ROUND = 'half away from zero'\n")
        (root / sub / "__init__.py").write_text("")
        (root / sub / "conv.py").write_text("ACC = 'int32'\n")
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.setattr(store, "CODE_PACKAGES", ("fakepkg", "fakepkg.sub"))
        for name in ("fakepkg", "fakepkg.sub"):
            sys.modules.pop(name, None)
        digests.append(store.code_fingerprint())
        monkeypatch.undo()
    for name in ("fakepkg", "fakepkg.sub"):
        sys.modules.pop(name, None)
    assert digests[0] == digests[1]
