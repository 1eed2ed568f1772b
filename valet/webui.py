"""The upload page at ``/api/ui``: static files from ``valet/ui`` and the JavaScript client's module
(``clients/js/valet-upload.js``, the npm package's one file, which ``.funcignore`` keeps in the deployment
package) with a strict Content-Security-Policy.

Off unless ``VALET_UI_ENABLED`` is true (``valet dev`` turns it on). The page may run scripts and styles
from this app only, and may connect only to this app and the storage account's blob endpoint, so a pasted
token cannot be sent anywhere else by anything the page loads.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from valet.errors import NotFound
from valet.settings import Settings

UI_DIR = Path(__file__).resolve().parent / "ui"
JS_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "js" / "valet-upload.js"
ASSETS = {  # route asset -> (file, media type); nothing else under /api/ui is served
    "": (UI_DIR / "index.html", "text/html"),
    "valet-upload.js": (JS_CLIENT, "text/javascript"),
    "valet-upload.css": (UI_DIR / "valet-upload.css", "text/css"),
    "valet-review.js": (UI_DIR / "valet-review.js", "text/javascript"),  # the review view (valet.review)
}


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    connect = dict.fromkeys(["'self'", _origin(settings.storage.account_url)])
    if settings.public_base_url:
        connect[_origin(settings.public_base_url)] = None
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"connect-src {' '.join(connect)}",
        "img-src 'self' data:",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ])


def serve(settings: Settings, asset: str) -> func.HttpResponse:
    """One of the page's files, or ``404`` when the page is off or the file is not one of ours."""
    if not settings.ui_enabled or asset not in ASSETS:
        raise NotFound("No such page.", code="not_found")
    path, media_type = ASSETS[asset]
    return func.HttpResponse(
        _read(path),
        status_code=200,
        mimetype=media_type,
        charset="utf-8",
        headers={
            "Content-Security-Policy": content_security_policy(settings),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Opener-Policy": "same-origin",
            "X-Frame-Options": "DENY",
        },
    )
