"""Start the desktop app: QApplication, settings, the main window, then the model in the
background. ``app.gui_cmd`` calls :func:`run` with the parsed command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from app.settings import ModelOptions, Settings, SourceOptions
from ui.main_window import MainWindow

log = logging.getLogger(__name__)
ORGANIZATION = APPLICATION = "streamo-live"
ICON = Path(__file__).resolve().parents[1] / "assets" / "icons" / "streamo-live.svg"


def _process_age() -> float:
    """Seconds since this process started (the startup time a user feels)."""
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - only for a log line
        return float("nan")


def model_options_from(args: argparse.Namespace, saved: ModelOptions) -> ModelOptions:
    """The saved model choice, overridden by --demo / --model / --precision / --device / --adapter / --kernels."""
    options = saved
    if getattr(args, "demo", False):
        options = replace(options, source="demo")
    elif getattr(args, "model", None):
        options = replace(options, source=args.model)
    for name in ("precision", "device", "adapter", "kernels"):
        value = getattr(args, name, None)
        if value:
            options = replace(options, **{name: value})
    return options


def binding_leaks_singletons() -> bool:
    """Whether this Qt binding drops a reference to None on each void call and to True on each
    signal emission. PySide6 6.12.0 on Python 3.11 does (``QLabel.setText``, every ``QPainter``
    call, every ``Signal.emit``): the process then dies ("Fatal Python error: none_dealloc") once
    their counts run out, after some tens of thousands of calls, i.e. minutes of a live session.
    pyproject.toml pins pyside6-essentials below 6.12; this catches an install that ignored it."""
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(20):
        probe.setObjectName("probe")
        probe.objectNameChanged.emit("probe")
    after = sys.getrefcount(None), sys.getrefcount(True)
    return after[0] <= before[0] - 10 or after[1] <= before[1] - 10


BROKEN_BINDING = (
    "This PySide6 ({version}) leaks references on every Qt call and crashes Python 3.11 within minutes. "
    "Install a working one: pip install 'pyside6-essentials>=6.7,<6.12'"
)


def create_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Streamo Live")
    if binding_leaks_singletons():
        import PySide6

        log.error(BROKEN_BINDING.format(version=PySide6.__version__))
        print(BROKEN_BINDING.format(version=PySide6.__version__), file=sys.stderr)
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    return app  # type: ignore[return-value]


def install_excepthook(window: MainWindow) -> None:
    """An exception in a GUI slot becomes a message in the window instead of a silent log line."""
    previous = sys.excepthook

    def hook(kind, value, tb) -> None:  # noqa: ANN001
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, value, tb)
            return
        log.error("unexpected error", exc_info=(kind, value, tb))
        window.show_message("error", f"Unexpected error: {kind.__name__}: {value}. The session goes on; see the log.")

    sys.excepthook = hook


def run(args: argparse.Namespace) -> int:
    app = create_application()
    settings = Settings()
    window = MainWindow(settings)
    if getattr(args, "source", None):
        window.live_tab.picker.set_options(SourceOptions(spec=args.source))
    window.show()
    install_excepthook(window)
    log.info("window shown %.2f s after the process started", _process_age())

    options = model_options_from(args, settings.load(ModelOptions))
    QTimer.singleShot(0, lambda: window.load_model(options))
    if getattr(args, "overlay", False):
        QTimer.singleShot(0, lambda: window.toggle_overlay(True))
    if getattr(args, "start", False):

        def start_once(info: object) -> None:
            window.controller.model_ready.disconnect(start_once)
            window.live_tab.start()

        window.controller.model_ready.connect(start_once)
    quit_after = getattr(args, "quit_after", None)
    if quit_after:
        QTimer.singleShot(int(quit_after * 1000), window.close)
    if os.environ.get("STREAMO_LIVE_PRINT_STARTUP"):
        QTimer.singleShot(0, lambda: print(f"startup {_process_age():.2f} s", flush=True))
    code = int(app.exec())
    log.info("subtitles shown this run: %d", len(window.feed.history))
    if not window.controller.threads_stopped:
        # A model load is still running on the engine thread and cannot be interrupted; Qt would
        # abort on destroying a running QThread. Everything worth keeping is already on disk.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
