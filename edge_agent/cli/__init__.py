"""`edge-agent`: one command line for the appliance, the owner and the developer.

Each subcommand lives in its own module and is imported only when used, so `edge-agent
watch` on a laptop never loads a model runtime. Every expected failure ends in one line on
stderr and one of the exit codes below, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn

from edge_agent import __version__
from edge_agent.errors import EX_SOFTWARE, EX_USAGE, EdgeAgentError

EXIT_CODES = """exit codes:
  0   success
  1   `check` found a problem
  64  bad command line
  65  input is not usable media (empty, corrupt, not an image or video)
  66  input path missing or unreadable
  69  a model file is missing or altered, the requested accelerator is absent or fails
      its probe (crash, hang, wrong results), no broker could be reached (watch,
      dashboard, demo), or the dashboard's listen address is in use
  70  internal error (a bug: please report it)
  75  the state dir is in use by another daemon (run)
  78  invalid configuration (the message names the key)
  130 interrupted
"""

# subcommand -> module whose main(args) runs it
COMMANDS = {
    "analyze": "edge_agent.cli.analyze",
    "run": "edge_agent.cli.run",
    "bench": "edge_agent.cli.bench",
    "check": "edge_agent.cli.check",
    "config": "edge_agent.cli.config",
    "watch": "edge_agent.cli.watch",
    "dashboard": "edge_agent.cli.dashboard",
    "demo": "edge_agent.cli.demo",
    "eval": "edge_agent.cli.eval",
}


def warn(message: str) -> None:
    """One line on stderr for a problem that does not end the command."""
    print(f"edge-agent: warning: {message}", file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    """argparse with the documented code for a bad command line (64, not argparse's 2) and
    the same one line as every other failure: `edge-agent: error: ...`."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see {self.prog} --help)"
        self.exit(EX_USAGE, f"edge-agent: error: {message}{hint}\n")


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="config file (default: /etc/edge-agent/config.toml if present)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="edge-agent",
        description="On-device face emotion, age and gender detection.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser(
        "analyze",
        help="faces, emotion, age and gender in a file",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument("path", metavar="PATH", help="an image, a video or a folder of images")
    analyze.add_argument("--json", action="store_true", help="one JSON object per frame")
    analyze.add_argument(
        "--annotate", metavar="OUT", help="write the frames with boxes and labels (image or video)"
    )
    analyze.add_argument(
        "--force", action="store_true", help="let --annotate overwrite an existing file"
    )
    _add_config(analyze)

    run = commands.add_parser("run", help="the daemon: camera to MQTT and display")
    _add_config(run)

    bench = commands.add_parser("bench", help="measure speed and memory on a file")
    bench.add_argument("--source", metavar="FILE", help="video (default: the sample clip)")
    bench.add_argument(
        "--multiface",
        action="store_true",
        help="a clip made from the group photo: five faces at 100 to 22 px wide",
    )
    bench.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    bench.add_argument("--json", action="store_true", help="a JSON summary on the last line")
    bench.add_argument(
        "--mqtt",
        action="store_true",
        help="also publish to the config's broker (as <device>-bench, with its own client id);"
        " off by default",
    )
    _add_config(bench)

    check = commands.add_parser("check", help="test config, models, camera, broker, display")
    _add_config(check)

    config = commands.add_parser("config", help="validate or show the config file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_check = config_commands.add_parser("check", help="validate a config file")
    config_check.add_argument("file", metavar="FILE")
    config_show = config_commands.add_parser("show", help="print the effective config")
    _add_config(config_show)
    config_show.add_argument("--json", action="store_true", help="JSON instead of TOML")

    watch = commands.add_parser("watch", help="live terminal dashboard over MQTT")
    watch.add_argument("--device", metavar="ID", help="only this device (default: all)")
    _add_config(watch)

    dashboard = commands.add_parser("dashboard", help="live web page of the devices, over MQTT")
    dashboard.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where to serve the page (default: dashboard.listen, 127.0.0.1:8080); "
        "an address other than loopback needs a password file",
    )
    dashboard.add_argument(
        "--password-file",
        metavar="FILE",
        help="a file holding the password the page asks for (default: dashboard.password_file)",
    )
    dashboard.add_argument("--device", metavar="ID", help="only this device (default: all)")
    _add_config(dashboard)

    evaluate = commands.add_parser(
        "eval",
        help="measure emotion, age, gender and detection on labelled images",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "labels",
        metavar="LABELS.csv",
        help="columns: image, and any of emotion, age, gender, boxes",
    )
    evaluate.add_argument(
        "--images", metavar="DIR", help="where the images are (default: images/ beside the CSV)"
    )
    evaluate.add_argument("--split", metavar="NAME", help="only the rows whose `split` is NAME")
    evaluate.add_argument("--json", action="store_true", help="a JSON summary on the last line")
    evaluate.add_argument(
        "--report", metavar="DIR", help="write confusion.png, calibration.png and summary.md"
    )
    _add_config(evaluate)

    demo = commands.add_parser("demo", help="the sample clip through the whole appliance")
    demo.add_argument("--loop", action="store_true", help="keep replaying the clip")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        module = importlib.import_module(COMMANDS[args.command])
        return int(module.main(args))
    except EdgeAgentError as error:
        print(f"edge-agent: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # the last line of defence: one line, and the code for a bug
        logging.getLogger("edge_agent").debug("internal error", exc_info=True)
        print(f"edge-agent: internal error: {error!r} (run with -v for details)", file=sys.stderr)
        return EX_SOFTWARE
