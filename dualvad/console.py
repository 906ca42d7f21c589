"""What a person sees on the console while a command runs: dualvad's progress bars and summaries.

The ``dualvad`` console script opens one :func:`session` per command. A command that runs stages on a run
directory opens it with :func:`run_session`: a *log file* (``RUN/logs/<UTC time>-<command>.log``,
:mod:`dualvad.paths`) and a *quiet* console. The file receives every log record of the process at INFO and
above (dualvad's, the driver's Ray, Ray Data and Ray Train records, Python warnings); the console only
warnings, errors and the few lines marked :data:`SHOWN` (where the log file and Ray's dashboard are), plus
one progress bar per stage and the stages' summaries (printed by the CLI). ``--verbose`` puts everything
back on the console as well. Without a session (the library called from Python, a ``ray job``, the tests)
nothing here changes logging, and :func:`bar` shows nothing.

Progress bars go to standard error: a live ``tqdm`` bar with rate and ETA on a terminal; when standard
error is not a terminal (CI logs, ``| tee``), a line at each quarter of the work instead, so a stage adds
at most four lines. No Ray here: :mod:`dualvad.pipeline.runtime` quiets Ray through :func:`quiet` and
:func:`adopt_logger`, and names the logs folder of a Ray it starts (:func:`keep_ray_logs`), which
:func:`run_session` copies into the run as the command ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow.fs as pafs
from tqdm import tqdm

from dualvad import paths
from dualvad.rundir import RunDir

log = logging.getLogger(__name__)

#: ``extra=`` of a log record that the quiet console shows although it is INFO: where things are.
SHOWN = {"console": True}

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_BAR = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_noinv_fmt}]"
_QUARTERS = 4  # lines per bar when standard error is not a terminal


@dataclass
class _Session:
    """The console set-up of the running command (``None`` outside the CLI)."""

    quiet: bool
    file_handler: logging.Handler | None
    console_handler: logging.Handler
    restore: list[Callable[[], None]] = field(default_factory=list)  # undo steps, run in reverse
    ray_logs: str | None = None  # the logs folder of a local Ray started during the session


_session: _Session | None = None


def quiet() -> bool:
    """True while a CLI command runs with a quiet console: Ray's worker output and progress bars stay off
    the console (:func:`dualvad.pipeline.runtime.ensure_ray` reads it when it starts Ray)."""
    return _session is not None and _session.quiet


def active() -> bool:
    """True while a CLI command runs (its progress bars are shown)."""
    return _session is not None


@contextlib.contextmanager
def session(log_file: str | None = None, verbose: bool = False) -> Iterator[None]:
    """Set up logging for one command; every change is undone on exit (``main`` runs many in one test
    process).

    Args:
        log_file: local file that receives every record at INFO and above (its folder is created); ``None``:
            no file, and the console shows every INFO record (commands that run no stage).
        verbose: with ``log_file``, show every record on the console too, and leave Ray's worker output and
            progress bars on.
    """
    global _session
    quiet_console = log_file is not None and not verbose
    console_handler = _ConsoleHandler()
    console_handler.setFormatter(_QuietFormatter() if quiet_console else logging.Formatter(_FORMAT))
    if quiet_console:
        console_handler.addFilter(_shown_on_quiet_console)
    file_handler = _file_handler(log_file) if log_file else None
    current = _Session(quiet_console, file_handler, console_handler)
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.INFO)
    for handler in (console_handler, file_handler):
        if handler is not None:
            root.addHandler(handler)
    if quiet_console:
        _warnings_to_file(current)
        _no_library_bars(current)
    _session = current
    try:
        yield
    finally:
        _session = None
        for undo in reversed(current.restore):
            undo()
        for handler in (console_handler, file_handler):
            if handler is not None:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(previous_level)


@contextlib.contextmanager
def run_session(run: RunDir, command: str, verbose: bool = False) -> Iterator[None]:
    """:func:`session` for a command that runs stages on ``run``: its log file is
    ``RUN/logs/<UTC time>-<command>.log`` (the first line on the console says where), and as the command
    ends, also when it fails, the workers' logs of a local Ray it started go beside it
    (``<same name>.ray/``, :func:`_copy_ray_logs`). On object storage the files are written in a local
    temporary folder and copied to ``RUN/logs/`` as the command ends."""
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{command}"
    folder = run.path(paths.LOGS) if run.local else tempfile.mkdtemp(prefix="dualvad-logs-")
    log_file = os.path.join(folder, f"{name}.log")
    with session(log_file, verbose):
        where = "" if run.local else f", copied to {run.sub(paths.LOGS).uri}/ as the command ends"
        log.info("log: %s%s", log_file, where, extra=SHOWN)
        current = _session
        try:
            yield
        finally:
            if current is not None and current.ray_logs is not None:
                _copy_ray_logs(current.ray_logs, os.path.join(folder, name + paths.RAY_LOGS_SUFFIX))
            if not run.local:
                pafs.copy_files(folder, run.path(paths.LOGS), source_filesystem=pafs.LocalFileSystem(),
                                destination_filesystem=run.fs)
                shutil.rmtree(folder)  # only once copied: a failed copy leaves the log where line 1 said


def keep_ray_logs(folder: str) -> None:
    """A local Ray started during the session keeps its logs in ``folder``: :func:`run_session` copies the
    workers' part into the run as the command ends. No-op outside a session."""
    if _session is not None:
        _session.ray_logs = folder


