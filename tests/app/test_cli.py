"""The command line's dispatch."""


def test_no_subcommand_means_the_desktop_app():
    from app.cli import parse_args

    assert parse_args([]).command == "gui"
    args = parse_args(["-v"])
    assert args.command == "gui" and args.verbose
    assert parse_args(["narrate", "--source", "x.mp4"]).command == "narrate"


def test_gui_without_a_display_gives_advice_not_an_abort(capsys):
    import pytest

    from app.errors import CliError
    from app.gui_cmd import check_display

    with pytest.raises(CliError, match="no display.*streamo-live narrate"):
        check_display({}, "linux")
    check_display({"DISPLAY": ":0"}, "linux")
    check_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    check_display({}, "win32")  # Windows and macOS always have a screen session
