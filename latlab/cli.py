"""The ``latlab`` command line: options in, one call, results out. User mistakes surface as one line and exit
code 2 (``LatlabError``). Modules that load torch or a runtime are imported inside the commands that measure, so
that ``--help``, ``info`` and ``predict`` start in a fraction of a second."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import click

from latlab.accuracy import error_pct
from latlab.architecture import Architecture, load_architecture
from latlab.atomic import write_bytes, write_json
from latlab.backend import PRECISIONS, QUANTIZATIONS, BackendInfo
from latlab.blocks import overhead_block
from latlab.calibration import Calibration
from latlab.compare import compare_profiles, render_plot
from latlab.console import (Group, backend_to_measure_with, check_same_machine, err, probe_and_say,
                            profile_to_measure_with, progress_bar)
from latlab.errors import LatlabError
from latlab.estimate import ProfileEstimate, estimate_profile
from latlab.fingerprint import read_fingerprint
from latlab.limits import memory_problem, thread_problem
from latlab.lock import locked
from latlab.outputs import check_output_files
from latlab.predict import LatencyTable, predict
from latlab.process import prepare_process
from latlab.profile import Profile, default_name, incomplete_problem, load_complete_profile, load_profile, save_profile
from latlab.protocol import MAX_MODEL_DEPTH, Protocol
from latlab.registry import backend_names, describe
from latlab.regression.cli import report
from latlab.space import load_space, space_file


@click.group(cls=Group)
@click.version_option(package_name="latlab")
def main() -> None:
    """Latency profiles of transformer encoder blocks, per device and backend."""
    prepare_process()  # before torch's first allocation


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backends(as_json: bool) -> None:
    """List registered backends: available or why not, runtime version."""
    infos = []
    for name in backend_names():
        try:
            infos.append(describe(name))
        except LatlabError as exc:  # one broken plugin must not hide the others
            infos.append(BackendInfo(name, False, str(exc), "", (), (), "", ""))
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=1))
        return
    for info in infos:
        state = f"available  {info.runtime_version}" if info.available else f"missing    {info.reason}"
        int8 = f" (int8: {', '.join(info.quantizations)})" if info.quantizations else ""
        click.echo(f"{info.name:<12} {state}  [precisions: {', '.join(info.precisions)}{int8}; "
                   f"devices: {', '.join(info.devices)}]")


@main.command(name="compare")
@click.argument("a_path", metavar="A.json", type=click.Path())
@click.argument("b_path", metavar="B.json", type=click.Path())
@click.option("--png", "png_path", type=click.Path(), default=None, help="Write a log-log plot of B against A here.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare_command(a_path: str, b_path: str, png_path: str | None, as_json: bool) -> None:
    """Two profiles block by block: the ratio B/A per block, the factor per kind, and the blocks that break it."""
    check_output_files({"--png": png_path}, {"A.json": a_path, "B.json": b_path})
    a, b = load_profile(a_path), load_profile(b_path)
    comparison = compare_profiles(a, b)
    if not comparison.rows:
        raise LatlabError(f"{a_path} and {b_path} share no measured block (spaces {a.space.name!r} and "
                          f"{b.space.name!r}); compare profiles of the same space")
    if png_path:
        write_bytes(png_path, render_plot(comparison, a.label, b.label))
    if as_json:
        click.echo(json.dumps({"a": a_path, "b": b_path, **comparison.to_json()}, indent=1))
        return
    click.echo(f"A: {a_path} ({a.label}, {a.fingerprint.cpu_model})")
    click.echo(f"B: {b_path} ({b.label}, {b.fingerprint.cpu_model})")
    for difference in comparison.differences or ["no difference in machine, runtime or settings"]:
        click.echo(f"  {difference}")
    click.echo(f"{'kind':<12} {'blocks':>6} {'B/A':>7}   pattern (ms)          {'spread':>7}")
    for kind, scaling in comparison.scaling.items():
        pattern = f"B = {scaling.factor:.3f} * A^{scaling.exponent:.3f}"
        click.echo(f"{kind:<12} {scaling.blocks:>6} {scaling.ratio:>7.3f}   {pattern:<21} {scaling.spread_pct:>6.1f}%")
    outliers = {r.key for r in comparison.outliers}
    click.echo(f"{'block':<44} {'A ms':>9} {'B ms':>9} {'B/A':>7}")
    for row in comparison.rows:
        flag = f"  off the {row.kind} pattern by {comparison.scaling[row.kind].off_pct(row):+.0f}%" \
            if row.key in outliers else ""
        click.echo(f"{row.key:<44} {row.a_ms:>9.4f} {row.b_ms:>9.4f} {row.ratio:>7.3f}{flag}")
    if comparison.only_in_a or comparison.only_in_b:
        click.echo(f"not compared: {comparison.only_in_a} blocks only in A, {comparison.only_in_b} only in B")


@main.command()
@click.option("--from", "source_path", required=True, type=click.Path(), help="The profile to transfer from.")
@click.option("--backend", "backend_name", required=True, help="Backend to time the reference blocks on, here.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="f32", show_default=True)
@click.option("--quantization", type=click.Choice(QUANTIZATIONS), default=None,
              help="How int8 is made: weights and activations calibrated ahead (static), or activations quantized "
                   "at run time (dynamic). Default: the backend's first (see 'latlab backends').")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Default: the backend's own.")
@click.option("--budget", type=click.IntRange(min=1), default=12, show_default=True,
              help="Reference blocks to time here; every other block is estimated from them.")
@click.option("--space", "space_path", type=click.Path(), default=None,
              help="Refuse unless the source profile covers this space (default: the source's own space).")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=None,
              help="Minimum timed seconds per reference block (default: the source profile's).")
@click.option("--out", type=click.Path(), required=True, help="The transferred profile to write.")
@click.option("--force", is_flag=True, help="Use more threads or memory than this machine has to give.")
def transfer(source_path: str, backend_name: str, threads: int, precision: str, quantization: str | None,
             device: str | None, budget: int, space_path: str | None, min_seconds: float | None, out: str, force: bool) -> None:
    """A profile for this machine and setting from a few measured blocks and a profile measured elsewhere."""
    from latlab.transfer import plan_references, run_transfer, source_latencies, transfer_protocol

    source = load_complete_profile(source_path)
    if space_path is not None and load_space(space_path) != source.space:
        raise LatlabError(f"{source_path} profiles space {source.space.name!r}, not the one in {space_path}; "
                          "transfer from a profile of that space")
    backend = backend_to_measure_with(backend_name)
    settings = backend.settings(threads, precision, device, quantization)
    check_output_files({"--out": out}, {"--from": source_path, "--space": space_path})
    protocol = transfer_protocol(source.protocol)  # layers priced inside models, even from a source of layers alone
    if min_seconds is not None:
        protocol = replace(protocol, min_seconds=min_seconds)
    # a budget too small is refused before anything is timed
    references = plan_references(source_latencies(source, protocol.model_depth), budget)
    refuse_unless_forced([thread_problem(threads), memory_problem(references, "the reference blocks")], force)
    started = time.monotonic()
    err.print(f"Timing {len(references)} reference blocks on {backend.name} ({settings.numerics}, "
              f"{settings.threads} thread(s)) to transfer {source_path} ({source.label})", highlight=False)
    with locked(out), progress_bar() as report:
        result = run_transfer(source, source_path, backend, settings, references, protocol, report)
        save_profile(result, out)
    fits = ", ".join(f"{kind} x{math.exp(f['log_ratio']):.3g} (±{f['spread_pct']:.1f}%)"
                     for kind, f in result.transfer["fit"].items())
    click.echo(f"wrote {out}: {len(references)} blocks measured, {len(result.entries) - len(references)} "
               f"estimated, in {time.monotonic() - started:.0f} s; fit {fits}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(as_json: bool) -> None:
    """This machine's hardware fingerprint."""
    machine = read_fingerprint()
    fingerprint = {"isa_level": machine.isa_level, **machine.to_json()}  # the machine kind, first
    if as_json:
        click.echo(json.dumps(fingerprint, indent=1))
        return
    for key, value in fingerprint.items():
        click.echo(f"{key:<15} {value}")


