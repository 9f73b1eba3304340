"""Model manager: choose a checkpoint (a known Hugging Face id, a local folder or the demo model),
precision, device and adapter; download into the huggingface_hub cache with progress, speed,
cancel and resume."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.jobs import DownloadJob, DownloadProgress
from app.settings import ModelOptions
from model.device import GPU_ONLY_PRECISIONS, KERNEL_MODES, device_choices, runs_on_cpu

DEMO, FOLDER = "demo", "<folder>"
DEMO_TEXT = (
    "Demo shapes model: a tiny network built on this computer, no download. On first use it trains a "
    "small adapter on synthetic clips (about a minute or two on a CPU), after which it narrates a red ball, "
    "a blue square and a green triangle, as in assets/sample.mp4. A toy: it knows nothing else."
)


class ModelManagerDialog(QDialog):
    def __init__(
        self,
        current: ModelOptions,
        parent: QWidget | None = None,
        downloader: object = None,
        adapter_roots: list[Path] | None = None,
    ) -> None:
        """``adapter_roots``: folders whose subfolders are adapters (default: where training puts them)."""
        super().__init__(parent)
        from model.adapters import adapters_root

        self._adapter_roots = [adapters_root(), *(adapter_roots or [])]
        from model.catalog import KNOWN_MODELS, PRECISIONS

        self.setWindowTitle("Model manager")
        self.resize(640, 520)
        self._downloader = downloader
        self._job: DownloadJob | None = None
        self._first_done: int | None = None
        self._adapter_infos: list = []

        self.choices = QListWidget()
        demo = QListWidgetItem("Demo shapes model (tiny, offline toy: it knows three shapes)")
        demo.setData(Qt.ItemDataRole.UserRole, DEMO)
        self.choices.addItem(demo)
        for m in KNOWN_MODELS:
            item = QListWidgetItem(
                f"{m.model_id}  ·  {m.params_b:g}B params  ·  download {m.download_gb:g} GB  ·  "
                f"GPU {m.vram_4bit_gb:g} GB in 4-bit / {m.vram_bf16_gb:g} GB in bf16"
            )
            item.setData(Qt.ItemDataRole.UserRole, m.model_id)
            item.setToolTip(m.note)
            self.choices.addItem(item)
        folder = QListWidgetItem("Local folder...")
        folder.setData(Qt.ItemDataRole.UserRole, FOLDER)
        self.choices.addItem(folder)

        self.folder = QLineEdit(placeholderText="a folder with config.json and *.safetensors")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self.browse_folder)
        self.precision = QComboBox()
        self.precision.addItems(list(PRECISIONS))
        self.precision.setToolTip("4bit/8bit need a CUDA GPU; the CPU runs fp32")
        self.device = QComboBox()
        self.device.addItems(device_choices())
        self.device.currentTextChanged.connect(lambda _text: self._offer_precisions())
        self.kernels = QComboBox()
        self.kernels.addItems(list(KERNEL_MODES))
        self.kernels.setToolTip(
            "Triton fused kernels for 4-bit models on a CUDA GPU.\n"
            "auto: where they apply, otherwise bitsandbytes/torch\n"
            "triton: the same, and a warning saying why when they cannot apply\n"
            "off: bitsandbytes/torch always"
        )
        self.adapter = QLineEdit(placeholderText="optional: a LoRA adapter folder")
        adapter_browse = QPushButton("Browse...")
        adapter_browse.clicked.connect(self.browse_adapter)
        # Adapters trained here (the Training tab) and the one in use, each with its card.
        self.adapters = QListWidget()
        self.adapters.setMaximumHeight(90)
        self.adapters.setToolTip("LoRA adapters trained in the Training tab; choose one to use it with its base model")
        self.card = QPlainTextEdit(readOnly=True)
        self.card.setMaximumHeight(110)
        self.card.setPlaceholderText("The chosen adapter's card: what it was trained on, how, and how well")
        self.card.hide()
        self.adapters.currentItemChanged.connect(self._on_adapter_chosen)

        self.details = QLabel()
        self.details.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.hide()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.speed = QLabel()
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #e06c75")
        self.error.hide()
        self.use_folder_button = QPushButton("Point at a folder instead...")
        self.use_folder_button.hide()
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.use_folder_button.clicked.connect(self._use_folder)

        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        adapter_row = QHBoxLayout()
        adapter_row.addWidget(self.adapter, 1)
        adapter_row.addWidget(adapter_browse)
        form = QFormLayout()
        form.addRow("Folder", folder_row)
        form.addRow("Precision", self.precision)
        form.addRow("Device", self.device)
        form.addRow("Adapter", adapter_row)
        form.addRow("Trained adapters", self.adapters)
        form.addRow("", self.card)
        form.addRow("Speed-up kernels", self.kernels)
        download_row = QHBoxLayout()
        download_row.addWidget(self.download_button)
        download_row.addWidget(self.cancel_button)
        download_row.addWidget(self.progress, 1)
        download_row.addWidget(self.speed)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.load_button = self.buttons.addButton("Load", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Model"))
        layout.addWidget(self.choices, 1)
        layout.addLayout(form)
        layout.addWidget(self.details)
        layout.addLayout(download_row)
        layout.addWidget(self.error)
        layout.addWidget(self.use_folder_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.buttons)

        self._form = form
        self.choices.currentItemChanged.connect(self._on_choice_changed)
        self.folder.textChanged.connect(self._update_buttons)
        self.set_options(current)

    # -- options
    def choice(self) -> str:
        item = self.choices.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else DEMO

    def options(self) -> ModelOptions:
        choice = self.choice()
        source = self.folder.text().strip() if choice == FOLDER else choice
        return ModelOptions(
            source=source,
            precision=self.precision.currentText(),
            device=self.device.currentText(),
            adapter=self.adapter.text().strip(),
            kernels=self.kernels.currentText(),
        )

    def set_options(self, o: ModelOptions) -> None:
        row = next(
            (i for i in range(self.choices.count()) if self.choices.item(i).data(Qt.ItemDataRole.UserRole) == o.source),
            None,
        )
        if row is None and o.source:
            row = self.choices.count() - 1
            self.folder.setText(o.source)
        self.choices.setCurrentRow(0 if row is None else row)
        self.precision.setCurrentText(o.precision)
        if self.device.findText(o.device) < 0:
            self.device.addItem(o.device)
        self.device.setCurrentText(o.device)
        self.adapter.setText(o.adapter)
        self.list_adapters(extra=[o.adapter] if o.adapter else [])
        self.kernels.setCurrentText(o.kernels if o.kernels in KERNEL_MODES else "auto")
        self._offer_precisions()
        self._on_choice_changed()

    def _offer_precisions(self) -> None:
        """Only the precisions the chosen device runs: 4bit and 8bit greyed out (with the reason) on the
        CPU, where they would silently run fp32; a choice of them falls back to auto."""
        cpu = runs_on_cpu(self.device.currentText())
        model = self.precision.model()
        for i in range(self.precision.count()):
            gpu_only = self.precision.itemText(i) in GPU_ONLY_PRECISIONS
            model.item(i).setEnabled(not (cpu and gpu_only))
            tip = "needs a CUDA GPU; this device is the CPU" if cpu and gpu_only else ""
            self.precision.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        if cpu and self.precision.currentText() in GPU_ONLY_PRECISIONS:
            self.precision.setCurrentText("auto")

    # -- download
    def start_download(self) -> None:
        repo_id = self.choice()
        if repo_id in (DEMO, FOLDER) or self._job is not None:
            return
        self.error.hide()
        self.use_folder_button.hide()
        self._job = DownloadJob(repo_id, self._downloader)
        self._job.signals.progress.connect(self.on_download_progress)
        self._job.signals.finished.connect(self.on_download_finished)
        self._job.signals.failed.connect(self.on_download_failed)
        self._job.signals.cancelled.connect(self.on_download_cancelled)
        self._first_done = None
        self.progress.setValue(0)
        self.progress.show()
        self.speed.setText("starting...")
        self.cancel_button.show()
        self._update_buttons()
        QThreadPool.globalInstance().start(self._job)

    def cancel_download(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.speed.setText("cancelling...")

    def on_download_progress(self, p: DownloadProgress) -> None:
        if p.total:
            self.progress.setValue(int(1000 * p.done / p.total))
        if self._first_done is None:
            self._first_done = p.done  # a resumed download starts past zero
        gb = f"{p.done / 1024**3:.2f} / {p.total / 1024**3:.2f} GB"
        self.speed.setText(f"{p.speed_text(self._first_done)} · {gb}")
        self.progress.setToolTip(p.filename)

    def on_download_finished(self, path: str) -> None:
        self._job_done()
        self.progress.setValue(1000)
        self.speed.setText("downloaded")
        self.details.setText(f"In the cache: {path}")

    def on_download_failed(self, text: str) -> None:
        self._job_done()
        self.progress.hide()
        self.speed.clear()
        self.error.setText(text)
        self.error.show()
        self.use_folder_button.show()

    def on_download_cancelled(self) -> None:
        self.speed.setText("cancelled: Resume download continues where it stopped")
        self._job_done()

    def _job_done(self) -> None:
        self._job = None
        self.cancel_button.hide()
        self._update_buttons()

    def reject(self) -> None:
        self.cancel_download()
        super().reject()

    # -- folders
    def browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a model folder", self.folder.text())
        if path:
            self.folder.setText(path)
            self.choices.setCurrentRow(self.choices.count() - 1)

    def list_adapters(self, extra: list[str] = ()) -> None:  # type: ignore[assignment]
        """Fill the adapter list (no selection: choosing one is the user's act)."""
        from model.adapters import list_adapters

        self.adapters.blockSignals(True)
        self.adapters.clear()
        self._adapter_infos = list_adapters(extra, self._adapter_roots)
        for info in self._adapter_infos:
            item = QListWidgetItem(info.summary())
            item.setData(Qt.ItemDataRole.UserRole, str(info.path))
            item.setToolTip(str(info.path))
            self.adapters.addItem(item)
        if not self._adapter_infos:
            none = QListWidgetItem("none yet: train one in the Training tab")
            none.setFlags(Qt.ItemFlag.NoItemFlags)
            self.adapters.addItem(none)
        self.adapters.blockSignals(False)
        current = self.adapter.text().strip()
        for i, info in enumerate(self._adapter_infos):
            if current and str(info.path) == str(Path(current).expanduser().resolve()):
                self.adapters.setCurrentRow(i)

    def _on_adapter_chosen(self, *args: object) -> None:
        item = self.adapters.currentItem()
        path = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        info = next((a for a in self._adapter_infos if str(a.path) == path), None)
        if info is None:
            self.card.hide()
            return
        self.adapter.setText(str(info.path))
        self.card.setPlainText(info.card or "(this adapter has no card)")
        self.card.show()
        base = info.base_model
        if base and base != self.options().source:  # an adapter only fits the model it was trained on
            self.set_base(base)

    def set_base(self, source: str) -> None:
        """Choose ``source`` as the model (a listed one, else as a folder), keeping the other settings."""
        for i in range(self.choices.count()):
            if self.choices.item(i).data(Qt.ItemDataRole.UserRole) == source:
                self.choices.setCurrentRow(i)
                return
        self.folder.setText(source)
        self.choices.setCurrentRow(self.choices.count() - 1)

    def browse_adapter(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a LoRA adapter folder", self.adapter.text())
        if path:
            self.adapter.setText(path)

    def _use_folder(self) -> None:
        self.choices.setCurrentRow(self.choices.count() - 1)
        self.browse_folder()

    def _on_choice_changed(self, *args: object) -> None:
        choice = self.choice()
        self._form.setRowVisible(0, choice == FOLDER)
        self.error.hide()
        self.use_folder_button.hide()
        if choice == DEMO:
            self.details.setText(DEMO_TEXT)
        elif choice == FOLDER:
            self.details.setText("A Hugging Face model folder on this computer (safetensors weights only).")
        else:
            from model.hub import cached_model_path, is_offline

            cached = cached_model_path(choice)
            if cached is not None:
                self.details.setText(f"In the cache: {cached}")
            elif is_offline():
                self.details.setText(
                    "Not downloaded, and downloads are off (HF_HUB_OFFLINE). Point at a folder instead."
                )
                self.use_folder_button.show()
            else:
                self.details.setText("Not downloaded yet: press Download (or Load, which downloads first).")
        self._update_buttons()

    def _update_buttons(self) -> None:
        choice = self.choice()
        busy = self._job is not None
        self.download_button.setVisible(choice not in (DEMO, FOLDER))
        self.download_button.setEnabled(not busy)
        self.download_button.setText("Resume download" if "cancelled" in self.speed.text() else "Download")
        self.load_button.setEnabled(not busy and (choice != FOLDER or bool(self.folder.text().strip())))