def adopt_logger(name: str) -> None:
    """Route a library logger that does not propagate to the root (Ray's ``ray`` and ``ray.data`` have
    their own console handlers) like the root: its records also go to the log file, and on a quiet
    console its own console handlers show warnings and errors only. Undone when the session ends; no-op
    outside a session."""
    if _session is None:
        return
    logger, current = logging.getLogger(name), _session
    if current.file_handler is not None and not any(isinstance(h, _ToFile) for h in logger.handlers):
        # Not the file handler itself: ray.init sets the formatter of every handler of "ray".
        forward = _ToFile(current.file_handler)
        logger.addHandler(forward)
        current.restore.append(lambda: logger.removeHandler(forward))
    if not current.quiet:
        return
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            level = handler.level
            handler.setLevel(max(level, logging.WARNING))
            current.restore.append(lambda handler=handler, level=level: handler.setLevel(level))


def at_end(undo: Callable[[], None]) -> None:
    """Call ``undo`` when the session ends (a setting changed for its sake); no-op outside a session."""
    if _session is not None:
        _session.restore.append(undo)


@contextlib.contextmanager
def bar(label: str, total: int, unit: str, since: float | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar of ``total`` ``unit`` (plural, e.g. ``"videos"``) named ``label``; yields
    ``advance(n)``, to call as work finishes. Outside a session, or with nothing to do, it shows nothing.
    ``since``: when the work began (``time.time()``) if earlier than now; rate and ETA count from it."""
    if _session is None or total <= 0:
        yield lambda n=1: None
        return
    if sys.stderr.isatty():
        # The size as shutil reads it: a terminal that reports 0 x 0 (some ptys) gets 80 x 24, not no bar.
        size = shutil.get_terminal_size()
        with tqdm(total=total, desc=label, unit=f" {unit}", file=sys.stderr, ncols=size.columns,
                  nrows=size.lines,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} "
                             "[{elapsed}<{remaining}, {rate_noinv_fmt}]") as shown:
            if since is not None:
                shown.start_t = since  # the work began before the bar could open (its total unknown)
            yield shown.update
        return
    lines = _LineBar(label, total, unit, since)
    yield lines.advance


def counter(label: str, unit: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback (as :func:`dualvad.corpus.generate_corpus` and
    :func:`dualvad.batch_detect.run_detect` call it) drawn as a :func:`bar`; the bar ends when
    ``done == total``."""
    return _Counter(label, unit)


class _Counter:
    """:func:`counter`'s callback: opens the bar on the first call, closes it on the last."""

    def __init__(self, label: str, unit: str) -> None:
        self.label, self.unit, self.done, self.created = label, unit, 0, time.time()
        self.open: contextlib.ExitStack | None = None
        self.advance: Callable[[int], None] = lambda n=1: None

    def __call__(self, done: int, total: int) -> None:
        if self.open is None:
            self.open, self.done = contextlib.ExitStack(), 0
            self.advance = self.open.enter_context(bar(self.label, total, self.unit, since=self.created))
        self.advance(done - self.done)
        self.done = done
        if done >= total:
            self.open.close()
            self.open, self.created = None, time.time()


class _LineBar:
    """A bar as lines: one when each quarter of ``total`` is reached (the last at 100%), each with the
    count, rate and ETA."""

    def __init__(self, label: str, total: int, unit: str, since: float | None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done, self.shown_quarter, self.started = 0, 0, time.time() if since is None else since

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        quarter = self.done * _QUARTERS // self.total
        if quarter > self.shown_quarter:
            self.shown_quarter = quarter
            print(self.line(time.time() - self.started), file=sys.stderr, flush=True)

    def line(self, elapsed: float) -> str:
        """E.g. ``ingest: 12/48 videos (25%) [00:07<00:21, 1.64 videos/s]``."""
        return tqdm.format_meter(self.done, self.total, elapsed, prefix=self.label, unit=f" {self.unit}",
                                 bar_format=_BAR.replace("{unit}", self.unit))


class _ConsoleHandler(logging.StreamHandler):
    """Standard error, through ``tqdm.write`` so that a record does not break a live bar."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's contract: report the failure, never raise it
            self.handleError(record)


class _ToFile(logging.Handler):
    """Hands a record to the session's file handler, which formats it."""

    def __init__(self, file_handler: logging.Handler) -> None:
        super().__init__(file_handler.level)
        self.file_handler = file_handler

    def emit(self, record: logging.LogRecord) -> None:
        self.file_handler.handle(record)


class _QuietFormatter(logging.Formatter):
    """A :data:`SHOWN` line as its message alone; a warning or error with its level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno < logging.WARNING:
            return record.getMessage()
        return f"{record.levelname} {record.name}: {super().format(record)}"


def _shown_on_quiet_console(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or getattr(record, "console", False)


def _file_handler(path: str) -> logging.Handler:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_FORMAT))
    return handler


def _no_library_bars(current: _Session) -> None:
    """No Hugging Face progress bars (``save_pretrained``'s "Writing model shards"), in this process and in
    the Ray workers it starts; read when ``transformers`` is imported, which the stages do lazily."""
    previous = os.environ.get(_HF_BARS_OFF)
    os.environ[_HF_BARS_OFF] = "1"

    def undo() -> None:
        if previous is None:
            os.environ.pop(_HF_BARS_OFF, None)
        else:
            os.environ[_HF_BARS_OFF] = previous

    current.restore.append(undo)


_HF_BARS_OFF = "HF_HUB_DISABLE_PROGRESS_BARS"


def _copy_ray_logs(source: str, target: str) -> None:
    """The Ray workers' output (``worker-*.out|err``: every task's and actor's prints and log records, what
    ``--verbose`` shows), Ray Data's and Ray Train's logs (``ray-data/``, ``train/``), from Ray's session
    folder into ``target``; empty files are left out. Ray's own processes (raylet, GCS ...) keep their logs
    in the session folder only."""
    def leave_out(folder: str, names: list[str]) -> list[str]:
        top = os.path.samefile(folder, source)
        return [name for name in names if (top and not _is_worker_log(name)) or _empty_file(folder, name)]

    try:
        shutil.copytree(source, target, ignore=leave_out, dirs_exist_ok=True)
    except (shutil.Error, OSError) as error:  # the command's own result stands; say what is missing
        log.warning("could not copy all of Ray's worker logs from %s to %s: %s", source, target, error)
        return
    log.info("Ray's worker logs copied to %s", target, extra=SHOWN)


def _is_worker_log(name: str) -> bool:
    return name.startswith("worker-") or name in ("ray-data", "train")


def _empty_file(folder: str, name: str) -> bool:
    path = os.path.join(folder, name)
    return os.path.isfile(path) and os.path.getsize(path) == 0


def _warnings_to_file(current: _Session) -> None:
    """Python warnings (a library's deprecation notices) go to the log file only, not to the console."""
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.propagate = False
    if current.file_handler is not None:
        warnings_logger.addHandler(current.file_handler)

    def undo() -> None:
        logging.captureWarnings(False)
        warnings_logger.propagate = True
        if current.file_handler is not None:
            warnings_logger.removeHandler(current.file_handler)

    current.restore.append(undo)
