"""Model manager: the short list with sizes, the demo entry, local folders, and downloads with
progress, cancel, resume and a clear message offline."""

from __future__ import annotations

import re
import threading

from PySide6.QtCore import Qt

from app.settings import ModelOptions
from model.catalog import KNOWN_MODELS
from model.device import KERNEL_MODES
from model.hub import DownloadCancelled
from ui.model_manager import DEMO, FOLDER, ModelManagerDialog


def pick(dialog: ModelManagerDialog, data: str) -> None:
    for i in range(dialog.choices.count()):
        if dialog.choices.item(i).data(Qt.ItemDataRole.UserRole) == data:
            dialog.choices.setCurrentRow(i)
            return
    raise AssertionError(data)


def test_lists_known_models_with_sizes_and_the_demo(qtbot):
    d = ModelManagerDialog(ModelOptions())
    qtbot.addWidget(d)
    texts = [d.choices.item(i).text() for i in range(d.choices.count())]
    assert "Demo shapes model" in texts[0] and "toy" in texts[0]
    for m, text in zip(KNOWN_MODELS, texts[1:], strict=False):
        assert m.model_id in text and f"{m.download_gb:g} GB" in text and f"{m.vram_4bit_gb:g} GB in 4-bit" in text
    assert d.choice() == DEMO and "knows nothing else" in d.details.text()
    assert d.options().source == "demo" and not d.download_button.isVisible()


def test_local_folder_and_precision_make_the_options(qtbot, tmp_path):
    opts = ModelOptions(source=str(tmp_path), precision="bf16", device="cpu", adapter="/x/lora", kernels="off")
    d = ModelManagerDialog(opts)
    qtbot.addWidget(d)
    assert d.choice() == FOLDER and d.folder.text() == str(tmp_path)
    assert d.options() == opts
    d.kernels.setCurrentText("auto")
    assert d.options().kernels == "auto"
    d.folder.clear()
    assert not d.load_button.isEnabled()  # a folder choice needs a folder


def test_kernels_offer_every_mode(qtbot):
    d = ModelManagerDialog(ModelOptions(kernels="triton"))
    qtbot.addWidget(d)
    assert [d.kernels.itemText(i) for i in range(d.kernels.count())] == list(KERNEL_MODES) == ["auto", "triton", "off"]
    assert d.kernels.currentText() == "triton" and d.options().kernels == "triton"
    d.set_options(ModelOptions(kernels="off"))
    assert d.options().kernels == "off"
    assert ModelOptions(kernels="fast").kernels == "auto"  # a stale setting falls back to the default


def test_offline_download_says_so_and_offers_a_folder(qtbot):
    d = ModelManagerDialog(ModelOptions())
    qtbot.addWidget(d)
    d.show()
    pick(d, KNOWN_MODELS[1].model_id)
    assert "HF_HUB_OFFLINE" in d.details.text()
    d.start_download()  # the real downloader, offline (tests set HF_HUB_OFFLINE=1)
    qtbot.waitUntil(lambda: d.error.isVisible(), timeout=30_000)
    assert "HF_HUB_OFFLINE" in d.error.text() and "local model folder" in d.error.text()
    assert d.use_folder_button.isVisible()


