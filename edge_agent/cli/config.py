"""`edge-agent config check FILE` and `edge-agent config show`.

`check` validates one file exactly as the daemon would load it; `show` prints the effective
config (the file merged over the defaults) as TOML, or JSON with `--json`. The file holds no
secret (the MQTT password is read from its own file when the agent starts); a value under a
secret-looking key would still be printed as "***".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_agent import config as config_model


def main(args: argparse.Namespace) -> int:
    if args.config_command == "check":
        config_model.load(Path(args.file))  # raises ConfigError → one line, exit 78
        print(f"{args.file}: ok")
        return 0
    if args.config_command == "show":
        config = config_model.masked(config_model.load_or_default(args.config))
        if getattr(args, "json", False):
            json.dump(config_model.to_dict(config), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            source = config_model.resolve_path(args.config)
            print(f"# effective config ({source or 'built-in defaults'})")
            text = config_model.render_toml(config)
            if not config.device_id:  # say what it will be, not the empty string
                effective = json.dumps(config.effective_device_id, ensure_ascii=False)
                text = text.replace(
                    'device_id = ""\n',
                    f"device_id = {effective}  # empty in the file: the host name\n",
                    1,
                )
            sys.stdout.write(text)
        return 0
    if args.config_command == "template":
        sys.stdout.write(config_model.render_toml(config_model.Config(), notes=True))
        return 0
    raise AssertionError(args.config_command)


if __name__ == "__main__":  # `python -m edge_agent.cli.config template` regenerates the file
    sys.exit(main(argparse.Namespace(config_command=sys.argv[1] if len(sys.argv) > 1 else "")))
