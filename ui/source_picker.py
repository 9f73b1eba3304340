"""Source picker: a video file (dialog or drag and drop), a webcam (device and resolution) or the
screen (a monitor or a region of it)."""

from __future__ import annotations

import os

from PySide6.QtCore import QThreadPool, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.jobs import CameraScan
from app.settings import SourceOptions
from app.sources import COMMON_RESOLUTIONS, SourceError, SourceSpec

FILE, WEBCAM, SCREEN = 0, 1, 2
VIDEO_FILTER = "Videos (*.mp4 *.mkv *.mov *.avi *.webm *.m4v *.mpg *.mpeg *.wmv *.flv);;All files (*)"


class SourcePicker(QWidget):
    changed = Signal()  # the chosen source changed
    problem = Signal(str)  # a message for the window (no screens, camera scan failed)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = QComboBox()
        self.kind.addItems(["Video file", "Webcam", "Screen"])
        self.stack = QStackedWidget()

        # file
        self.path = QLineEdit(placeholderText="a video file: browse or drop it on the preview")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self.browse)
        self.realtime = QCheckBox("Play at real speed")
        self.realtime.setChecked(True)
        self.realtime.setToolTip("Unchecked: every sampled frame goes to the model, as fast as it can go")
        file_page = QWidget()
        file_layout = QVBoxLayout(file_page)
        file_layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        file_layout.addLayout(row)
        file_layout.addWidget(self.realtime)

        # webcam
        self.camera = QComboBox()
        self.resolution = QComboBox()
        self.resolution.addItem("camera default", None)  # item data: (width, height) or None
        for w, h in COMMON_RESOLUTIONS:
            self.resolution.addItem(_resolution_label(w, h), (w, h))
        refresh = QToolButton(text="Refresh")
        refresh.setToolTip("Look for cameras again")
        refresh.clicked.connect(self.scan_cameras)
        cam_page = QWidget()
        cam_form = QFormLayout(cam_page)
        cam_form.setContentsMargins(0, 0, 0, 0)
        cam_row = QHBoxLayout()
        cam_row.addWidget(self.camera, 1)
        cam_row.addWidget(refresh)
        cam_form.addRow("Camera", cam_row)
        cam_form.addRow("Resolution", self.resolution)

        # screen
        self.monitor = QComboBox()
        self.region = QLineEdit(placeholderText="whole monitor, or a region x,y,w,h")
        self.region.setToolTip("Pixels from the monitor's top-left corner: x,y,width,height, e.g. 0,0,1280,720")
        # Checked as it is typed: a region that is not one is never taken for the whole monitor.
        self.region_note = QLabel()
        self.region_note.setWordWrap(True)
        self.region_note.setStyleSheet("color: #b00020;")
        self.region_note.hide()
        self.region.textChanged.connect(lambda _text: self._check_region())
        screen_page = QWidget()
        screen_form = QFormLayout(screen_page)
        screen_form.setContentsMargins(0, 0, 0, 0)
        screen_form.addRow("Monitor", self.monitor)
        self.pick_button = QPushButton("Pick on screen...")
        self.pick_button.setToolTip("Drag the area to share over a still of the monitor")
        self.pick_button.clicked.connect(lambda _checked=False: self.pick_region())
        self._region_picker = None  # the open ui.region_picker.RegionPicker, if any
        self.window_button = QPushButton("Pick a window...")
        self.window_button.setToolTip("Click the window to share: its area becomes the region (X11)")
        self.window_button.clicked.connect(lambda _checked=False: self.pick_window())
        self._window_pick = None  # the running ui.region_picker.WindowPick, if any
        from ui.region_picker import window_picking_available

        self.window_button.setVisible(window_picking_available())
        region_row = QHBoxLayout()
        region_row.addWidget(self.region, 1)
        region_row.addWidget(self.pick_button)
        region_row.addWidget(self.window_button)
        screen_form.addRow("Region", region_row)
        screen_form.addRow("", self.region_note)

        for page in (file_page, cam_page, screen_page):
            self.stack.addWidget(page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.kind)
        layout.addWidget(self.stack)

        self.kind.currentIndexChanged.connect(self._on_kind_changed)
        for signal in (self.path.textChanged, self.region.textChanged):
            signal.connect(self.changed)
        self.realtime.toggled.connect(self.changed)
        for combo in (self.camera, self.resolution, self.monitor):
            combo.currentIndexChanged.connect(self.changed)
        self._cameras_scanned = self._monitors_listed = False
        self.no_camera = False  # the last scan found none
        self.monitors: dict[int, tuple[int, int, int, int]] = {}  # index -> left, top, width, height (pixels)
        self._scan: CameraScan | None = None

    # -- options: specs are built and read by SourceSpec only
    def options(self) -> SourceOptions:
        kind = self.kind.currentIndex()
        if kind == WEBCAM:
            index = self.camera.currentData()
            w, h = self.resolution.currentData() or (None, None)
            return SourceOptions(spec=str(SourceSpec.webcam(0 if index is None else index, w, h)))
        if kind == SCREEN:
            index = self.monitor.currentData()
            try:
                region = SourceSpec.parse_region(self.region.text()) if self.region.text().strip() else None
            except SourceError:
                # Not a region (yet): no source at all, never the whole monitor (``problem_text`` says why).
                return SourceOptions(spec="")
            return SourceOptions(spec=str(SourceSpec.screen(1 if index is None else index, region)))
        path = self.path.text().strip()
        if path:  # saved absolute: a relative path would name another file when started from elsewhere
            path = os.path.abspath(os.path.expanduser(path))
        return SourceOptions(spec=str(SourceSpec.file(path)) if path else "", realtime=self.realtime.isChecked())

    def set_options(self, options: SourceOptions) -> None:
        """Show ``options``; an invalid spec (damaged settings, a bad --source) leaves the
        choice as it is and says why through ``problem``."""
        if not options.spec.strip():
            spec = None
        else:
            try:
                spec = options.source_spec()
            except SourceError as e:
                self.problem.emit(str(e))
                return
        if spec is not None and spec.kind == "webcam":
            self.kind.setCurrentIndex(WEBCAM)
            self._select(self.camera, spec.index, f"Camera {spec.index}")
            size = (spec.width, spec.height) if spec.width is not None else None
            self._select(self.resolution, size, None if size is None else _resolution_label(*size))
        elif spec is not None and spec.kind == "screen":
            self.kind.setCurrentIndex(SCREEN)
            self._select(self.monitor, spec.index, f"Monitor {spec.index}")
            self.region.setText("" if spec.region is None else SourceSpec.format_region(spec.region))
        else:
            self.kind.setCurrentIndex(FILE)
            self.path.setText("" if spec is None else str(spec.path))
            self.realtime.setChecked(options.realtime)

    def problem_text(self) -> str | None:
        """Why the chosen source cannot start, or None: no camera found, or a typed screen region that is not one."""
        if self.kind.currentIndex() == WEBCAM and self.no_camera:
            return (
                "No camera was found. Connect one and press Refresh beside the camera list, or choose another source."
            )
        if self.kind.currentIndex() != SCREEN or not self.region.text().strip():
            return None
        try:
            SourceSpec.parse_region(self.region.text())
        except SourceError as e:
            return f"{e} Finish the region, or clear it to capture the whole monitor."
        return None

    def monitor_geometry(self) -> tuple[int, int, int, int] | None:
        """The chosen monitor's left, top, width and height in pixels, when a display lists it."""
        return self.monitors.get(self.monitor.currentData())

    def pick_region(self) -> bool:
        """Lay a still of the chosen monitor over it and let the user drag the region (it lands in the
        Region field). False, with the reason through ``problem``, when there is no monitor to show."""
        from ui.region_picker import pick_region

        if not self._monitors_listed:
            self.list_monitors()
        geometry = self.monitor_geometry()
        if geometry is None:
            self.problem.emit("No monitor to pick a region on: screen capture needs a display (see Monitor's tooltip).")
            return False
        self._region_picker = picker = pick_region(geometry)
        picker.chosen.connect(lambda region: self.region.setText(SourceSpec.format_region(region)))
        picker.destroyed.connect(lambda _obj=None: setattr(self, "_region_picker", None))
        return True

    def pick_window(self) -> bool:
        """X11: the user clicks a window; its area on the chosen monitor becomes the region."""
        from ui.region_picker import WindowPick, window_picking_available

        if not window_picking_available():
            self.problem.emit("Picking a window needs X11 and xwininfo (Debian: x11-utils); drag the region instead.")
            return False
        if not self._monitors_listed:
            self.list_monitors()
        self._window_pick = pick = WindowPick(self)
        pick.chosen.connect(self._on_window)
        pick.failed.connect(self._on_window_failed)
        self.region_note.setStyleSheet("")
        self.region_note.setText("Click the window to share (Esc in the window cancels)...")
        self.region_note.show()
        pick.start()
        return True

    def _on_window(self, area: tuple[int, int, int, int]) -> None:
        """A window's desktop area -> the monitor it is on, and the region of it on that monitor."""
        x, y, w, h = area
        for index, (left, top, width, height) in self.monitors.items():
            if index == 0:  # mss's monitor 0 is all of them together
                continue
            if left <= x < left + width and top <= y < top + height:
                right, bottom = min(x + w, left + width), min(y + h, top + height)
                self._select(self.monitor, index, f"Monitor {index}")
                self.region_note.setStyleSheet("color: #b00020;")
                self.region.setText(SourceSpec.format_region((x - left, y - top, right - x, bottom - y)))
                self._check_region()
                return
        self._on_window_failed("The window is not on a monitor that can be captured.")

    def _on_window_failed(self, why: str) -> None:
        self.region_note.setStyleSheet("color: #b00020;")
        self.region_note.setText(why)
        self.region_note.show()

    def _check_region(self) -> None:
        problem = self.problem_text()
        self.region_note.setText(problem or "")
        self.region_note.setVisible(problem is not None)
        self.region.setStyleSheet("border: 1px solid #b00020;" if problem else "")

    def set_file(self, path: str) -> None:
        self.kind.setCurrentIndex(FILE)
        self.path.setText(path)

    def browse(self) -> None:
        start = os.path.dirname(self.path.text()) or os.path.expanduser("~")
        path, _ = QFileDialog.getOpenFileName(self, "Choose a video file", start, VIDEO_FILTER)
        if path:
            self.set_file(path)

    # -- devices
    def scan_cameras(self) -> None:
        if self._scan is not None:
            return
        self._cameras_scanned = True
        self.camera.clear()
        self.camera.addItem("looking for cameras...", None)
        self._scan = CameraScan()
        self._scan.signals.finished.connect(self._on_cameras)
        self._scan.signals.failed.connect(self.problem)
        QThreadPool.globalInstance().start(self._scan)

    def _on_cameras(self, cameras: list) -> None:
        self._scan = None
        wanted = self.camera.currentData()
        self.camera.clear()
        for c in cameras:
            self.camera.addItem(f"{c.name} ({c.width}x{c.height})" if c.width else c.name, c.index)
        self.no_camera = not cameras
        if not cameras:
            self.camera.addItem("No camera found", 0)
            self.camera.setToolTip("Connect a camera and press Refresh")
        else:
            self.camera.setToolTip("")
        self._select(self.camera, wanted, None)
        self.changed.emit()

    def list_monitors(self) -> None:
        from app.sources import list_monitors

        self._monitors_listed = True
        self.monitor.clear()
        try:
            monitors = list_monitors()
        except SourceError as e:
            self.monitor.addItem("Monitor 1 (no display found)", 1)
            self.monitor.setToolTip(str(e))
            return
        for m in monitors:
            self.monitor.addItem(m.name, m.index)
            self.monitors[m.index] = (m.left, m.top, m.width, m.height)
        self._select(self.monitor, 1, None)

    def _on_kind_changed(self, kind: int) -> None:
        self.stack.setCurrentIndex(kind)
        if kind == WEBCAM and not self._cameras_scanned:
            self.scan_cameras()
        elif kind == SCREEN and not self._monitors_listed:
            self.list_monitors()
        self.changed.emit()

    @staticmethod
    def _select(combo: QComboBox, data: object, label: str | None) -> None:
        i = combo.findData(data)
        if i < 0 and label is not None and data is not None:
            combo.addItem(label, data)
            i = combo.count() - 1
        if i >= 0:
            combo.setCurrentIndex(i)


def _resolution_label(width: int, height: int) -> str:
    return f"{width} x {height}"