def test_download_progress_speed_cancel_and_resume(qtbot):
    calls: list[int] = []
    gate = threading.Event()

    def fake_download(repo_id, progress, cancel):
        calls.append(1)
        total = 100 * 1024**2
        start = 0 if len(calls) == 1 else 60 * 1024**2  # a second run resumes
        for done in range(start, total + 1, 10 * 1024**2):
            if cancel.is_set():
                raise DownloadCancelled("cancelled")
            progress(done, total, "model-00001.safetensors")
            if done >= 50 * 1024**2 and len(calls) == 1:
                gate.set()
                cancel.wait(10)
        return "/cache/models--x"

    d = ModelManagerDialog(ModelOptions(), downloader=fake_download)
    qtbot.addWidget(d)
    d.show()
    pick(d, KNOWN_MODELS[0].model_id)
    d.start_download()
    assert d.cancel_button.isVisible() and not d.download_button.isEnabled()
    assert gate.wait(10)  # half way, waiting for the cancel
    qtbot.waitUntil(lambda: d.progress.value() >= 300, timeout=10_000)  # updates are throttled to 10 a second
    assert re.fullmatch(r"\d+\.\d MB/s · 0\.0\d / 0\.10 GB", d.speed.text()), d.speed.text()
    d.cancel_download()
    qtbot.waitUntil(lambda: "cancelled" in d.speed.text(), timeout=10_000)
    assert d.download_button.text() == "Resume download" and d.download_button.isEnabled()
    d.start_download()
    qtbot.waitUntil(lambda: d.speed.text() == "downloaded", timeout=10_000)
    assert d.progress.value() == 1000 and "/cache/models--x" in d.details.text()
    assert len(calls) == 2


def _adapter(folder, base: str, steps: int, weights: bool = True):
    import json

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"\0")
    (folder / "train_config.json").write_text(json.dumps({"model": base}))
    (folder / "README.md").write_text(f"# Streamo LoRA adapter\n\n- **Steps:** {steps}\n<b>not markup</b>\n")
    return folder


def test_trained_adapters_are_listed_with_their_cards(qtbot, tmp_path, monkeypatch):
    from model.adapters import adapters_root

    monkeypatch.setenv("STREAMO_LIVE_DATA", str(tmp_path / "data"))
    mine = _adapter(adapters_root() / "kitchen", "demo", 40)
    _adapter(adapters_root() / "half-written", "demo", 3, weights=False)  # a run still going: not listed
    elsewhere = _adapter(tmp_path / "elsewhere" / "garden", KNOWN_MODELS[0].model_id, 7)
    d = ModelManagerDialog(ModelOptions(source=KNOWN_MODELS[-1].model_id, adapter=str(elsewhere)))
    qtbot.addWidget(d)
    rows = [d.adapters.item(i).text() for i in range(d.adapters.count())]
    assert len(rows) == 2 and any("kitchen" in r and "on demo" in r and "40 steps" in r for r in rows)
    assert d.adapters.currentItem().data(Qt.ItemDataRole.UserRole) == str(elsewhere.resolve())  # the one in use
    assert d.choice() == KNOWN_MODELS[0].model_id  # an adapter brings its own base model along
    d.adapters.setCurrentRow(rows.index(next(r for r in rows if "kitchen" in r)))
    assert d.options().adapter == str(mine.resolve()) and d.options().source == "demo"
    assert "<b>not markup</b>" in d.card.toPlainText() and not d.card.isHidden()


def test_no_trained_adapters_says_where_they_come_from(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMO_LIVE_DATA", str(tmp_path / "empty"))
    d = ModelManagerDialog(ModelOptions(source="demo"))
    qtbot.addWidget(d)
    assert d.adapters.count() == 1 and "Training tab" in d.adapters.item(0).text()
    assert d.options().adapter == ""


def test_precisions_the_cpu_cannot_run_are_not_offered_there(qtbot, tmp_path):
    d = ModelManagerDialog(ModelOptions(source=str(tmp_path), precision="4bit", device="cpu"))
    qtbot.addWidget(d)
    model = d.precision.model()
    row = {d.precision.itemText(i): i for i in range(d.precision.count())}
    assert d.options().precision == "auto"  # not a 4bit that would silently run fp32 and be saved
    assert not model.item(row["4bit"]).isEnabled() and not model.item(row["8bit"]).isEnabled()
    assert "CUDA" in d.precision.itemData(row["4bit"], Qt.ItemDataRole.ToolTipRole)
    assert model.item(row["bf16"]).isEnabled()
    if d.device.findText("cuda") < 0:
        d.device.addItem("cuda")
    d.device.setCurrentText("cuda")  # a GPU: every precision again
    assert model.item(row["4bit"]).isEnabled() and not d.precision.itemData(row["4bit"], Qt.ItemDataRole.ToolTipRole)
