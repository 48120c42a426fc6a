"""Operator commands for the UTM standard: lint a file of links, build one link.

``utm-lint`` exits 0 when no link has an error finding (warnings allowed), 1
when any has, and 2 when the input or the dictionary cannot be read, so a team
can run it in its own CI before launching campaigns. ``utm-build`` prints the
tagged link, or the findings and exit code 1 when the parts break the standard.
``utm-site-dictionary`` keeps a site's own dictionary in Firestore for
``utm_check``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from shared import clients, utm
from shared.errors import BadRequest

# Header names of the link column in a CSV (compared in normal form), as
# written by hand or exported by Google Ads Editor and Yandex Direct Commander.
URL_HEADERS = ("url", "link", "href", "final_url", "ssylka", "adres_ssylki")
# Enough of the file for csv.Sniffer to tell the delimiter.
SNIFF_CHARS = 8192


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lint = subparsers.add_parser(
        "utm-lint",
        help="check the UTM tags of a file of links",
        description=(
            "Check every link in FILE against the UTM standard. A .csv file needs a "
            f"column named one of {', '.join(URL_HEADERS)} (otherwise its first column "
            "is read); any other file has one link per line, '#' starting a comment. "
            "Exit code: 0 clean or warnings only, 1 errors, 2 unreadable input."
        ),
    )
    lint.add_argument(
        "file", metavar="FILE", help="the links; '-' reads standard input"
    )
    lint.add_argument("--dictionary", metavar="F", help="a site dictionary (TOML)")
    lint.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object per finding (default: text)",
    )
    lint.set_defaults(func=run_lint)

    build = subparsers.add_parser(
        "utm-build",
        help="tag a URL for an ad platform",
        description=(
            "Print URL tagged for PLATFORM: utm_campaign from the parts, utm_content "
            "and utm_term from the platform's auto-parameters unless given."
        ),
    )
    build.add_argument("url", metavar="URL", help="the landing page")
    build.add_argument("--platform", required=True, help="google, yandex, vk, ...")
    build.add_argument("--vertical", help="campaign part: what is advertised")
    build.add_argument("--region", help="campaign part: where")
    build.add_argument("--goal", help="campaign part: leads, calls, sales, ...")
    build.add_argument("--month", help="campaign part: the launch month, YYYYMM")
    build.add_argument(
        "--part",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a campaign part by name, for a dictionary with other parts",
    )
    build.add_argument("--content", help="utm_content (default: the platform's)")
    build.add_argument("--term", help="utm_term (default: the platform's)")
    build.add_argument("--medium", help="utm_medium (default: the platform's)")
    build.add_argument("--dictionary", metavar="F", help="a site dictionary (TOML)")
    build.set_defaults(func=run_build)

    site = subparsers.add_parser(
        "utm-site-dictionary",
        help="put, show or delete a site's own UTM dictionary",
        description=(
            "With FILE: check the site's dictionary (TOML, the shape of "
            "shared/utm_dictionary.toml) and store it for utm_check. Without: print "
            "the stored one. --delete returns the site to the default dictionary."
        ),
    )
    site.add_argument("--site", required=True, help="the site id")
    site.add_argument("file", metavar="FILE", nargs="?", help="the site dictionary")
    site.add_argument("--delete", action="store_true", help="remove the site's own")
    site.set_defaults(func=run_site_dictionary)


def read_links(path: str) -> list[tuple[int, str]]:
    """(line number, link) for each link in the file; BadRequest if unreadable."""
    if path == "-":
        text = sys.stdin.read()
    else:
        try:
            # utf-8-sig: spreadsheet programs start a CSV with a byte order mark.
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            msg = (
                f"Expected a readable file of links at {path!r}, found: {exc.strerror}."
            )
            raise BadRequest(msg, code="utm_input") from None
        except UnicodeDecodeError:
            msg = f"Expected UTF-8 text in {path!r}, found bytes that are not."
            raise BadRequest(msg, code="utm_input") from None

    links = (
        _csv_links(text, path) if path.lower().endswith(".csv") else _text_links(text)
    )
    if not links:
        msg = f"Expected at least one link in {path!r}, found none."
        raise BadRequest(msg, code="utm_input")
    return links


def _text_links(text: str) -> list[tuple[int, str]]:
    links = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            links.append((number, line))
    return links


def _csv_links(text: str, path: str) -> list[tuple[int, str]]:
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:SNIFF_CHARS], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel  # one column, or too little text to tell

    reader = csv.reader(io.StringIO(text), dialect)
    links: list[tuple[int, str]] = []
    column: int | None = None
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if column is None:
                names = [utm.normal_form(cell) for cell in row]
                found = [i for i, name in enumerate(names) if name in URL_HEADERS]
                column = found[0] if found else 0
                if found:
                    continue
            cell = row[column].strip() if column < len(row) else ""
            if cell:
                links.append((reader.line_num, cell))
    except csv.Error as exc:
        where = f"line {reader.line_num}"
        msg = f"Expected CSV in {path!r}, found an error at {where}: {exc}."
        raise BadRequest(msg, code="utm_input") from None
    return links


def run_lint(args: argparse.Namespace) -> int:
    dictionary = utm.load_dictionary(args.dictionary)
    links = read_links(args.file)

    errors = warnings = 0
    for line, link in links:
        for finding in utm.validate_url(link, dictionary):
            if finding.severity == utm.ERROR:
                errors += 1
            else:
                warnings += 1
            print(_lint_line(args, line, link, finding))

    summary = (
        f"{_count(len(links), 'link')} checked: {_count(errors, 'error')}, "
        f"{_count(warnings, 'warning')}."
    )
    # In JSON mode stdout stays machine-readable.
    print(summary, file=sys.stderr if args.format == "json" else sys.stdout)
    return 1 if errors else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _lint_line(args: argparse.Namespace, line: int, link: str, f: utm.Finding) -> str:
    if args.format == "json":
        record = {"file": args.file, "line": line, "url": link, **f.to_dict()}
        return json.dumps(record, ensure_ascii=False)

    text = f"{args.file}:{line}: {f.severity} {f.code} {f.field}: {f.message}"
    if f.suggestion is not None:
        text += f" Suggestion: {f.suggestion}"
    return text


def run_build(args: argparse.Namespace) -> int:
    dictionary = utm.load_dictionary(args.dictionary)
    names = [part.name for part in dictionary.campaign_parts]
    given = {
        "vertical": args.vertical,
        "region": args.region,
        "goal": args.goal,
        "month": args.month,
    }
    campaign = {name: value for name, value in given.items() if value is not None}
    for item in args.part:
        name, sep, value = item.partition("=")
        if not sep:
            msg = f"Expected --part as NAME=VALUE, found {item!r}."
            raise BadRequest(msg, code="utm_input")
        campaign[name.strip()] = value

    missing = [name for name in names if name not in campaign]
    if missing:
        flags = ", ".join(f"--{name}" for name in missing)
        msg = f"Expected every campaign part, found no {flags}."
        raise BadRequest(msg, code="utm_input")

    link, findings = utm.compose_link(
        args.url,
        args.platform,
        campaign,
        content=args.content,
        term=args.term,
        medium=args.medium,
        dictionary=dictionary,
    )
    for f in findings:
        suggestion = f" Suggestion: {f.suggestion}" if f.suggestion is not None else ""
        print(
            f"{f.severity} {f.code} {f.field}: {f.message}{suggestion}", file=sys.stderr
        )
    if link is None or any(f.severity == utm.ERROR for f in findings):
        return 1

    print(link)
    return 0


def run_site_dictionary(args: argparse.Namespace) -> int:
    """Put (after checking it), show or delete a site's dictionary.

    Idempotent: putting the same file or deleting twice changes nothing more.
    """
    client = clients.firestore()
    if args.delete:
        if args.file:
            raise BadRequest("Expected FILE or --delete, found both.", code="utm_input")
        utm.delete_site_dictionary(client, args.site)
        print(f"site {args.site}: default UTM dictionary")
        return 0

    if args.file is None:
        text = utm.get_site_dictionary_text(client, args.site)
        if text is None:
            print(f"site {args.site} has no dictionary of its own", file=sys.stderr)
            return 1
        print(text, end="" if text.endswith("\n") else "\n")
        return 0

    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"Expected a readable UTF-8 dictionary at {args.file!r}, found: {exc}."
        raise BadRequest(msg, code="utm_input") from None
    utm.put_site_dictionary(client, args.site, text)
    print(f"site {args.site}: UTM dictionary stored ({len(text)} characters)")
    return 0
