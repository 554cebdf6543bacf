"""Check reflection config files without Airflow running.

    python -m airflow_provider_pdr.factory lint FILE_OR_FOLDER...
    pdr-lint FILE_OR_FOLDER...
    pdr-lint --schema > pdr-config.schema.json

Prints every problem to stderr as `file:line: reflection ...: key ...: message`, then how many files
are invalid, and exits 1 if there is any; valid files are listed on stdout and the exit status is 0.
`--schema` prints the JSON Schema of a config file, for editors.
"""

from __future__ import annotations

import argparse
import json
import sys

from airflow_provider_pdr.factory.config import config_files, load_configs
from airflow_provider_pdr.factory.model import config_schema


def lint(paths: list[str]) -> int:
    files = config_files(paths)
    if not files:
        print(f"no config files (*.yaml, *.yml) in {' '.join(paths)}", file=sys.stderr)
        return 1
    results = load_configs(files)
    for result in results:
        if result.ok:
            dag_ids = ", ".join(r.dag_id for r in result.reflections)
            print(f"ok    {result.path}: {len(result.reflections)} reflection(s): {dag_ids}")
        else:
            for error in result.errors:  # `file:line: message`, as editors and CI annotations expect
                print(error, file=sys.stderr)
    broken = sum(not r.ok for r in results)
    if broken:
        print(f"{broken} of {len(results)} file(s) invalid", file=sys.stderr)
    return 1 if broken else 0


def _add_lint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="FILE_OR_FOLDER")
    parser.add_argument("--schema", action="store_true", help="print the JSON Schema of a config file and exit")


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(config_schema(), indent=2))
        return 0
    if not args.paths:
        parser.error("give at least one FILE_OR_FOLDER (or --schema)")
    return lint(args.paths)


def lint_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdr-lint", description="Check PDR reflection config files.")
    _add_lint_arguments(parser)
    return _run(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_pdr.factory")
    commands = parser.add_subparsers(dest="command", required=True)
    lint_parser = commands.add_parser("lint", help="check config files")
    _add_lint_arguments(lint_parser)
    return _run(lint_parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
