"""``labvault patient report``: a patient's right-of-access document (GDPR art. 15).

One JSON file (``--out``) and an HTML rendering beside it, both mode 0600: the identity, every
order with its results, comments and attached reports, who accessed the record, and the
retention terms. Read as the local operator, audited under "right of access (GDPR art. 15)".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labvault.access.principal import local_operator
from labvault.cli_support import DataDir, console, fail, open_vault, uuid_argument
from labvault.config import DEFAULT_DATA_DIR
from labvault.errors import LabvaultError
from labvault.private_file import write_private
from labvault.retention_commands import policy_of
from labvault.vault import access_report


def patient_report(
    patient_id: str,
    out: Annotated[Path, typer.Option(help="JSON file (0600); the HTML goes beside it.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """The patient's data and who accessed it (right of access): JSON and HTML, mode 0600."""
    pid = uuid_argument(patient_id, "patient id", "labvault patient find")
    try:
        policy = policy_of(data_dir)
        with open_vault(data_dir) as vault:
            document = access_report.build(vault, local_operator(access_report.PURPOSE), pid,
                                           policy)
    except LabvaultError as exc:
        raise fail(exc) from None
    write_private(out, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    html = out.with_suffix(".html")
    write_private(html, access_report.render_html(document))
    results = sum(len(o["results"]) for o in document["orders"])
    console.print(f"right-of-access report of patient {pid}: {len(document['orders'])} orders, "
                  f"{results} results, {len(document['accesses'])} accesses; written to {out} "
                  f"and {html} (personal data in clear: hand it over, then delete it)",
                  highlight=False, soft_wrap=True)


__all__ = ["patient_report"]
