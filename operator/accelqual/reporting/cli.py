"""`accelqual report SOURCE [--html PATH] [--markdown PATH]`: render a qualification run for people.

SOURCE is a run summary (local file, run directory or s3:// URI), one ProbeReport JSON,
or `accelqual simulate --json` output. Node reports read beside a summary are verified
against the SHA-256 digests the summary records; --sha256 checks the summary itself against
the digest the Qualification's status records (`kubectl get aq NAME -o
jsonpath='{.status.reportSHA256}'`), which closes the chain. Without --html or --markdown, the
Markdown report goes to stdout.

Exit status: 0 rendered; 2 the source cannot be read or is not a run; 3 evidence does
not match its recorded digest (it was changed after the run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_SOURCE = 2
EXIT_INTEGRITY = 3


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="accelqual report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="summary.json, a run directory, a ProbeReport JSON, simulate --json output, or s3://BUCKET/KEY")
    p.add_argument("--html", metavar="PATH", help="write the self-contained HTML report here")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown report here ('-' for stdout)")
    p.add_argument("--endpoint", default=None,
                   help="S3 endpoint URL for MinIO/Ceph (default: AWS, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL); "
                        "credentials come from the environment (AWS_ACCESS_KEY_ID..., AWS_PROFILE, web identity)")
    p.add_argument("--region", default=None, help="S3 region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    p.add_argument("--sha256", metavar="DIGEST", default=None,
                   help="the SHA-256 SOURCE must have: the Qualification's status.reportSHA256 for a summary, a node's "
                        "accelqual.io/report-sha256 annotation for one report")
    p.add_argument("--all-reports", action="store_true",
                   help="read and verify every node's report, not only those of nodes that did not pass")
    return p.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    from accelqual.reporting.markdown import render_markdown
    from accelqual.reporting.sources import IntegrityError, S3Options, SourceError, load

    try:
        doc = load(args.source, s3=S3Options(endpoint=args.endpoint, region=args.region),
                   all_reports=args.all_reports, expect_sha256=args.sha256)
    except IntegrityError as exc:
        print(f"accelqual report: EVIDENCE INTEGRITY FAILURE: {exc}", file=sys.stderr)
        return EXIT_INTEGRITY
    except SourceError as exc:
        print(f"accelqual report: {exc}", file=sys.stderr)
        return EXIT_SOURCE
    try:
        if args.html:
            from accelqual.reporting.html import render_html

            Path(args.html).write_text(render_html(doc), encoding="utf-8")
            print(f"HTML report of {doc.qualification} run {doc.run_id}: {args.html}", file=sys.stderr)
        if args.markdown and args.markdown != "-":
            Path(args.markdown).write_text(render_markdown(doc), encoding="utf-8")
            print(f"Markdown report of {doc.qualification} run {doc.run_id}: {args.markdown}", file=sys.stderr)
        elif args.markdown == "-" or not args.html:
            sys.stdout.write(render_markdown(doc))
    except OSError as exc:
        print(f"accelqual report: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_SOURCE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
