"""Check reflection config files without Airflow running.

    python -m airflow_provider_pdr.factory lint FILE_OR_FOLDER...
    pdr-lint FILE_OR_FOLDER...

Prints every problem as `file:line: reflection ...: key ...: message` and exits 1 if there is any, 0 if all files are valid.
"""

from __future__ import annotations

import argparse
import sys

from airflow_provider_pdr.factory.config import config_files, load_configs


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
                print(error)
    broken = sum(not r.ok for r in results)
    if broken:
        print(f"{broken} of {len(results)} file(s) invalid", file=sys.stderr)
    return 1 if broken else 0


def lint_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdr-lint", description="Check PDR reflection config files.")
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER")
    return lint(parser.parse_args(argv).paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_pdr.factory")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("lint", help="check config files").add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER")
    args = parser.parse_args(argv)
    return lint(args.paths)


if __name__ == "__main__":
    sys.exit(main())
