"""Branding without a browser: a site's brand_dir overrides templates and static files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from signup.entrypoints.web.page import PACKAGE_STATIC, mount_static, page_router, render_page
from signup.settings import Settings

BRAND_LOGO = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><rect/></svg>\n'


@pytest.fixture
def brand_dir(tmp_path: Path) -> Path:
    (tmp_path / "templates" / "partials").mkdir(parents=True)
    (tmp_path / "templates" / "partials" / "footer.html").write_text(
        '<footer class="site-footer"><p>Acme Ltd, 1 Road Street · {{ site_name }}</p></footer>\n'
    )
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "brand.css").write_text(":root { --brand: #0b6e4f; }\n")
    (tmp_path / "static" / "logo.svg").write_text(BRAND_LOGO)
    return tmp_path


def _links(html: str) -> list[str]:
    return re.findall(r'<link rel="stylesheet" href="([^"]+)">', html)


def test_default_page_uses_package_assets_only() -> None:
    html = render_page(Settings(site_name="Naked Coders", brand_dir=None))
    assert "<title>Create your account · Naked Coders</title>" in html
    links = _links(html)
    assert len(links) == 1 and links[0].startswith("/static/signup.css?v=")
    assert re.search(r'<script src="/static/signup\.js\?v=[0-9a-f]{12}" defer></script>', html)
    assert "<style" not in html and " style=" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None


def test_site_name_is_escaped() -> None:
    html = render_page(Settings(site_name="<Bad & Co>", brand_dir=None))
    assert "&lt;Bad &amp; Co&gt;" in html
    assert "<Bad & Co>" not in html


def test_brand_dir_overrides_templates_css_and_logo(brand_dir: Path) -> None:
    settings = Settings(site_name="Acme", brand_dir=brand_dir)
    html = render_page(settings)
    assert "Acme Ltd, 1 Road Street · Acme" in html  # the site's own partial
    assert 'id="signup-form"' in html  # the package's form is still there
    links = _links(html)
    assert [link.split("?")[0] for link in links] == ["/static/signup.css", "/static/brand.css"]
    package_logo = re.search(r'src="/static/logo\.svg\?v=([0-9a-f]+)"', render_page(Settings()))
    brand_logo = re.search(r'src="/static/logo\.svg\?v=([0-9a-f]+)"', html)
    assert package_logo and brand_logo and package_logo.group(1) != brand_logo.group(1)


def test_static_files_come_from_brand_dir_first(brand_dir: Path) -> None:
    app = FastAPI()
    mount_static(app, Settings(brand_dir=brand_dir))
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/static")
    lookup = mount.app.lookup_path  # type: ignore[attr-defined]
    logo, _ = lookup("logo.svg")
    script, _ = lookup("signup.js")
    brand_css, _ = lookup("brand.css")
    assert Path(logo) == brand_dir / "static" / "logo.svg"
    assert Path(script) == PACKAGE_STATIC / "signup.js"
    assert Path(brand_css) == brand_dir / "static" / "brand.css"


def test_missing_brand_dir_falls_back_to_the_package(tmp_path: Path) -> None:
    settings = Settings(brand_dir=tmp_path / "does-not-exist")
    router = page_router(settings)
    # `/signup/` only redirects to `/signup` (relative: never built from Host).
    assert {getattr(r, "path", None) for r in router.routes} == {"/", "/signup", "/signup/"}
    assert 'id="signup-form"' in render_page(settings)
    app = FastAPI()
    mount_static(app, settings)
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/static")
    logo, _ = mount.app.lookup_path("logo.svg")  # type: ignore[attr-defined]
    assert Path(logo) == PACKAGE_STATIC / "logo.svg"
