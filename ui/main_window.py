"""The main window: a message banner, the tabs (Live, Training), the status bar,
menus, and the overlay window. Settings are read and written here and nowhere deeper."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QDialog, QMainWindow, QMessageBox, QTabWidget, QVBoxLayout, QWidget

from app.live import RunState
from app.live.qt import LiveController
from app.session import load_session
from app.settings import LiveOptions, ModelOptions, OverlayOptions, Settings, SourceOptions
from model.catalog import active_model_label
from model.train.demo import demo_check_note
from ui.banner import MessageBanner
from ui.live_tab import LiveTab
from ui.menus import menu_action
from ui.overlay import OverlayWindow
from ui.status import StatusPanel
from ui.subtitles import SubtitleFeed

log = logging.getLogger(__name__)

HINT_AFTER_SECONDS = 20
WAYLAND_NOTE = (
    "This Wayland session does not let applications keep a window on top, so the subtitle overlay "
    "is a normal window here. Under X11 (or XWayland: QT_QPA_PLATFORM=xcb) it stays on top."
)


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings, controller: LiveController | None = None, voice: dict | None = None) -> None:
        """``voice``: injections for the voice wiring (``sd``: a sounddevice stand-in, ``recognizer_factory``)."""
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
        # The Training tab is built when first opened: its plots (pyqtgraph) would cost the window a
        # third of a second at every start.
        self._training_tab = None
        self._training_placeholder = QWidget()
        self.tabs.addTab(self._training_placeholder, "Training")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self._model_before_training: ModelOptions | None = None  # reloaded when training ends
        self._save_after_training = False  # ... and then remembered as the model setting
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        # The notice strip floats over the top of the tab's content, just under the tab bar: no row of the
        # layout, so nothing jumps when a notice comes or goes.
        self.banner.setParent(central)
        self.banner.changed.connect(self._place_banner)
        central.installEventFilter(self)
        self.status = StatusPanel(self.statusBar())
        self.overlay = OverlayWindow(self.feed, settings.load(OverlayOptions))
        self._wayland_noted = False
        from ui.voice_control import VoiceControl

        self.voice = VoiceControl(self, self.live_tab.voice, settings, **(voice or {}))
        self.live_tab.transport.stop_clicked.connect(self.voice.stop_speaking)  # Stop also silences an answer
        self._build_menus()

        c = self.controller
        c.message.connect(self.show_message)
        c.message_cleared.connect(self.banner.clear_topic)
        c.state_changed.connect(self.status.on_run_state)
        c.step_finished.connect(self.status.on_step_finished)
        c.model_ready.connect(self.on_model_ready)
        c.load_progress.connect(self.status.on_load_progress)
        c.load_failed.connect(self.status.on_load_failed)
        c.step_finished.connect(self._on_step_for_hint)
        c.session_changed.connect(lambda session: self._reset_hint())
        self._pending_model: ModelOptions | None = None  # saved as the model setting once it loads
        self._standby_streak = 0  # seconds without an answer, for the "why is it quiet" hint
        self._hinted = False
        self.live_tab.message.connect(self.show_message)
        self.live_tab.message_cleared.connect(self.banner.clear_topic)
        self.live_tab.transcript.open_requested.connect(self.open_session_dialog)
        self.live_tab.transcript.play_requested.connect(self.play_session)
        self.live_tab.sample_requested.connect(self.try_sample)
        self.session_player = None  # ui.session_player.SessionPlayer while one is open
        self.live_tab.transcript.exported.connect(lambda path: self.show_message("info", f"Exported {path}", "export"))
        self.live_tab.transcript.export_failed.connect(lambda text: self.show_message("error", text, "export"))
        self.overlay.moved.connect(self.on_overlay_moved)
        c.model_unloaded.connect(lambda: self.status.on_model_unloaded("unloaded while training"))
        self._restore()

    # -- menus
    def _build_menus(self) -> None:
        from ui.controls import ASK_KEY, PAUSE_KEY, START_KEY, STOP_KEY

        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "Open &video...", self.live_tab.picker.browse, QKeySequence("Ctrl+Shift+O"))
        self._action(file_menu, "&Open session...", self.open_session_dialog, QKeySequence.StandardKey.Open)
        export = file_menu.addMenu("&Export transcript")
        for fmt, label in (("srt", "SubRip (.srt)"), ("vtt", "WebVTT (.vtt)"), ("json", "JSON (.json)")):
            self._action(export, label, lambda f=fmt: self.live_tab.transcript.export_dialog(f))
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        run = self.menuBar().addMenu("&Run")
        tab = self.live_tab
        self._action(run, "&Start", tab.start, QKeySequence(START_KEY))
        self.pause_action = self._action(run, "&Pause / Resume", self.toggle_pause, QKeySequence(PAUSE_KEY))
        self.stop_action = self._action(run, "S&top", self.stop, QKeySequence(STOP_KEY))
        self.start_action = run.actions()[0]
        self._enable_run_menu(self.controller.state)
        self.controller.state_changed.connect(self._enable_run_menu)
        self._action(run, "&Ask a question", self.focus_question, QKeySequence(ASK_KEY))
        model_menu = self.menuBar().addMenu("&Model")
        self._action(model_menu, "&Manage models...", self.open_model_manager)
        self._action(model_menu, "Use the &demo model", self.use_demo_model)
        self._action(model_menu, "&Reload", lambda: self.load_model(self.settings.load(ModelOptions)))
        self.voice.build_menu(self.menuBar().addMenu("V&oice"))
        view = self.menuBar().addMenu("&View")
        self.overlay_action = self._action(
            view, "Subtitle &overlay", self.toggle_overlay, QKeySequence("Ctrl+Shift+O"), checkable=True
        )
        self.click_through_action = self._action(
            view, "Overlay &click-through", self.toggle_click_through, checkable=True
        )
        self._action(view, "Overlay &appearance...", self.open_overlay_settings)
        view.addSeparator()
        self._action(view, "&Messages...", self.show_message_history, QKeySequence("Ctrl+Shift+M"))
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts)
        self._action(help_menu, "&About Streamo Live", self.show_about)

    def _action(self, menu, text, slot, shortcut=None, checkable=False) -> QAction:  # noqa: ANN001
        return menu_action(self, menu, text, slot, shortcut, checkable)

    # -- messages
    def show_message(self, level: str, text: str, topic: str = "info") -> None:
        log.log(logging.ERROR if level == "error" else logging.INFO, "%s", text)
        self.banner.show_message(level, text, topic)

    def show_message_history(self) -> None:
        from ui.banner import MessageHistoryDialog

        MessageHistoryDialog(self.banner.history, self).exec()

    def show_shortcuts(self) -> None:
        from ui.controls import ASK_KEY, PAUSE_KEY, START_KEY, STOP_KEY

        rows = [
            (START_KEY, "Start"),
            (PAUSE_KEY, "Pause / resume (the model and a video playing in real time)"),
            (STOP_KEY, "Stop (the session is saved)"),
            (ASK_KEY, "Type a question"),
            ("F8 (hold)", "Ask a question out loud (push to talk)"),
            ("Ctrl+.", "Stop speaking the answer"),
            ("Ctrl+Shift+O", "Show / hide the subtitle overlay"),
            ("Ctrl+Shift+M", "Messages"),
            ("Ctrl+O", "Open a saved session"),
        ]
        text = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in rows)
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{text}</table>")

    def show_about(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("streamo-live")
        except PackageNotFoundError:
            v = "development"
        QMessageBox.about(
            self,
            "About Streamo Live",
            f"<b>Streamo Live</b> {v}<br><br>A local live assistant on the Streamo streaming video LLM "
            "(“Streaming Video Instruction Tuning”, arXiv 2512.21334). Every second the model decides to stay "
            "silent, to stand by or to respond. Everything runs on this computer.<br><br>"
            "No Streamo weights are public: a base Qwen2.5-VL runs until you train an adapter "
            "(<tt>streamo-live train</tt>). The demo model is a toy that knows three shapes.",
        )

    # -- run
    def stop(self) -> None:
        self.controller.stop()
        self.voice.stop_speaking()

    def keyPressEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt override: the talk key, held
        from ui.voice_panel import is_talk_key

        if is_talk_key(event):
            self.voice.key_pressed()
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802, ANN001
        from ui.voice_panel import is_talk_key

        if is_talk_key(event):
            self.voice.key_released()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.centralWidget() and event.type() == QEvent.Type.Resize:
            self._place_banner()
        return super().eventFilter(watched, event)

    def _place_banner(self) -> None:
        if self.banner.isHidden():
            return
        central = self.centralWidget()
        top = self.tabs.geometry().top() + self.tabs.tabBar().geometry().bottom() + 4
        width = max(0, central.width() - 16)
        layout = self.banner.layout()
        height = layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else layout.totalSizeHint().height()
        self.banner.setGeometry(8, top, width, height)
        self.banner.raise_()

    def _enable_run_menu(self, state: RunState) -> None:
        """Run's items as the run allows: Start when idle, Pause and Stop while a run goes."""
        running = state in (RunState.RUNNING, RunState.PAUSED)
        self.start_action.setEnabled(state == RunState.IDLE)
        self.pause_action.setEnabled(running)
        self.pause_action.setText("&Resume" if state == RunState.PAUSED else "&Pause")
        self.stop_action.setEnabled(running)

    def toggle_pause(self) -> None:
        if self.controller.state in (RunState.RUNNING, RunState.PAUSED):
            self.controller.pause(self.controller.state == RunState.RUNNING)

    def focus_question(self) -> None:
        self.live_tab.controls.question.setFocus()
        self.live_tab.controls.question.selectAll()

    def _reset_hint(self) -> None:
        self._standby_streak, self._hinted = 0, False

    def _on_step_for_hint(self, report: object) -> None:
        """Tell a user whose model keeps quiet why, once a run: the threshold is the usual reason."""
        record = report.record  # type: ignore[attr-defined]
        self._standby_streak = 0 if record.text.strip() else self._standby_streak + 1
        if self._standby_streak == HINT_AFTER_SECONDS and not self._hinted:
            self._hinted = True
            self.show_message(
                "info",
                f"No answer for {HINT_AFTER_SECONDS} seconds: the model has not been sure enough to respond. "
                + ("Untick 'model decides' and move " if self.live_tab.controls.auto_talk.isChecked() else "Move ")
                + "Talkativeness to the right to hear more from it"
                + (" (the demo knows only a red ball, a blue square and a green triangle)." if self._demo() else "."),
                "hint",
            )

    def _demo(self) -> bool:
        return bool(self.controller.model and self.controller.model.is_demo)

    # -- model
    def load_model(self, options: ModelOptions, save: bool = False) -> None:
        """Load ``options``; with ``save``, they become the model setting once the model loaded (a
        folder that fails to load is not remembered)."""
        if not options.source:
            self.show_message(
                "info",
                "No model chosen yet. Open Model > Manage models to download one, or Model > Use the demo model.",
                "model",
            )
            return
        why = self.training_holds_device()
        if why:
            self._load_after_training(options, save, why)
            return
        if self.controller.state in (RunState.RUNNING, RunState.PAUSED) and not self.confirm_model_switch(options):
            return
        self._pending_model = options if save else None
        self.controller.load_model(options)

    def confirm_model_switch(self, options: ModelOptions) -> bool:
        """A run goes: loading another model stops it. Ask first."""
        answer = QMessageBox.question(
            self,
            "Live is running",
            f"Loading {options.label()} stops the live run (its session is saved). Stop it and load?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    # -- the GPU (and the memory) is shared: one of Live and training at a time
    def training_holds_device(self) -> str:
        """Why Live cannot load a model now ("" when it can): a training run or its evaluation runs in
        a process of its own that holds the GPU (or, on a CPU, the memory) the live model needs."""
        panel = self._training_tab.panel if self._training_tab is not None else None
        if panel is None or not panel.running:
            return ""
        what = "A training run" if panel.training else "The evaluation of a trained adapter"
        return (
            f"{what} is using the GPU and memory the live model needs ({panel.adapter_dir().name}); two models "
            "at once would run out of memory."
        )

    def ask_device_busy(self, why: str, options: ModelOptions) -> str:
        """Live asked for a model while training holds the device: "stop" (stop training, a checkpoint is
        kept, then load), "wait" (load when training ends) or "cancel"."""
        return self._choose(
            QMessageBox.Icon.Information,
            "Training is using the GPU",
            f"Live cannot load {options.label()} now.",
            why + " Stop training (its last checkpoint is kept, Resume continues it) and load now, or wait: the "
            "model loads by itself when training ends.",
            ("stop", "Stop training and load"),
            ("wait", "Load when training ends"),
        )

    def _choose(
        self, icon: QMessageBox.Icon, title: str, text: str, info: str, stop: tuple[str, str], go: tuple[str, str]
    ) -> str:
        """A question with a destructive choice, a default one and Cancel: the chosen key, or "cancel"."""
        box = QMessageBox(self)
        box.setIcon(icon)
        box.setWindowTitle(title)
        box.setText(text)
        box.setInformativeText(info)
        first = box.addButton(stop[1], QMessageBox.ButtonRole.DestructiveRole)
        default = box.addButton(go[1], QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(default)
        box.exec()
        return {first: stop[0], default: go[0]}.get(box.clickedButton(), "cancel")

    def _load_after_training(self, options: ModelOptions, save: bool, why: str) -> None:
        choice = self.ask_device_busy(why, options)
        if choice == "cancel":
            self.show_message("info", f"Not loaded: {why} Load it again when training ends.", "training")
            return
        # Loaded (and, with ``save``, remembered) by _on_training_running when the process ends.
        self._model_before_training = options
        self._save_after_training = save
        panel = self.training_tab.panel
        if choice == "stop":
            panel.stop_all()
            self.show_message("info", f"Stopping training; then {options.label()} loads for Live.", "training")
        else:
            self.show_message(
                "info", f"{options.label()} loads for Live when training ends (Training tab: progress).", "training"
            )

    def confirm_training_start(self, what: str) -> bool:
        """The Training tab is about to start ``what`` ("training" or "evaluation"): with a live run going,
        ask first (it stops the run and unloads the live model, which comes back when the process ends)."""
        if self.controller.state == RunState.IDLE:
            return True
        if not self.ask_stop_live(what):
            return False
        self.stop()
        return True

    def ask_stop_live(self, what: str) -> bool:
        answer = QMessageBox.question(
            self,
            "Live is running",
            f"Live is running. The {what} needs the GPU and memory the live model holds: stop the live run "
            "(the session is saved) and unload the model until it ends?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    # -- training
    @property
    def training_tab(self):  # noqa: ANN201 - ui.training.tab.TrainingTab, imported when built
        if self._training_tab is None:
            self._build_training_tab()
        return self._training_tab

    def _on_tab_changed(self, index: int) -> None:
        if self._training_tab is None and self.tabs.widget(index) is self._training_placeholder:
            self._build_training_tab()

    def _build_training_tab(self) -> None:
        from ui.training.tab import TrainingTab

        t = TrainingTab(self.settings)
        t.clips.message.connect(lambda level, text: self.show_message(level, text, "training"))
        t.panel.confirm_start = self.confirm_training_start
        t.panel.about_to_start.connect(self._free_model_for_training)
        t.panel.training_running.connect(self._on_training_running)
        t.panel.use_in_live.connect(self.use_adapter)
        self._training_tab = t
        index = self.tabs.indexOf(self._training_placeholder)
        showing = self.tabs.currentIndex() == index
        self.tabs.blockSignals(True)
        self.tabs.insertTab(index, t, "Training")
        self.tabs.removeTab(index + 1)
        if showing:
            self.tabs.setCurrentIndex(index)
        self.tabs.blockSignals(False)
        self._training_placeholder.deleteLater()

    def _free_model_for_training(self) -> None:
        """Training (and its evaluation) runs in a process of its own that needs the memory: the live
        model goes, and comes back when the process ends."""
        if self.controller.model is None:
            return
        if self._model_before_training is None:
            self._model_before_training = self.controller.model.options
        self.controller.unload_model()
        self.show_message(
            "info",
            "The live model is unloaded while training runs, so the trainer has the memory; it loads again "
            "when training ends.",
            "training",
        )

    def _on_training_running(self, running: bool) -> None:
        if running:
            return
        options, self._model_before_training = self._model_before_training, None
        save, self._save_after_training = self._save_after_training, False
        if options is not None and self.controller.model is None and self.controller.state == RunState.IDLE:
            self.show_message("info", f"Training ended: loading the live model ({options.label()}).", "training")
            self.load_model(options, save=save)

    def use_adapter(self, adapter: str, base_model: str) -> None:
        """Training's "Use in Live": the base model with the new adapter becomes the live model."""
        if not self.training_holds_device():
            self._model_before_training = None  # replaced, not restored
        current = self.settings.load(ModelOptions)
        options = replace(current, source=base_model, adapter=adapter)
        self.tabs.setCurrentWidget(self.live_tab)
        self.show_message("info", f"Loading {base_model} with the adapter {Path(adapter).name} for Live.", "training")
        self.load_model(options, save=True)

    def try_sample(self) -> None:
        """The first-run shortcut: the sample clip as the source, the demo shapes model when no model is
        loaded (or loading), and Start as soon as a model is ready."""
        from ui.live_tab import SAMPLE_CLIP

        self.live_tab.picker.set_file(str(SAMPLE_CLIP))
        if self.controller.model is not None and self.controller.state == RunState.IDLE:
            self.live_tab.start()
            return

        def start_once(info: object) -> None:
            self.controller.model_ready.disconnect(start_once)
            self.live_tab.start()

        self.controller.model_ready.connect(start_once)
        if self.controller.state != RunState.LOADING:
            self.use_demo_model()
        self.show_message("info", "The sample clip starts as soon as the model is ready.", "model")

    def use_demo_model(self) -> None:
        self.load_model(replace(self.settings.load(ModelOptions), source="demo", adapter=""), save=True)

    def open_model_manager(self) -> None:
        from ui.model_manager import ModelManagerDialog

        # Where the Training tab writes adapters (besides the default folder, always listed).
        roots = [self._training_tab.panel.adapter_root()] if self._training_tab is not None else []
        dialog = ModelManagerDialog(self.settings.load(ModelOptions), self, adapter_roots=roots)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.load_model(dialog.options(), save=True)

    def on_model_ready(self, info: object) -> None:
        self.status.on_model_loaded(info)
        pending, self._pending_model = self._pending_model, None
        if pending is not None and pending == getattr(info, "options", None):
            self.settings.save(pending)
        adapter = getattr(info, "adapter", "")
        label = active_model_label(info.options.source, adapter or None, card=True)  # type: ignore[attr-defined]
        if adapter and label != "demo shapes model":
            self.show_message("info", f"Live uses {label}. Press Start to run it on a source.", "model")
        elif getattr(info, "is_demo", False) and getattr(info, "adapter", ""):
            self.show_message(
                "info",
                "Demo shapes model loaded: a toy trained on synthetic clips. It narrates a red ball, a blue square "
                "and a green triangle (press Try the sample clip under Source, or choose assets/sample.mp4) and knows nothing else."
                + (f" Note: {note[0].upper()}{note[1:]}" if (note := demo_check_note(adapter)) else ""),
            )
        elif getattr(info, "is_demo", False):
            self.show_message(
                "info", "Demo model loaded: it exercises the pipeline, but its words are meaningless.", "model"
            )

    # -- sessions
    def open_session_dialog(self) -> None:
        from ui.sessions_dialog import SessionsDialog

        if self.controller.state != RunState.IDLE:
            self.show_message("warning", "Stop the live session before opening a saved one.", "session")
            return
        dialog = SessionsDialog(parent=self)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.selected_path is not None:
            self.open_session(str(dialog.selected_path))

    def open_session(self, path: str) -> bool:
        try:
            session = load_session(path)
        except (OSError, ValueError) as e:
            self.show_message("error", f"Cannot open the session {path}: {e}", "session")
            return False
        self.controller.open_session(session)
        self.live_tab.transcript.set_session(session, reopened=True)
        return True

    def play_session(self, at: float = 0.0) -> None:
        """Play the reopened session back from stream second ``at`` (the open player seeks there)."""
        from ui.session_player import SessionPlayer

        session = self.live_tab.transcript.session
        player = self.session_player
        if player is not None and player.isVisible() and player.session is session:
            player.seek_to(at)
            player.raise_()
            return
        if player is not None:
            player.close()
        self.session_player = SessionPlayer(session, at, self)
        self.session_player.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.session_player.destroyed.connect(lambda _obj=None: setattr(self, "session_player", None))
        self.session_player.show()

    # -- overlay
    def toggle_overlay(self, visible: bool) -> None:
        if visible and self.overlay.options.x < 0:  # the default place must not cover this window
            self.overlay.avoid = self.frameGeometry()
            self.overlay.reset_place()
        self.overlay.set_enabled(visible)
        self.overlay_action.setChecked(visible)
        if visible and not self.overlay.always_on_top and not self._wayland_noted:
            self._wayland_noted = True
            self.show_message("info", WAYLAND_NOTE, "overlay")

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
        self.settings.save(replace(self.overlay.options, visible=self.overlay.enabled))

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

    def ask_about_training(self) -> str:
        """Training runs while the window closes: "stop" (a checkpoint is saved), "keep" (it goes on in
        the background and writes the adapter) or "cancel" (the window stays)."""
        return self._choose(
            QMessageBox.Icon.Question,
            "Training is running",
            "A training run is going on. Stop it, or keep it training in the background?",
            f"Stopping saves a checkpoint you can resume from. In the background it finishes and writes the "
            f"adapter to {self.training_tab.panel.adapter_dir()}; open the Training tab later to evaluate it.",
            ("stop", "Stop training"),
            ("keep", "Keep training"),
        )

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        panel = self._training_tab.panel if self._training_tab is not None else None
        if panel is not None and panel.running:
            choice = self.ask_about_training()
            if choice == "cancel":
                event.ignore()
                return
            if choice == "stop":
                if not panel.stop_and_wait(60.0):
                    self.show_message(
                        "warning", "Training did not stop within a minute; it was left running.", "training"
                    )
            else:
                panel.detach()
        self.save_settings()
        self.voice.close()
        self.overlay.close()
        self.controller.shutdown()
        super().closeEvent(event)
