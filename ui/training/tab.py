"""The Training tab: 1. clips and their annotations, 2. training, evaluation and "Use in Live".

The tab only arranges the two pages; the clip library saves itself, the train panel runs the trainer
in a process of its own. The main window connects the panel's signals to the live model (unloaded
while training, reloaded after, or replaced by the new adapter).
"""

from __future__ import annotations

from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from app.settings import Settings
from ui.training.clips_page import ClipsPage
from ui.training.train_panel import TrainPanel


class TrainingTab(QWidget):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.clips = ClipsPage(settings)
        self.panel = TrainPanel(settings, self.training_data)
        self.pages = QTabWidget()
        self.pages.setDocumentMode(True)
        self.pages.addTab(self.clips, "1. Clips and annotations")
        self.pages.addTab(self.panel, "2. Train and evaluate")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pages)
        self.clips.changed.connect(lambda: self.panel.refresh_data(force=True))  # the estimate follows the annotations
        self.clips.project_opened.connect(lambda folder: self.panel.refresh_data())

    def training_data(self) -> tuple[list[str], str | None]:
        """What the trainer reads: the project's annotation file and its video folder. ValueError
        (the panel shows it and does not start) when there is nothing to train on yet, or when
        annotations still have problems (they are highlighted on the Clips page)."""
        library = self.clips.library
        if library is None or self.clips.annotation_path() is None:
            raise ValueError("Open or create a project first: 1. Clips and annotations > Project...")
        annotated = [c for c in library.clips if c.annotated]
        if not annotated:
            raise ValueError("No clip is annotated yet: mark events, answers or questions on the Clips page first.")
        problems = [(c, p) for c in annotated for p in library.problems(c)]
        if problems:
            clip, problem = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValueError(
                f"Fix the annotations first: {clip.name}: {problem.message}{more}. "
                "They are highlighted in red on the Clips page."
            )
        return [str(self.clips.annotation_path())], str(self.clips.video_prefix())
