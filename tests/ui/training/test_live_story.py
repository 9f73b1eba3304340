"""The user story of issue 18, end to end in the window: my clips -> an adapter -> Live narrates my clip.

A project with an annotated clip (an event, a question on it and its answer) and an unannotated copy
of it, trained through the Training tab's own data path with its defaults (Balanced, the demo model),
then "Use in Live" and the clip played in Live under its default task (narrate): Live says the event's
caption when the event is over, and nothing else. Before issue 18 the same walk trained the question
as the clip's instruction and the copy as "say nothing", and Live stayed silent; with only the asked
conversation trained, it also answered the question nobody asked ("It is red." at 5 s and 6 s).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.settings import LiveOptions, SourceOptions
from model.protocol import RESPONSE
from model.train.synthetic import write_sliding_box

CAPTION = "A red box slides across the frame."
QUESTION, ANSWER = "What colour is the box?", "It is red."
TIMEOUT_MS = 1_200_000  # 800 steps on two cores, and the evaluation after them


@pytest.mark.slow
def test_my_clip_trained_in_the_tab_is_narrated_in_live(make_harness, tmp_path: Path, qtbot):
    footage = tmp_path / "footage"
    footage.mkdir()
    clip = write_sliding_box(footage / "box.mp4")
    shutil.copy(clip, footage / "box-copy.mp4")

    h = make_harness()  # the real loader: Live loads the adapter from disk
    w = h.window
    tab = w.training_tab
    assert tab.clips.open_project(tmp_path / "project")
    tab.clips.library_view.import_paths([footage / "box.mp4", footage / "box-copy.mp4"])
    library = tab.clips.library
    qtbot.waitUntil(lambda: len(library.clips) == 2, timeout=30_000)
    box = next(c for c in library.clips if c.name == "box.mp4")
    library.add_event(box.id, CAPTION, 3, 7)  # Standby on 3..6 s, the caption on second 7
    library.add_question(box.id, QUESTION, 5)
    library.add_answer(box.id, ANSWER, 6)

    panel = tab.panel
    panel.location.setText(str(tmp_path / "adapters"))
    assert panel.preset.currentData() == "balanced"  # the tab's defaults, untouched
    with qtbot.waitSignal(panel.training_running, timeout=60_000):
        assert panel.start(), panel.error.text()
    qtbot.waitUntil(lambda: not panel.running and panel.last_evaluation is not None, timeout=TIMEOUT_MS)
    adapter = panel.adapter_dir()
    assert (adapter / "adapter_model.safetensors").is_file()
    # The copy was left out, named; the clip trained as asked and unasked.
    assert panel.last_evaluation["split"] == "train" and len(panel.last_evaluation["clips"]) == 2

    with qtbot.waitSignal(h.controller.model_ready, timeout=120_000) as used:
        panel.use_button.click()
    assert used.args[0].options.adapter == str(adapter)
    assert adapter.name in w.status.fields()["model"]  # the active model is named

    h.run(SourceOptions(spec=str(clip), realtime=False), LiveOptions(), timeout=120_000)
    said = [(r["t"], r["text"].strip()) for r in h.session_records() if r.get("state") == RESPONSE]
    assert said == [(7.0, CAPTION)]
