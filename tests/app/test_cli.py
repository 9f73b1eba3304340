"""The command line's dispatch."""


def test_no_subcommand_means_the_desktop_app():
    from app.cli import parse_args

    assert parse_args([]).command == "gui"
    args = parse_args(["-v"])
    assert args.command == "gui" and args.verbose
    assert parse_args(["narrate", "--source", "x.mp4"]).command == "narrate"
