"""Commands that build on a model: ``report``, ``serve``, ``export``, ``bench``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from digitnet.cli.streams import shown
from digitnet.errors import DigitnetError

if TYPE_CHECKING:
    from digitnet.bench import BenchResult

from digitnet.cli.base import (
    DataDir,
    Json,
    app,
    console,
    err_console,
    fail,
    print_json,
    safe,
)
from digitnet.cli.models import check_split, check_takes_digits, labelled_data, load_model


@app.command()
def report(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    out: Annotated[Path, typer.Option(help="Folder for the figures and index.html.")] =
    Path("report"),
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist or a labelled file "
                                         "(CSV, npz, IDX).")] = "mnist",
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    data_dir: DataDir = None,
    sweep: Annotated[Path | None, typer.Option(help="A digitnet sweep's --out folder: show "
                                               "its sweep.png too.")] = None,
    as_json: Json = False,
) -> None:
    """Figures of what the network learned and how it was trained, in one HTML page.

    The training curves, the learning-rate schedule, the hidden units' weights at several
    points of training, the confusion matrix, what each unit looks for, the mistakes.
    Terms: docs/GLOSSARY.md.
    """
    check_split(split)
    if out.exists() and not out.is_dir():
        fail(f"{out}: is a file; give a folder for the report")
    _check_report_folder(out, [model_path, Path(dataset)])
    try:
        from digitnet import report as reporting
    except ImportError as exc:
        fail(f"report needs matplotlib ({exc.name} is missing): pip install 'digitnet[plot]'")
    extra = {}
    if sweep is not None:
        figure = sweep / "sweep.png"
        try:
            if not figure.is_file():  # not a FIFO or a folder, which would hang or fail
                raise FileNotFoundError(2, "not found")
            extra["sweep.png"] = figure.read_bytes()
        except OSError as exc:
            fail(f"--sweep {sweep}: no sweep.png to read ({exc.strerror or exc}); give the "
                 "folder a digitnet sweep wrote")
    model = load_model(model_path)
    check_takes_digits(model, model_path)
    images, labels = labelled_data(dataset, split, data_dir, use="reported on")
    _check_classes(model, model_path, labels, dataset)
    source = f"{dataset if dataset in ('mnist', 'fashion-mnist') else Path(dataset).name} {split}"
    try:
        written = reporting.write_report(model, images, labels, out, source,
                                         **({"extra": extra} if extra else {}))
    except ValueError as exc:
        fail(f"{dataset}: {exc}")
    except OSError as exc:
        fail(f"{out}: cannot write the report ({exc.strerror or exc})")
    if as_json:
        print_json({"model": str(model_path), "dataset": dataset, "split": split,
                    "files": [str(p) for p in written]})
        return
    for path in written:
        console.print(f"wrote {safe(str(path))}", highlight=False, soft_wrap=True)
    console.print(f"open [bold]{safe(str(written[-1]))}[/] in a browser", highlight=False,
                  soft_wrap=True)


def _check_report_folder(out: Path, inputs: list[Path]) -> None:
    """Refuse a report folder holding an input under a name the report writes (PNG, HTML)."""
    from digitnet import guard

    for path in inputs:
        if path.suffix.lower() not in (".png", ".html") or not path.exists():
            continue
        if guard.same_file(path.parent, out) and path.name != "":
            fail(f"--out {out}: holds the input {path}, which the report's files could "
                 "replace; give another folder")


def _check_classes(model: Any, model_path: Path, labels: Any, dataset: str) -> None:
    if len(labels) and int(labels.max()) >= model.sizes[-1]:
        fail(f"{model_path}: the model knows {model.sizes[-1]} classes (0 to "
             f"{model.sizes[-1] - 1}), but {dataset} holds label {int(labels.max())}; give "
             "a model trained on this dataset")


def _sample_digits(model: Any, data_dir: Path | None):
    """The test digits of the model's dataset for the page's random-digit button, or None."""
    from digitnet import datasets

    name = (model.meta.get("datasets") or {}).get("name") or \
        (model.meta.get("config") or {}).get("dataset") or "mnist"
    if not isinstance(name, str) or name not in datasets.DATASETS:
        return None
    if len(datasets.DATASETS[name].class_names) != model.sizes[-1]:
        err_console.print(f"[yellow]note:[/] the model has {model.sizes[-1]} classes, not the "
                          f"{len(datasets.DATASETS[name].class_names)} of {name}, so the page "
                          "hides its random-digit button", highlight=False, soft_wrap=True)
        return None
    try:
        return datasets.load(name, "test", data_dir, download=False)
    except DigitnetError as exc:
        err_console.print(f"[yellow]note:[/] no {name} test digits, so the page hides its "
                          f"random-digit button ({safe(exc)})", highlight=False,
                          soft_wrap=True)
        return None


@app.command()
def serve(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
    allow_train: Annotated[bool, typer.Option("--allow-train", help="Let the page train "
                                              "networks on an address other than loopback "
                                              "(training costs CPU).")] = False,
) -> None:
    """Serve the drawing page: draw a digit and watch the network read it, or train one."""
    import logging

    if not 0 <= port <= 65535:
        fail(f"--port {port} is out of range; it must be between 0 and 65535")
    model = load_model(model_path)  # a bad model file stops here, before the port is bound
    check_takes_digits(model, model_path)
    try:
        from digitnet.web.app import create_app
        from digitnet.web.runs import TrainSettings
        from digitnet.web.server import check_address
        from digitnet.web.server import run as run_server
    except ImportError as exc:
        fail(f"serve needs the web extra ({exc.name} is missing): pip install 'digitnet[web]'")
    check_address(host, port)
    try:
        web_app = create_app(model, _sample_digits(model, data_dir),
                             training=TrainSettings.for_host(host, allow_train, data_dir))
    except ValueError as exc:
        fail(f"{model_path}: {exc}")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:  %(message)s"))
    web_log = logging.getLogger("digitnet.web")
    web_log.addHandler(handler)
    web_log.propagate = False
    address = f"[{host}]" if ":" in host else host
    # Open event streams are closed after 3 s, so Ctrl+C stops a training run without waiting.
    run_server(web_app, host, port, timeout_graceful_shutdown=3, announce=lambda: console.print(
        f"serving {safe(str(model_path))} on [bold]http://{safe(address)}:{port}/[/] "
        "(Ctrl+C stops)", highlight=False))


@app.command()
def export(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model file.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The ONNX file to write, e.g. "
                                        "model.onnx (folders are created).")],
    input_type: Annotated[str, typer.Option(help="Element type of the 'pixels' input: uint8 "
                                            "or float32 (values 0-255 either way).")] = "uint8",
    as_json: Json = False,
) -> None:
    """Export a model to ONNX: pixels in; probabilities and label out."""
    from digitnet import export as onnx_export
    from digitnet import guard

    if input_type not in onnx_export.INPUT_TYPES:
        fail(f"--input-type {shown(input_type)!r} is unknown; choose "
             f"{' or '.join(onnx_export.INPUT_TYPES)}")
    guard.check_output(out, [model_path], what="OUT", example="model.onnx")
    model = load_model(model_path)
    written = onnx_export.to_onnx(model, out, input_type, inputs=[model_path])
    result = {"model": str(model_path), "onnx": str(written), "sizes": list(model.sizes),
              "input_type": input_type, "opset": onnx_export.OPSET,
              "ir_version": onnx_export.IR_VERSION, "bytes": written.stat().st_size}
    if as_json:
        print_json(result)
        return
    console.print(f"wrote [bold]{safe(written)}[/]: {'-'.join(map(str, model.sizes))} network, "
                  f"input 'pixels' {input_type} [N, {model.sizes[0]}], outputs 'probabilities' and "
                  f"'label' (ONNX opset {onnx_export.OPSET})", highlight=False)


@app.command()
def bench(
    data_dir: DataDir = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer repeats and iterations "
                                        "(well under a minute).")] = False,
    threads: Annotated[int, typer.Option(help="Threads for every implementation "
                                         "(BLAS, PyTorch).")] = 1,
    as_json: Json = False,
) -> None:
    """Time digitnet against scikit-learn, PyTorch, onnxruntime and the original notebook."""
    from digitnet import bench as benchmark

    if threads < 1:
        fail(f"--threads {threads} is out of range; it must be at least 1")
    settings = (benchmark.BenchSettings.quick_settings(threads) if quick
                else benchmark.BenchSettings(threads=threads))
    with err_console.status("benchmarking") as status:
        result = benchmark.run(data_dir, settings, progress=lambda m: status.update(m))
    if as_json:
        print_json(result.to_dict())
        return
    bench_tables(result)


def bench_tables(result: BenchResult) -> None:
    """The benchmark's figures as Rich tables."""
    peers = {"digitnet": "digitnet", "digitnet_numpy": "digitnet (numpy)",
             "digitnet_reference": "digitnet (reference)", "sklearn": "scikit-learn",
             "torch": "PyTorch", "onnxruntime": "onnxruntime"}
    m = result.machine
    console.print(f"[bold]{m.cpu}[/], {m.cores} cores, {m.threads} thread(s); numpy "
                  f"{m.numpy} ({m.blas or '?'}), scikit-learn {m.sklearn}, torch {m.torch}, "
                  f"numba {m.numba or '-'}; digitnet backend {m.backend}"
                  + ("  [yellow](--quick)[/]" if result.quick else ""))
    if m.vector_features is not None:
        console.print(f"vector features: {' '.join(m.vector_features) or 'none'}",
                      highlight=False)
    epochs = Table(title="seconds per training epoch (60,000 images)")
    epochs.add_column("batch", justify="right")
    names = [name for name, _ in result.epoch_seconds[0].seconds.items()]
    for name in names:
        epochs.add_column(peers[name], justify="right")
    for row in result.epoch_seconds:
        epochs.add_row(str(row.batch), *(f"{value:.4f}" for _, value in row.seconds.items()))
    console.print(epochs)
    race = result.time_to_accuracy
    table = Table(title=f"seconds from scratch to a test accuracy (cap {race.cap_seconds:g} s;"
                  " evaluation not counted)")
    table.add_column("target", justify="right")
    racers = (race.digitnet, race.sklearn, race.torch)
    for name in ("digitnet", "sklearn", "torch"):
        table.add_column(peers[name], justify="right")
    for k, first in enumerate(race.digitnet.targets):
        cells = []
        for peer in racers:
            r = peer.targets[k]
            mark = "" if r.reached else " (not reached)"
            cells.append(f"{r.seconds:.2f} ({r.epochs} ep){mark}")
        table.add_row(f"{first.target:.0%}", *cells)
    console.print(table)
    seed = result.seed_preset
    table = Table(title=f"the seed preset: {seed.iterations} full-batch iterations")
    for column in ("", "seconds", "ms per iteration", "test accuracy"):
        table.add_column(column, justify="right")
    for label, run in (("digitnet", seed.digitnet), ("naive notebook", seed.naive)):
        table.add_row(label, f"{run.seconds:.2f}", f"{1000 * run.seconds_per_iteration:.1f}",
                      f"{run.test_accuracy:.2%}")
    console.print(table)
    inference = result.inference
    table = Table(title=f"inference on the {inference.images:,} test images")
    for column in ("", "images per second", "one image (µs)"):
        table.add_column(column, justify="right")
    single = dict(inference.single_image_seconds.items())
    for name, speed in inference.images_per_second.items():
        one = single.get(name)
        table.add_row(peers[name], f"{speed:,.0f}", "" if one is None else f"{1e6 * one:.1f}")
    console.print(table)
    floor = result.floor
    table = Table(title="the machine and memory")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("float32 matmul", f"{floor.matmul_gflops:.1f} GFLOP/s")
    table.add_row("array copy", f"{floor.copy_gb_per_s:.1f} GB/s")
    table.add_row("epoch floor: FLOPs / stream float32 inputs",
                  f"{floor.epoch_flop_floor_s:.4f} s / {floor.epoch_stream_floor_s:.4f} s")
    for memory in result.memory:
        table.add_row(f"peak RSS, default training ({memory.backend} backend)",
                      f"{memory.peak_rss_mib:.0f} MiB")
    console.print(table)
    ratios = Table(title="digitnet divided by the peer (times: lower is better; images/s: "
                   "higher is better)")
    ratios.add_column("ratio")
    ratios.add_column("value", justify="right")
    for name, value in result.ratios.to_dict().items():
        ratios.add_row(name, f"{value:.3f}")
    console.print(ratios)
