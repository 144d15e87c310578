"""``convdeploy`` command line: a thin shell over the public API; every flag maps to a config
field. User errors print one message with the fix and exit 2 (traceback only with --debug)."""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from .config import DEFAULT_TARGETS, DataConfig, DeployConfig, MeasureConfig, ModelSource
from .errors import ConvdeployError

EXIT_USER_ERROR = 2


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or H,W, got {text!r}")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or H,W, got {text!r}")
    return (parts[0], parts[-1])


def _add_export_args(p: argparse.ArgumentParser) -> None:
    from convdeploy.exporters.hls_config import FpgaConfig, IOStyle
    from convdeploy.models.zoo import DEFAULT_MODEL

    p.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                   help="zoo name, package.module:factory, or a .pt2 file "
                        f"(default: the embedded demo, {DEFAULT_MODEL})")
    p.add_argument("--weights", help="checkpoint (state dict), loaded with weights_only=True")
    p.add_argument("--conv3d-as-2d", action="store_true",
                   help="video models: export every Conv3d in the (2+1)D form that LiteRT and "
                        "the integer reference run, also for cpu-ort/cpu-openvino/dsp-qnn-htp")
    q = p.add_argument_group("quantization")
    q.add_argument("--int8", action="store_true",
                   help="quantize: int8 per-channel weights, uint8 per-tensor activations "
                        "(short for --scheme w8a8)")
    q.add_argument("--scheme", choices=SCHEMES,
                   help="w8a8 | w4a8 | w4a4 (4-bit per-channel weights) | w8a16")
    q.add_argument("--ptq", help="PTQ methods to combine, e.g. cle,bias-correction,adaround "
                                 "(cle, weight-mse, adaround, bias-correction; 'none' = "
                                 "round to nearest; default: the best measured for the scheme, "
                                 "and none before QAT)")
    q.add_argument("--adaround-iters", type=int, help="AdaRound steps per layer (default 1000)")
    q.add_argument("--override", action="append", default=[], metavar="LAYER=BITS",
                   help="mixed precision: LAYER=8, LAYER=4, LAYER=float, or LAYER=8a16 "
                        "(8-bit weights, 16-bit activations); repeatable")
    q.add_argument("--per-tensor", action="store_true", help="per-tensor weights (comparison)")
    q.add_argument("--calibration", choices=["minmax", "percentile", "mse"], default="minmax")
    q.add_argument("--percentile", type=float, default=99.99)
    q.add_argument("--act-dtype", choices=["uint8", "int8"], default="uint8",
                   help="activation codes (uint8 lets onnxruntime use its int8 kernels on x86)")
    q.add_argument("--exclude", default="", help="comma-separated layers kept in float")
    d = p.add_argument_group("data")
    d.add_argument("--calib", help="calibration images: ImageFolder dir or .npz")
    d.add_argument("--eval", help="evaluation images (labels from class folders or 'y')")
    d.add_argument("--calib-size", type=int, default=512)
    d.add_argument("--skip-bad-files", action="store_true",
                   help="leave out images that cannot be decoded (the report counts them)")
    d.add_argument("--eval-limit", type=int, help="evaluate on a random subset of N samples")
    d.add_argument("--size", type=_size, help="input size N or H,W")
    d.add_argument("--resize", type=int, help="resize the shorter side before center crop")
    d.add_argument("--mean", type=_floats, help="per-channel mean, e.g. 0.485,0.456,0.406")
    d.add_argument("--std", type=_floats, help="per-channel std, e.g. 0.229,0.224,0.225")
    d.add_argument("--frames", type=int, help="video models: frames per clip (a model of your "
                                              "own fed a folder of clips; a 5-D .npz says it)")
    d.add_argument("--frame-stride", type=int, help="video models: decoded frames between "
                                                    "two taken frames")
    m = p.add_argument_group("targets and measurement")
    m.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help="comma-separated (see `convdeploy targets`); reference is always run")
    m.add_argument("--batch-size", type=int, default=32, help="latency batch size")
    m.add_argument("--threads", type=int, help="runtime threads (default: all cores)")
    m.add_argument("--repeats", type=int, default=50, help="timed runs per latency figure")
    m.add_argument("--min-time", type=float, default=MeasureConfig.min_time_s,
                   dest="min_time_s", help="seconds of timed runs at least, per latency figure "
                                           "(more runs than --repeats for a fast model)")
    f = p.add_argument_group("FPGA (--targets fpga-hls)")
    f.add_argument("--fpga-part", default=FpgaConfig.part,
                   help=f"part the estimate and scripts target (default {FpgaConfig.part}, "
                        "Ultra96; also xczu7ev-ffvc1156-2-e, xcu250-figd2104-2L-e)")
    f.add_argument("--fpga-clock", type=float, default=FpgaConfig.clock_mhz, help="MHz")
    f.add_argument("--fpga-fps", type=float,
                   help="frames/s to meet with the fewest multipliers (default: the fastest "
                        "folding that fits the part)")
    f.add_argument("--fpga-reuse", type=int, help="one ReuseFactor for every layer")
    f.add_argument("--fpga-io", choices=[s.value for s in IOStyle], default=FpgaConfig.io.value,
                   help="io_stream: layers overlap (DATAFLOW); io_parallel: one after another")
    p.add_argument("--config", help="YAML with model:, data:, scheme:, targets:, measure: (the "
                                    "audit spec's fields); flags given here override it")
    p.add_argument("--out", type=Path, default=Path("convdeploy-out"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true")


SCHEMES = ("w8a8", "w4a8", "w4a4", "w8a16")


def _scheme(args: argparse.Namespace):
    from dataclasses import replace as dc_replace

    from convdeploy.quant.scheme import INT8_ACT, PRESETS, LayerOverride

    if args.int8 and args.scheme and args.scheme != "w8a8":
        raise ValueError(f"--int8 means --scheme w8a8; it contradicts --scheme {args.scheme}")
    name = args.scheme or ("w8a8" if args.int8 else None)
    if name is None:
        if args.ptq or args.override:
            raise ValueError("--ptq/--override need a scheme: add --int8 or --scheme")
        return None
    scheme = PRESETS[name]
    changes = {"calibration": args.calibration, "percentile": args.percentile,
               "exclude": tuple(x for x in args.exclude.split(",") if x),
               "overrides": tuple(LayerOverride.parse(o) for arg in args.override
                                  for o in arg.split(",") if o)}
    if args.act_dtype == "int8":
        if scheme.activations.bits != 8:
            raise ValueError(f"--act-dtype int8 does not apply to {name}")
        changes["activations"] = INT8_ACT
    scheme = scheme.with_(**changes)
    if args.per_tensor:
        scheme = scheme.with_(weights=dc_replace(scheme.weights, per_channel=False))
    return scheme


def _ptq(args: argparse.Namespace, scheme):
    """None (the scheme's measured default) unless --ptq or --adaround-iters says otherwise."""
    from convdeploy.quant.config import PTQConfig

    from .config import default_methods

    if args.ptq is None and args.adaround_iters is None:
        return None
    settings = {} if args.adaround_iters is None else {"adaround_iters": args.adaround_iters}
    if args.ptq is not None:
        return PTQConfig.parse(args.ptq, **settings)
    return PTQConfig(methods=default_methods(scheme), **settings)


def config_from_args(args: argparse.Namespace) -> DeployConfig:
    try:
        measure = MeasureConfig(batch_size=args.batch_size, repeats=args.repeats,
                                min_time_s=args.min_time_s)
        if args.threads:
            measure = replace(measure, threads=args.threads)
        data = DataConfig(calib=args.calib, eval=args.eval, train=getattr(args, "train", None),
                          calib_size=args.calib_size,
                          eval_limit=args.eval_limit, size=args.size, mean=args.mean,
                          std=args.std, resize=args.resize,
                          skip_bad_files=args.skip_bad_files, frames=args.frames,
                          frame_stride=args.frame_stride)
        scheme = _scheme(args)
        ptq = _ptq(args, scheme)
        qat = _qat(args)
        fpga = _fpga(args)
    except ValueError as exc:
        raise ConvdeployError(f"bad option: {exc}", fix=f"see `convdeploy {args.command} --help`")
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    model = ModelSource(args.model, args.weights, args.conv3d_as_2d)
    if args.config:
        model, data, scheme, ptq, targets, measure = _with_config_file(
            args, model, data, scheme, ptq, targets, measure)
    checkpoint = None
    if qat is not None:
        checkpoint = args.checkpoint or args.out.with_name(args.out.name + ".qat-checkpoint.pt")
    return DeployConfig(model=model, data=data, scheme=scheme,
                        ptq=ptq, qat=qat, qat_checkpoint=checkpoint, targets=targets,
                        measure=measure, fpga=fpga, out=args.out, overwrite=args.overwrite,
                        progress=not args.no_progress)


def _fpga(args: argparse.Namespace):
    from convdeploy.exporters.hls_config import FpgaConfig, IOStyle

    return FpgaConfig(part=args.fpga_part, clock_mhz=args.fpga_clock, io=IOStyle(args.fpga_io),
                      reuse=args.fpga_reuse, fps=args.fpga_fps)


def _with_config_file(args, model, data, scheme, ptq, targets, measure):
    """The file's model/data/scheme/targets/measure fields, under every flag that was given
    (a flag left at its default does not override the file)."""
    from dataclasses import fields

    from convdeploy.models.zoo import DEFAULT_MODEL

    from .configfile import parse_export_file

    f = parse_export_file(args.config)
    if f.model is not None and args.model == DEFAULT_MODEL and not args.weights:
        model = replace(f.model, conv3d_as_2d=f.model.conv3d_as_2d or args.conv3d_as_2d)
    if f.data is not None:
        default = DataConfig()
        data = replace(f.data, **{fl.name: getattr(data, fl.name) for fl in fields(DataConfig)
                                  if getattr(data, fl.name) != getattr(default, fl.name)})
    if f.scheme is not None and scheme is None:
        scheme, ptq = f.scheme.scheme, f.scheme.ptq if ptq is None else ptq
    if f.targets is not None and args.targets == ",".join(DEFAULT_TARGETS):
        targets = f.targets
    if f.measure is not None:
        default = MeasureConfig()
        measure = replace(f.measure, **{fl.name: getattr(measure, fl.name)
                                        for fl in fields(MeasureConfig) if fl.name != "threads"
                                        and getattr(measure, fl.name) != getattr(default,
                                                                                 fl.name)})
        if args.threads:
            measure = replace(measure, threads=args.threads)
    return model, data, scheme, ptq, targets, measure


def _qat(args: argparse.Namespace):
    from convdeploy.quant.config import QATConfig

    if args.command != "qat":
        return None
    return QATConfig(epochs=args.epochs, lr=args.lr, batch_size=args.train_batch,
                     learn_ranges=not args.fixed_ranges)


def cmd_export(args: argparse.Namespace) -> int:
    from .pipeline import run

    report = run(config_from_args(args))
    print(report.table())
    for role, info in report.data.items():
        if isinstance(info, dict) and info.get("skipped_files"):
            print(f"\nskipped {info['skipped_files']} unreadable {role} file(s), e.g. "
                  f"{info['skipped_examples'][0]} (--skip-bad-files)")
    for row in report.results:
        est = (row.get("runtime") or {}).get("estimate")
        if isinstance(est, dict):
            t, u = est["totals"], est["utilisation"]
            print(f"\n{row['target']} {row['scheme']}: estimate ({est['label']}) for "
                  f"{est['part']} at {est['clock_mhz']:g} MHz: {est['fps']:.1f} frames/s, "
                  f"DSP {t['dsp']} ({u['dsp']:.0%}), LUT {t['lut']} ({u['lut']:.0%}), BRAM18 "
                  f"{t['bram18']} ({u['bram18']:.0%}), {'fits' if est['fits'] else 'DOES NOT FIT'}"
                  f"; project in {args.out}/{row['runtime']['project']}")
    print(f"\nwrote {args.out}/report.json, {args.out}/report.md and the model files")
    return 0


def _add_qat_args(p: argparse.ArgumentParser) -> None:
    from convdeploy.quant.config import QATConfig  # torch-free

    t = p.add_argument_group("fine-tuning")
    t.add_argument("--train", help="training images (ImageFolder dir or .npz with labels)")
    t.add_argument("--epochs", type=int, default=QATConfig.epochs)
    t.add_argument("--lr", type=float, default=QATConfig.lr,
                   help="peak learning rate (cosine to 0)")
    t.add_argument("--train-batch", type=int, default=QATConfig.batch_size)
    t.add_argument("--fixed-ranges", action="store_true",
                   help="keep the calibrated scales (default: learn them)")
    t.add_argument("--checkpoint", type=Path,
                   help="checkpoint file, resumed when it matches the run "
                        "(default: OUT.qat-checkpoint.pt beside --out)")


def cmd_inspect(args: argparse.Namespace) -> int:
    from .sensitivity import inspect_layers

    from convdeploy.quant.scheme import W8A8

    cfg = config_from_args(args)
    if cfg.scheme is None:
        cfg = replace(cfg, scheme=W8A8)
    result = inspect_layers(cfg, top=args.top)
    print(result.table())
    if args.json:
        from .files import write_text_atomic

        write_text_atomic(args.json, result.to_json())
        print(f"\nwrote {args.json}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from .efficiency.profile import ProfileConfig, profile_model
    from .efficiency.report import summary_line, table

    cfg = config_from_args(args)
    try:
        pcfg = ProfileConfig(runs=args.repeats, peaks=tuple(ProfileConfig.parse_peak(p)
                                                            for p in args.peak),
                             refresh_peaks=args.refresh_peaks)
    except ValueError as exc:
        raise ConvdeployError(f"bad option: {exc}", fix="see `convdeploy profile --help`")
    run = profile_model(cfg, pcfg)
    for p in run.profiles:
        print(summary_line(p))
        print("\n".join(table(p, top=args.top)))
        for w in p.warnings:
            print(f"  note: {w}")
        print()
    print(f"wrote {args.out}/profile.json, profile.md and the waterline / efficiency-gap plots")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from convdeploy.quant.config import PTQConfig
    from convdeploy.quant.scheme import W8A8

    from .files import staged_directory
    from .pipeline import run as export_run
    from .tuning.outputs import override_lines, write_outputs
    from .tuning.run import TuneConfig, tune

    cfg = config_from_args(args)
    if cfg.scheme is None:
        cfg = replace(cfg, scheme=W8A8)
    if args.target not in _target_names():
        raise ConvdeployError(f"unknown target {args.target!r}",
                              fix=f"choose from {', '.join(_target_names())}")
    tcfg = TuneConfig(args.target, args.max_drop, args.min_speedup, args.tune_size,
                      args.rounds, confidence=args.confidence)
    budget = {"max_drop": tcfg.max_drop, "min_speedup": tcfg.min_speedup}
    with staged_directory(args.out, overwrite=args.overwrite) as stage:
        result = tune(cfg, tcfg, stage / "work")
        chosen = result.chosen()
        if chosen is not None:
            from convdeploy.quant.scheme import LayerOverride

            scheme = cfg.scheme.with_(overrides=cfg.scheme.overrides + tuple(
                LayerOverride.parse(f"{layer}={p}") for layer, p in chosen))
            export_run(replace(cfg, scheme=scheme, ptq=PTQConfig(methods=()),
                               targets=(tcfg.target,), out=stage / "export", overwrite=True,
                               progress=False))
        write_outputs(result, cfg, budget, stage)
        import shutil

        shutil.rmtree(stage / "work", ignore_errors=True)
    from .tuning.outputs import markdown

    print(markdown(result, budget))
    if chosen is None:
        print("no configuration met the budget on the tuning split")
    else:
        print("chosen: " + (" ".join(override_lines(result)) or "every layer 8-bit"))
    print(f"wrote {args.out}/tune.json, tune.md, tune.yaml, overrides.txt, search.png"
          + (f" and {args.out}/export/ (report.json, report.md)" if chosen is not None else ""))
    return 0


def _target_names() -> list[str]:
    from convdeploy.targets import registry

    return registry.names()


def cmd_video_demo(args: argparse.Namespace) -> int:
    from .video_demo import VideoDemoConfig, run_demo

    try:
        cfg = VideoDemoConfig(clip=args.clip, model=args.model, weights=args.weights,
                              target=args.target, hop=args.hop, threads=args.threads,
                              out=args.out, overwrite=args.overwrite,
                              max_windows=args.max_windows)
    except ValueError as exc:
        raise ConvdeployError(f"bad option: {exc}", fix="see `convdeploy video-demo --help`")
    s = run_demo(cfg)
    print(f"{s['model']} on {s['target']}: {s['windows']} windows of {s['source']}; float/int8 "
          f"agreement {s['agreement']:.1%}; int8 {s['int8_ms_median']:.2f} ms median, "
          f"{s['int8_ms_p90']:.2f} ms p90 per window ({s['int8_clips_per_s']:.1f} clips/s "
          f"sustained); float {s['float_ms_median']:.2f} ms ({s['float_runs_on']})")
    print(f"wrote {args.out}/demo.mp4, demo.gif, demo.html, demo.json")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from convdeploy.targets import registry

    if args.model:
        return _cmd_compatibility(args)

    rows = [("target", "status", "consumes", "description")]
    for name in registry.names():
        try:
            target = registry.get(name)
        except Exception as exc:  # noqa: BLE001 - a broken third-party target must not hide others
            rows.append((name, f"broken: {exc}", "-", "-"))
            continue
        reason = target.unavailable()
        rows.append((name, "ready" if reason is None else f"unavailable: {reason}",
                     ",".join(f.value for f in target.formats), target.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    return 0


def _cmd_compatibility(args: argparse.Namespace) -> int:
    from convdeploy.quant.scheme import PRESETS

    from .compatibility import compatibility, verdict_table
    from .config import DataConfig, ModelSource

    verdicts = compatibility(ModelSource(args.model, args.weights), PRESETS[args.scheme],
                             data=DataConfig(size=args.size))
    print(f"{args.model} quantized as {args.scheme} (checked before any calibration):")
    print(verdict_table(verdicts))
    return 0


def _add_audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="SPEC.yaml, or a model (zoo name, package.module:factory, .pt2) "
                                "for the short form")
    p.add_argument("--out", type=Path, required=True, help="audit folder (resumed if it exists)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local process pool (default) or Ray tasks")
    p.add_argument("--address", help="Ray cluster address (default: start a local one on "
                                     "127.0.0.1)")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun units recorded as failed (default: reuse every finished unit)")
    p.add_argument("--no-progress", action="store_true")
    s = p.add_argument_group("short form (instead of a SPEC.yaml)")
    s.add_argument("--weights", help="checkpoint of the model")
    s.add_argument("--schemes", default="float,w8a8",
                   help="comma-separated: float, w8a8, w4a8+adaround, w8a8-per-tensor, ...")
    s.add_argument("--targets", default=",".join(DEFAULT_TARGETS))
    s.add_argument("--calib", help="calibration images: ImageFolder dir or .npz")
    s.add_argument("--eval", help="evaluation images (labels from class folders or 'y')")
    s.add_argument("--eval-limit", type=int, help="evaluate on a random subset of N samples")
    s.add_argument("--skip-bad-files", action="store_true")
    s.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2")
    s.add_argument("--batch-sizes", default="1", help="comma-separated, e.g. 1,32")
    s.add_argument("--repeats", type=int, default=50, help="timed runs per latency cell")
    s.add_argument("--min-time", type=float, default=1.0, dest="min_time_s",
                   help="seconds of timed runs at least, per latency cell")
    s.add_argument("--workers", type=int, default=2, help="parallel accuracy processes")
    s.add_argument("--skip-unsupported", action="store_true",
                   help="record (scheme, target) pairs a target cannot run instead of refusing")
    s.add_argument("--profile", action="store_true",
                   help="also the per-layer efficiency of each latency cell on cpu-ort, "
                        "cpu-openvino and mobile-litert (as `convdeploy profile`)")


def _audit_spec(args: argparse.Namespace):
    from convdeploy.audit import load_spec, parse_spec

    if args.spec.endswith((".yaml", ".yml")):
        return load_spec(args.spec)
    tree = {"models": [{"name": args.spec, **({"weights": args.weights} if args.weights
                                              else {})}],
            "schemes": [s for s in args.schemes.split(",") if s],
            "targets": args.targets,
            "data": {k: v for k, v in (("calib", args.calib), ("eval", args.eval),
                                       ("eval_limit", args.eval_limit),
                                       ("skip_bad_files", args.skip_bad_files or None)) if v},
            "threads": _int_list(args.threads, "--threads"),
            "batch_sizes": _int_list(args.batch_sizes, "--batch-sizes"),
            "repeats": args.repeats, "min_time_s": args.min_time_s, "workers": args.workers,
            "skip_unsupported": args.skip_unsupported, "profile": args.profile}
    return parse_spec(tree, Path.cwd())


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConvdeployError(f"{flag} takes comma-separated integers, got {text!r}",
                              fix=f"write e.g. {flag} 1,2")


def cmd_audit(args: argparse.Namespace) -> int:
    from convdeploy.audit import run_audit
    from convdeploy.audit.outputs import disturbed_note, terminal_table

    spec = _audit_spec(args)
    audit = run_audit(spec, args.out, executor=args.executor, address=args.address,
                      progress=not args.no_progress, retry_failed=args.retry_failed)
    print(terminal_table(audit.cells))
    note = disturbed_note(audit.cells)
    if note:
        print(note)
    print(f"\nreused {sum(audit.reused.values())} finished units, computed "
          f"{sum(audit.computed.values())} ({audit.failed} failed) in {audit.wall_seconds:.0f} s")
    print(f"wrote {args.out}/audit.html, audit.json, cells.csv, audit.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convdeploy",
        description="Deploy a trained ConvNet to quantized targets and prove how far each "
                    "deployed model is from float.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="export (and quantize), run on targets, report")
    _add_export_args(export)
    export.set_defaults(func=cmd_export)
    qat = sub.add_parser("qat", help="PTQ, then quantization-aware fine-tuning; same report")
    _add_export_args(qat)
    _add_qat_args(qat)
    qat.set_defaults(func=cmd_export)
    inspect = sub.add_parser("inspect", help="per-layer quantization sensitivity (one layer "
                                             "quantized at a time): SQNR and accuracy delta")
    _add_export_args(inspect)
    inspect.add_argument("--top", type=int, default=5, help="how many worst layers to name")
    inspect.add_argument("--json", type=Path, help="also write the table as JSON")
    inspect.set_defaults(func=cmd_inspect)
    profile = sub.add_parser("profile", help="where the time goes: per-layer times on "
                                             "cpu-ort, cpu-openvino, mobile-litert against a "
                                             "roofline measured on this machine")
    _add_export_args(profile)
    profile.set_defaults(targets="cpu-ort,cpu-openvino", batch_size=1)
    profile.add_argument("--top", type=int, default=12, help="slowest layers printed per cell")
    profile.add_argument("--peak", action="append", default=[], metavar="DTYPE=GMACS@GBS",
                         help="datasheet peak instead of the measured one, e.g. int8=400@50 "
                              "(repeatable; float, int8)")
    profile.add_argument("--refresh-peaks", action="store_true",
                         help="measure this machine's peaks again (cached per CPU and runtime)")
    profile.set_defaults(func=cmd_profile)
    tune_p = sub.add_parser("tune", help="per-layer precision chosen by measured latency on a "
                                         "target within an accuracy budget, beside NNCF- and "
                                         "INC-style searches")
    _add_export_args(tune_p)
    tune_p.set_defaults(batch_size=1, min_time_s=0.5, scheme="w8a8")
    tune_p.add_argument("--target", required=True, help="the target to tune for, e.g. cpu-ort")
    tune_p.add_argument("--max-drop", type=float, required=True, metavar="POINTS",
                        help="accuracy you may lose against float, in points (0.5 = half a "
                             "percentage point)")
    tune_p.add_argument("--min-speedup", type=float, help="also at least this many times "
                                                          "faster than float on the target")
    tune_p.add_argument("--tune-size", type=int,
                        help="evaluation images the search sees (the rest score its result; "
                             "default: half)")
    tune_p.add_argument("--confidence", type=float, default=0.95,
                        help="a candidate meets the budget on the tuning split when this "
                             "upper confidence bound of its paired drop against float does "
                             "(0.5: on the estimate)")
    tune_p.add_argument("--rounds", type=int, default=5,
                        help="alternating end-to-end timings of the final configurations")
    tune_p.set_defaults(func=cmd_tune)
    audit = sub.add_parser("audit", help="accuracy-vs-latency sweep over models, schemes, "
                                         "targets, threads and batch sizes (resumable)")
    _add_audit_args(audit)
    audit.set_defaults(func=cmd_audit)
    demo = sub.add_parser("video-demo", help="sliding-window int8 video inference on a "
                                             "mobile target beside the float model: annotated "
                                             "mp4, GIF, HTML")
    demo.add_argument("clip", nargs="?", type=Path,
                      help="a video file (default: a clip generated from scikit-learn's photos)")
    demo.add_argument("--model", default="p3d-motion", help="a video model of the zoo")
    demo.add_argument("--weights", help="its checkpoint (default: the shipped demo weights)")
    demo.add_argument("--target", default="mobile-litert")
    demo.add_argument("--hop", type=int, default=4, help="frames between windows")
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--max-windows", type=int)
    demo.add_argument("--out", type=Path, default=Path("video-demo"))
    demo.add_argument("--overwrite", action="store_true")
    demo.set_defaults(func=cmd_video_demo)
    targets = sub.add_parser("targets", help="list targets and whether each can run here; "
                                             "with --model, what each cannot run of it")
    targets.add_argument("--model", help="zoo name, package.module:factory, or a .pt2 file")
    targets.add_argument("--weights", help="checkpoint (state dict), weights_only=True")
    targets.add_argument("--scheme", choices=SCHEMES, default="w8a8")
    targets.add_argument("--size", type=_size, help="input size N or H,W (non-zoo models)")
    targets.set_defaults(func=cmd_targets)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere on the line
    args = build_parser().parse_args(argv)
    if not debug:  # torch's deprecation chatter is not the user's concern
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    try:
        return args.func(args)
    except ConvdeployError as exc:
        if debug:
            raise
        print(f"convdeploy: error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("convdeploy: interrupted; nothing was written to --out", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