@main.command()
@click.option("--backend", "backend_name", required=True, help="Backend name (see 'latlab backends').")
@click.option("--space", "space_path", type=click.Path(), default=None, help="Search space JSON (default: MiniLM students).")
@click.option("--threads", type=int, default=1, show_default=True, help="Intra-op threads, applied and recorded.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="f32", show_default=True)
@click.option("--quantization", type=click.Choice(QUANTIZATIONS), default=None,
              help="How int8 is made: weights and activations calibrated ahead (static), or activations quantized "
                   "at run time (dynamic). Default: the backend's first (see 'latlab backends').")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Default: the backend's own (cuda for tensorrt, cuda for torch when a GPU is present).")
@click.option("--out", type=click.Path(), default=None, help="Profile file (default: profiles/<what it is>.json).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out; finished entries are kept.")
@click.option("--rounds", type=click.IntRange(min=1), default=Protocol.rounds, show_default=True,
              help="Interleaved rounds.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=Protocol.min_seconds, show_default=True,
              help="Minimum timed seconds per block.")
@click.option("--min-samples", type=click.IntRange(min=1), default=Protocol.min_samples, show_default=True)
@click.option("--model-depth", type=click.IntRange(min=0, max=MAX_MODEL_DEPTH), default=Protocol.model_depth,
              show_default=True,
              help="Time each layer inside uniform whole models of 1 and this many layers, to price layers as they "
                   "run inside a model; 0 times layers alone (faster, but under-predicts whole models).")
@click.option("--calibration-models", type=click.IntRange(min=0), default=Protocol.calibration_models,
              show_default=True,
              help="Random mixed whole models timed with the blocks, to fit what a change of layer shape between "
                   "neighbours costs (see 'latlab calibrate'); 0 fits nothing.")
@click.option("--force", is_flag=True, help="Measure with more threads than usable CPUs, or sizes that may not fit "
                                            "the memory available, anyway.")
def profile(backend_name: str, space_path: str | None, threads: int, precision: str, quantization: str | None,
            device: str | None, out: str | None, resume: bool, rounds: int, min_seconds: float, min_samples: int,
            model_depth: int, calibration_models: int, force: bool) -> None:
    """Measure every block of a space on one backend and write a device profile."""
    from latlab.profiling import calibration_todo, continue_profile, new_profile, open_profile, remaining

    backend = backend_to_measure_with(backend_name)
    settings = backend.settings(threads, precision, device, quantization)
    space = load_space(space_path)
    if model_depth == 1:
        raise LatlabError("--model-depth 1 cannot tell a layer's cost inside a model: use 0 (layers alone) or 2 or more")
    protocol = Protocol(rounds=rounds, min_seconds=min_seconds, min_samples=min_samples, model_depth=model_depth,
                        calibration_models=calibration_models)
    refuse_unless_forced([thread_problem(threads),
                          memory_problem(space.blocks(model_depth), f"profiling space {space.name!r}")], force)
    if out is None:
        out = f"profiles/{default_name(new_profile(backend, settings, space, protocol))}.json"
    check_output_files({"--out": out}, {"--space": space_file(space_path)})
    started = time.monotonic()
    with locked(out):  # a second profiler, or a second --resume, of the same file is refused while this one runs
        opened = open_profile(backend, settings, space, protocol, Path(out), resume)
        todo, models = remaining(opened), calibration_todo(opened)
        err.print(f"Profiling {len(space.blocks(protocol.model_depth))} blocks of space {space.name!r} and "
                  f"{protocol.calibration_models} calibration models on {backend.name} ({settings.numerics}, "
                  f"{settings.threads} thread(s)) -> {out}"
                  + (f"; resuming: {len(todo) + len(models)} left to measure" if opened.entries else ""),
                  highlight=False)
        say_estimate(estimate_profile(todo, backend.name, settings, protocol, models))
        start = probe_and_say("resume start" if opened.entries else "profile start", settings, protocol)
        opened.host_noise += [start] if start else []
        with progress_bar() as report:
            result = continue_profile(backend, opened, Path(out), report)
        end = probe_and_say("profile end", settings, protocol)
        if end:
            result.host_noise.append(end)
            save_profile(result, out)
    unstable = [k for k, e in result.entries.items() if e.unstable]
    click.echo(f"wrote {out}: {len(result.entries)} blocks in {time.monotonic() - started:.0f} s"
               + (f"; {len(unstable)} unstable: {', '.join(unstable)}" if unstable else ""))
    if result.calibration:
        say_calibration(result.calibration)


def say_calibration(calibration: Calibration) -> None:
    """The fit and what it changes on the models it was fitted on (the fit's own data: validate says the rest)."""
    before, after = (sum(map(abs, calibration.errors_pct(k))) / len(calibration.fitted)
                     for k in ((0.0, 0.0), calibration.fractions))
    click.echo(f"calibration: {describe_calibration(calibration)} (fitted on {len(calibration.fitted)} mixed models "
               f"timed with their blocks; their MAPE {before:.2f}% -> {after:.2f}%)")


def describe_calibration(calibration: Calibration) -> str:
    return (f"each change of layer shape costs {calibration.shape_change:.3f} x the model's mean growth more, each "
            f"layer past the model depth {calibration.beyond_depth:.3f} x its growth more")


@main.command()
@click.option("--profile", "profile_path", required=True, type=click.Path())
@click.option("--models", "count", type=click.IntRange(min=1), default=Protocol.calibration_models, show_default=True,
              help="Random mixed whole models to time, each with every block it is priced from.")
@click.option("--force", is_flag=True, help="Calibrate a profile measured on other hardware or runtime anyway.")
def calibrate(profile_path: str, count: int, force: bool) -> None:
    """Fit what a change of layer shape costs, on whole models timed in the same rounds as the blocks they are
    priced from, and store it in the profile (which `latlab profile` does by itself since this command exists)."""
    from latlab.validate import recalibrate

    loaded, backend = profile_to_measure_with(profile_path, force)
    with locked(profile_path):
        with progress_bar() as report:
            loaded.calibration = recalibrate(loaded, backend, count, report=report)
        save_profile(loaded, profile_path)
    click.echo(f"wrote {profile_path}")
    say_calibration(loaded.calibration)


@main.command(name="memory")
@click.option("--profile", "profile_path", required=True, type=click.Path())
@click.option("--archs", "count", type=click.IntRange(min=2), default=10, show_default=True,
              help="Random whole models measured to check the prediction.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None, help="Write the check of the models here.")
@click.option("--force", is_flag=True, help="Measure for a profile of other hardware or runtime anyway.")
def memory_command(profile_path: str, count: int, seed: int, json_path: str | None, force: bool) -> None:
    """Measure what each block holds resident once loaded and run, store it in the profile, and check the memory it
    predicts for random whole models measured the same way."""
    from latlab.memory import measure_memory

    check_output_files({"--json": json_path}, {"--profile": profile_path})
    loaded, backend = profile_to_measure_with(profile_path, force)
    with locked(profile_path):
        with progress_bar() as report:
            check = measure_memory(loaded, backend, count, seed, report)
        save_profile(loaded, profile_path)
    click.echo(f"wrote {profile_path}: resident memory of {len(loaded.resident_mib)} blocks")
    for arch, predicted, measured in zip(check.archs, check.predicted_mib, check.measured_mib):
        click.echo(arch_line(arch) + f" weights {arch.weight_mb(loaded.settings.precision):7.1f} MB  resident "
                   f"predicted {predicted:7.1f} MiB  measured {measured:7.1f} MiB  "
                   f"{error_pct(predicted, measured):+6.1f}%")
    accuracy = check.accuracy
    click.echo(f"{loaded.label}: resident memory MAPE {accuracy.mape_pct:.2f}%, mean error "
               f"{accuracy.mean_error_pct:+.2f}%, within ±10% {accuracy.within_10pct:.0%} ({count} archs)")
    if json_path:
        write_json(json_path, {"profile": profile_path, "seed": seed, **check.to_json()})


def arch_line(arch: Architecture) -> str:
    """The start of a report line about one model: width, depth, length, then heads/ffn per layer."""
    layers = ",".join(f"{a}/{f}" for a, f in zip(arch.heads, arch.ffn))
    return f"  h{arch.hidden:<4} L{arch.layers} s{arch.seq_len:<4} [{layers}]".ljust(60)


def lengths(text: str | None) -> tuple[int, ...]:
    """``--seq-len 48,96,192``: positive whole numbers, each once, in the order given."""
    if text is None:
        return ()
    try:
        values = tuple(dict.fromkeys(int(part) for part in text.split(",")))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: give positive whole numbers separated by commas, e.g. 48,96,192")
    return values


def say_estimate(estimate: ProfileEstimate) -> None:
    """Before a long run: per stage, how many items (blocks and models) and about how long, and what the figure
    rests on."""
    for stage in estimate.stages:
        err.print(f"  {stage.name:<8} {stage.blocks:>5} items  about {stage.seconds:6.0f} s  ({stage.basis})",
                  highlight=False)
    err.print(f"  {'total':<8} {'':>5}         about {estimate.seconds / 60:6.1f} min, more if unstable blocks are "
              "measured again; the progress bars below refine it as blocks finish", highlight=False)


def refuse_unless_forced(problems: list[str | None], force: bool) -> None:
    """A check that a user may overrule: an error naming ``--force``, or with it a warning."""
    for problem in filter(None, problems):
        if not force:
            raise LatlabError(f"{problem}; pass --force to go ahead anyway")
        err.print(f"[yellow]Warning:[/] {problem}", highlight=False)


@main.command(name="predict")
@click.option("--profile", "profile_path", required=True, type=click.Path())
@click.option("--arch", "arch_path", required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--force", is_flag=True, help="Price from an interrupted (incomplete) profile anyway.")
@click.option("--exact", is_flag=True, help="Refuse a batch or seq_len the profile did not measure, instead of "
                                            "interpolating between the measured ones.")
def predict_command(profile_path: str, arch_path: str, as_json: bool, force: bool, exact: bool) -> None:
    """Predict a whole model's latency from a profile, with the per-block breakdown."""
    loaded = load_profile(profile_path)
    refuse_unless_forced([incomplete_problem(loaded, profile_path)], force)
    arch = load_architecture(arch_path, defaults=loaded.space.arch_defaults())
    loaded.space.check_contains(arch, interpolate=not exact)
    check_same_machine(loaded, profile_path, force=True)
    result = predict(arch, LatencyTable.from_profile(loaded), interpolate=not exact)
    overhead_key = overhead_block(arch.batch, arch.seq_len).key
    resident = resident_or_why(arch, loaded)
    if as_json:
        click.echo(json.dumps({"profile": profile_path, "arch": arch.to_json(), "total_ms": result.total_ms,
                               "overhead_ms": result.overhead_ms, "parameters": arch.parameters,
                               "weight_mb": round(arch.weight_mb(loaded.settings.precision), 3),
                               "estimated": bool(result.estimated),
                               "between": [{"batch": b, "seq_len": s} for b, s in result.between],
                               "overhead_estimated": overhead_key in result.estimated,
                               "calibrated_ms": result.calibrated_ms,
                               "resident_mib": resident if isinstance(resident, float) else None,
                               "parts": [{"block": k, "net_ms": ms, "estimated": k in result.estimated}
                                         for k, ms in result.parts]}, indent=1))
        return
    click.echo(f"{result.total_ms:.3f} ms per call (batch {arch.batch}, seq_len {arch.seq_len}) on {loaded.label}")
    if result.estimated:
        shapes = ", ".join(f"b{b}/s{s}" for b, s in result.between)
        click.echo(f"  estimate: this shape was not measured; the parts marked (estimate) are interpolated between "
                   f"the measured shapes {shapes} (--exact refuses instead)")
    click.echo(f"  weights: {arch.parameters / 1e6:.2f} M parameters, {arch.weight_mb(loaded.settings.precision):.1f} MB "
               f"at {loaded.settings.numerics}")
    click.echo(f"  resident memory: {resident:.1f} MiB once loaded and run (predicted from the blocks' own)"
               if isinstance(resident, float) else f"  resident memory: {resident}")
    for key, ms in [(overhead_key, result.overhead_ms), *result.parts]:
        label = "overhead" if key == overhead_key else key
        click.echo(f"  {label:<40} {ms:8.3f} ms" + ("  (estimate)" if key in result.estimated else ""))
    if result.calibrated_ms:
        click.echo(f"  {'calibrated: shape changes, depth':<40} {result.calibrated_ms:8.3f} ms")


def resident_or_why(arch: Architecture, profile: Profile) -> float | str:
    """The resident MiB the profile predicts for ``arch``, or why it predicts none."""
    from latlab.memory import memory_table, predict_resident_mib

    if not profile.resident_mib:
        return "not measured for this profile ('latlab memory --profile P' adds it)"
    try:
        return predict_resident_mib(arch, memory_table(profile))
    except LatlabError:
        return "measured at the profile's own batch and seq_len only"


@main.command()
@click.option("--profile", "profile_path", required=True, type=click.Path())
@click.option("--archs", "count", type=click.IntRange(min=2), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None, help="Write the full result as JSON here.")
@click.option("--plot", "plot_path", type=click.Path(), default=None, help="Write a predicted-vs-measured PNG here.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=None,
              help="Override the profile's minimum seconds per model.")
@click.option("--force", is_flag=True, help="Validate a profile measured on other hardware or runtime anyway.")
@click.option("--same-run", is_flag=True,
              help="Also re-time every block the models use, in the same rounds, and report the lookup table's own "
                   "error, free of drift (about twice the time).")
@click.option("--seq-len", "seq_lens", callback=lambda ctx, param, value: lengths(value), default=None,
              metavar="N,N,...", help="Validate at these sequence lengths, in turn, instead of the space's: lengths "
                                      "between measured ones are priced by interpolation.")
def validate(profile_path: str, count: int, seed: int, json_path: str | None, plot_path: str | None,
             min_seconds: float | None, force: bool, same_run: bool, seq_lens: tuple[int, ...]) -> None:
    """Measure random whole models end to end and compare them with the profile's prediction."""
    from latlab.validate import blocks_moved_pct, plot, run_validation, sample_architectures, validation_json

    check_output_files({"--json": json_path, "--plot": plot_path}, {"--profile": profile_path})
    loaded, backend = profile_to_measure_with(profile_path, force)
    models = [b for arch in sample_architectures(loaded, count, seed, seq_lens) for b in arch.blocks()]
    refuse_unless_forced([thread_problem(loaded.settings.threads),
                          memory_problem(models, f"validating {count} models of space {loaded.space.name!r}")], force)
    protocol = loaded.protocol
    if min_seconds is not None:
        protocol = replace(protocol, min_seconds=min_seconds)
    noise = probe_and_say("validate", loaded.settings, protocol)
    for then in loaded.host_noise:
        err.print(f"  when profiled: {then.describe()}", highlight=False)
    with progress_bar() as report:
        validation = run_validation(loaded, backend, count, seed, protocol, report, same_run, seq_lens)
    accuracy = validation.accuracy
    for row in validation.rows:
        same = (f"  same run {error_pct(row.same_run_predicted_ms, row.measured.median_ms):+6.1f}%"
                if row.same_run_predicted_ms is not None else "")
        click.echo(arch_line(row.arch) + f" predicted {row.predicted_ms:8.3f}  measured {row.measured.median_ms:8.3f}  "
                   f"{row.error_pct:+6.1f}%" + same + ("  (estimate)" if row.estimated else "")
                   + ("  (unstable)" if row.unstable else ""))
    click.echo(f"{loaded.label}: MAPE {accuracy.mape_pct:.2f}%, mean error {accuracy.mean_error_pct:+.2f}%, "
               f"within ±5% {accuracy.within_5pct:.0%}, within ±10% {accuracy.within_10pct:.0%}, "
               f"Spearman {accuracy.spearman:.3f} ({count} archs)")
    for length, part in validation.by_seq_len().items() if seq_lens else ():
        interpolated = "interpolated" if length not in loaded.space.seq_len else "measured length"
        click.echo(f"  seq_len {length} ({interpolated}): MAPE {part.mape_pct:.2f}%, mean error "
                   f"{part.mean_error_pct:+.2f}%, within ±10% {part.within_10pct:.0%}")
    if validation.same_run is not None:
        arithmetic = validation.same_run
        click.echo(f"same run (blocks re-timed with the models, no drift): MAPE {arithmetic.mape_pct:.2f}%, "
                   f"mean error {arithmetic.mean_error_pct:+.2f}%, within ±5% {arithmetic.within_5pct:.0%}, "
                   f"within ±10% {arithmetic.within_10pct:.0%}")
        moved = blocks_moved_pct(loaded, validation.same_run_blocks_ms)
        if moved:
            click.echo("blocks now vs the profile, median by kind: "
                       + ", ".join(f"{kind} {pct:+.1f}%" for kind, pct in moved.items()))
    if loaded.calibration:
        plain, plain_same = validation.uncalibrated(), validation.uncalibrated(same_run=True)
        click.echo(f"without the calibration ({describe_calibration(loaded.calibration)}): "
                   f"MAPE {plain.mape_pct:.2f}%, mean error {plain.mean_error_pct:+.2f}%"
                   + (f"; same run MAPE {plain_same.mape_pct:.2f}%, mean error {plain_same.mean_error_pct:+.2f}%, "
                      f"within ±5% {plain_same.within_5pct:.0%}" if plain_same else ""))
    corrected = validation.drift_corrected
    if corrected is not None:
        click.echo(f"reference blocks ran {validation.drift_pct:+.1f}% vs the profile (machine drift since "
                   f"profiling); corrected for it: MAPE {corrected.mape_pct:.2f}%, within ±5% "
                   f"{corrected.within_5pct:.0%}, within ±10% {corrected.within_10pct:.0%}")
    if json_path:
        write_json(json_path, validation_json(loaded, validation, seed, profile_path, noise))
    if plot_path:
        plot(validation, loaded.label, plot_path)


main.add_command(report)  # latency regression reports from saved pytest-benchmark runs (latlab/regression/cli.py)
