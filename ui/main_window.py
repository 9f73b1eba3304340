"""The main window: a message banner, the tabs (Live; Training once it exists), the status bar,
menus, and the overlay window. Settings are read and written here and nowhere deeper."""

from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtCore import QPoint, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QDialog, QMainWindow, QTabWidget, QVBoxLayout, QWidget

from app.session import load_session
from app.settings import LiveOptions, ModelOptions, OverlayOptions, Settings, SourceOptions
from ui.banner import MessageBanner
from ui.controller import LiveController
from ui.live_tab import LiveTab
from ui.overlay import OverlayWindow
from ui.status import StatusPanel
from ui.subtitles import SubtitleFeed

log = logging.getLogger(__name__)

WAYLAND_NOTE = (
    "This Wayland session does not let applications keep a window on top, so the subtitle overlay "
    "is a normal window here. Under X11 (or XWayland: QT_QPA_PLATFORM=xcb) it stays on top."
)


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings, controller: LiveController | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.controller = controller or LiveController(parent=self)
        self.setWindowTitle("Streamo Live")
        self.resize(1280, 800)
        self.feed = SubtitleFeed()
        self.banner = MessageBanner()
        self.live_tab = LiveTab(self.controller, self.feed)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.live_tab, "Live")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.status = StatusPanel(self.statusBar())
        self.overlay = OverlayWindow(self.feed, settings.load(OverlayOptions))
        self._wayland_noted = False
        self._build_menus()

        c = self.controller
        c.message.connect(self.show_message)
        c.state_changed.connect(self.status.on_run_state)
        c.step_finished.connect(self.status.on_step_finished)
        c.model_ready.connect(self.on_model_ready)
        c.load_progress.connect(self.status.on_load_progress)
        c.load_failed.connect(self.status.on_load_failed)
        self.live_tab.message.connect(self.show_message)
        self.live_tab.transcript.open_requested.connect(self.open_session_dialog)
        self.live_tab.transcript.exported.connect(lambda path: self.show_message("info", f"Exported {path}"))
        self.live_tab.transcript.export_failed.connect(lambda text: self.show_message("error", text))
        self.overlay.moved.connect(self.on_overlay_moved)
        self._restore()

    # -- menus
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open session...", self.open_session_dialog, QKeySequence.StandardKey.Open)
        export = file_menu.addMenu("&Export transcript")
        for fmt, label in (("srt", "SubRip (.srt)"), ("vtt", "WebVTT (.vtt)"), ("json", "JSON (.json)")):
            self._action(export, label, lambda f=fmt: self.live_tab.transcript.export_dialog(f))
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        model_menu = self.menuBar().addMenu("&Model")
        self._action(model_menu, "&Manage models...", self.open_model_manager)
        self._action(model_menu, "&Reload", lambda: self.load_model(self.settings.load(ModelOptions)))
        view = self.menuBar().addMenu("&View")
        self.overlay_action = self._action(view, "Subtitle &overlay", self.toggle_overlay, checkable=True)
        self.click_through_action = self._action(
            view, "Overlay &click-through", self.toggle_click_through, checkable=True
        )
        self._action(view, "Overlay &appearance...", self.open_overlay_settings)

    def _action(self, menu, text, slot, shortcut=None, checkable=False) -> QAction:  # noqa: ANN001
        action = QAction(text, self)
        action.setCheckable(checkable)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(lambda checked=False: slot(checked) if checkable else slot())
        menu.addAction(action)
        return action

    # -- messages
    def show_message(self, level: str, text: str) -> None:
        log.log(logging.ERROR if level == "error" else logging.INFO, "%s", text)
        self.banner.show_message(level, text)

    # -- model
    def load_model(self, options: ModelOptions) -> None:
        if not options.source:
            self.show_message(
                "info", "No model chosen yet. Open Model > Manage models to download one, or pick the demo model."
            )
            return
        self.controller.load_model(options)

    def open_model_manager(self) -> None:
        from ui.model_manager import ModelManagerDialog

        dialog = ModelManagerDialog(self.settings.load(ModelOptions), self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            options = dialog.options()
            self.settings.save(options)
            self.load_model(options)

    def on_model_ready(self, info: object) -> None:
        self.status.on_model_loaded(info)
        if getattr(info, "is_demo", False) and getattr(info, "adapter", ""):
            self.show_message(
                "info",
                "Demo shapes model loaded: a toy trained on synthetic clips. It narrates a red ball, a blue square "
                "and a green triangle (try File > Open video with assets/sample.mp4) and knows nothing else.",
            )
        elif getattr(info, "is_demo", False):
            self.show_message("info", "Demo model loaded: it exercises the pipeline, but its words are meaningless.")
        elif self.banner.level == "error":
            self.banner.hide()

    # -- sessions
    def open_session_dialog(self) -> None:
        from ui.sessions_dialog import SessionsDialog

        if self.controller.state != "idle":
            self.show_message("warning", "Stop the live session before opening a saved one.")
            return
        dialog = SessionsDialog(parent=self)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.selected_path is not None:
            self.open_session(str(dialog.selected_path))

    def open_session(self, path: str) -> bool:
        try:
            session = load_session(path)
        except (OSError, ValueError) as e:
            self.show_message("error", f"Cannot open the session {path}: {e}")
            return False
        self.controller.open_session(session)
        self.live_tab.transcript.set_session(session, reopened=True)
        return True

    # -- overlay
    def toggle_overlay(self, visible: bool) -> None:
        self.overlay.setVisible(visible)
        self.overlay_action.setChecked(visible)
        if visible and not self.overlay.always_on_top and not self._wayland_noted:
            self._wayland_noted = True
            self.show_message("info", WAYLAND_NOTE)

        self._save_overlay()

    def toggle_click_through(self, on: bool) -> None:
        self.overlay.apply_options(replace(self.overlay.options, click_through=on))
        self.click_through_action.setChecked(on)
        self._save_overlay()

    def on_overlay_moved(self, pos: QPoint) -> None:
        self.overlay.options = replace(self.overlay.options, x=pos.x(), y=pos.y())
        self._save_overlay()

    def open_overlay_settings(self) -> None:
        from ui.overlay_settings import OverlaySettingsDialog

        dialog = OverlaySettingsDialog(self.overlay.options, self)
        dialog.previewed.connect(self.overlay.apply_options)
        before = self.overlay.options
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        self.overlay.apply_options(dialog.options() if accepted else before)
        self._save_overlay()

    def _save_overlay(self) -> None:
        self.settings.save(replace(self.overlay.options, visible=self.overlay.isVisible()))

    # -- settings
    def _restore(self) -> None:
        s = self.settings
        geometry = s.bytes_value(Settings.GEOMETRY)
        if geometry is not None:
            self.restoreGeometry(geometry)
        splitter = s.bytes_value(Settings.SPLITTER)
        if splitter is not None:
            self.live_tab.splitter.restoreState(splitter)
        self.live_tab.set_options(s.load(SourceOptions), s.load(LiveOptions))
        overlay = self.overlay.options
        self.click_through_action.setChecked(overlay.click_through)
        if overlay.visible:
            QTimer.singleShot(0, lambda: self.toggle_overlay(True))

    def save_settings(self) -> None:
        s = self.settings
        s.set_value(Settings.GEOMETRY, self.saveGeometry())
        s.set_value(Settings.SPLITTER, self.live_tab.splitter.saveState())
        s.save(self.live_tab.source_options())
        s.save(self.live_tab.live_options())
        self._save_overlay()
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.save_settings()
        self.overlay.close()
        self.controller.shutdown()
        super().closeEvent(event)
