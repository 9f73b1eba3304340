"""Overlay appearance: font, size, text and background colours, width. Changes preview live."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QColorDialog,
    QDialog,
    QDialogButtonBox,
    QFontComboBox,
    QFormLayout,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app.settings import OverlayOptions


class OverlaySettingsDialog(QDialog):
    previewed = Signal(object)  # OverlayOptions while the user edits

    def __init__(self, options: OverlayOptions, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Overlay appearance")
        self._options = options
        self.font_box = QFontComboBox()
        if options.font_family:
            self.font_box.setCurrentFont(QFont(options.font_family))
        self.size = QSpinBox(minimum=8, maximum=96, suffix=" pt", value=options.font_size)
        self.width_box = QSpinBox(minimum=200, maximum=4000, singleStep=20, suffix=" px", value=options.width)
        self.text_button = QPushButton()
        self.background_button = QPushButton()
        self.text_button.clicked.connect(lambda: self._pick("text_color"))
        self.background_button.clicked.connect(lambda: self._pick("background_color"))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Font", self.font_box)
        form.addRow("Size", self.size)
        form.addRow("Width", self.width_box)
        form.addRow("Text colour", self.text_button)
        form.addRow("Background", self.background_button)
        form.addRow(buttons)
        self.font_box.currentFontChanged.connect(self._changed)
        self.size.valueChanged.connect(self._changed)
        self.width_box.valueChanged.connect(self._changed)
        self._show_colours()

    def options(self) -> OverlayOptions:
        return replace(
            self._options,
            font_family=self.font_box.currentFont().family(),
            font_size=self.size.value(),
            width=self.width_box.value(),
        )

    def _pick(self, field: str) -> None:
        current = QColor(getattr(self._options, field))
        color = QColorDialog.getColor(current, self, "Choose a colour", QColorDialog.ColorDialogOption.ShowAlphaChannel)
        if color.isValid():
            self._options = replace(self._options, **{field: color.name(QColor.NameFormat.HexArgb)})
            self._show_colours()
            self._changed()

    def _show_colours(self) -> None:
        for button, value in (
            (self.text_button, self._options.text_color),
            (self.background_button, self._options.background_color),
        ):
            button.setText(colour_words(value))
            button.setToolTip("Click to choose a colour and how see-through it is")
            c = QColor(value)
            button.setStyleSheet(
                f"background: rgba({c.red()},{c.green()},{c.blue()},{c.alpha()}); color: {'black' if c.lightness() > 128 else 'white'}"
            )

    def _changed(self, *args: object) -> None:
        self.previewed.emit(self.options())


def colour_words(value: str) -> str:
    """'#b4000000' -> 'black, 71% opaque': what a person reads instead of an ARGB code."""
    c = QColor(value)
    if not c.isValid():
        return value
    name = c.name(QColor.NameFormat.HexRgb)
    words = {"#000000": "black", "#ffffff": "white"}.get(name, name)
    return words if c.alpha() == 255 else f"{words}, {round(c.alpha() / 255 * 100)}% opaque"
