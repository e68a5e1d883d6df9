"""Data Docs: Great Expectations' own validation-result page for every gate run, readable offline.

A gate run is a category stage's suite (with its schema and accounting gates) or merge's release
gate. Its page is rendered by GX's Data Docs renderer (`ValidationResultsPageRenderer`, then
`DefaultJinjaPageView`) from the result the stage wrote to its metrics (`cqia.gates.gx_worker.SuiteRun.result`),
so it is the page a GX user knows: Overview with the suite and status, the Statistics table, Info
(GX version, run name, run time), then one section of table-level expectations and one per
column, each expectation in GX's words with its status, observed value and failing count. One
section is ours, in GX's components: "Gate run" (the other gates, the inputs, sample ids of
failing rows, the suite's notes).

Two things GX's page does that a DVC output cannot:

- It loads Bootstrap, jQuery, Font Awesome and more from CDNs, and its logo from S3. `offline`
  removes every <link>, <script> and <img> and GX's own <style> blocks, and puts in `STYLE`, a
  stylesheet written here for GX's markup. No page references anything outside itself, and the
  pages read with scripts off; GX's "Failed Only" filter works in CSS.
- It stamps the clock (run time, a timestamp on the logo URL, random element ids). Here the run
  name is the gate (`category@zhihu`, `merge`), the run time is fixed at `RUN_TIME` (the stages
  record no clock time; the run is identified by its inputs), and element ids are counted, so
  `dvc repro` reproduces every page byte for byte.

`index_page` is ours: one row per gate run, linking its page, then the report's static SVG charts
(files of the report, shown with <img>: nothing from elsewhere). Importing great_expectations costs
about 2 s, so only `gate_page` imports it, on first use; the rest of this module is plain strings.
"""

from __future__ import annotations

import functools
import html
import os
import re
from types import SimpleNamespace
from typing import Any, Iterable

from cqia.common.errors import CqiaError

RUN_TIME = "1970-01-01T00:00:00Z"   # GX's Run Time field: fixed, as the stages record no clock time
GATE_SECTION = "Gate run"

# Written for the markup of GX's page.j2 and its components (navbar, sidebar cards, sections with
# an .alert-secondary header, tables, badges, Font Awesome <i> icons); no third-party CSS.
STYLE = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--head:#eaeef2;--bg:#fff;
  --ok:#1a7f37;--bad:#cf222e;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--soft:#151b23;
  --head:#212830;--bg:#0d1117;--ok:#3fb950;--bad:#f85149;--link:#4493f8}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",
  "PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif}
a{color:var(--link)}
code,pre{font:.9em/1.4 ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
h1{font-size:1.4rem;margin:0 0 1rem}h4{font-size:1.2rem;margin:0}h5{font-size:1.05rem;margin:0}
h6,.h6{font-size:.95rem;font-weight:600;margin:0}p{margin:.25rem 0}.lead{color:var(--muted)}
[hidden]{display:none}
/* Top bar: the GX name (its logo is not fetched) and the page's breadcrumb. */
body>nav.navbar{display:flex;align-items:center;gap:0 1rem;height:auto!important;padding:.6rem 1.5rem;
  background:var(--soft);border-bottom:1px solid var(--line)}
body>nav.navbar nav,.breadcrumb{display:flex;flex-wrap:wrap;align-items:center;gap:0 1rem}
.navbar-brand a{color:var(--fg);font-weight:700;font-size:1.1rem;text-decoration:none}
.breadcrumb{list-style:none;margin:0;padding:0;gap:0;color:var(--muted)}
.breadcrumb-item+.breadcrumb-item::before{content:"/";padding:0 .5rem}
/* GX's grid: a sidebar (about, actions, contents) beside the sections. */
body>.container-fluid{padding:1.25rem 1.5rem}
body>.container-fluid>.row{display:flex;gap:1.5rem;align-items:flex-start}
.col-lg-2{flex:0 0 14rem}.col-md-10{flex:1;min-width:0}
.sticky{position:sticky;top:1rem}
.ge-section{margin-bottom:1rem}
.ge-section>.row{display:flex;flex-wrap:wrap;align-items:flex-start}
.table-responsive{flex:0 0 100%;min-width:0;overflow-x:auto}
.col-12{flex:0 0 100%;min-width:0}.col-6{flex:0 0 50%;min-width:0;padding-right:1rem}
@media (max-width:50rem){body>.container-fluid>.row{flex-direction:column;align-items:stretch}
  .col-lg-2,.col-6{flex:0 0 100%;width:100%}}
/* Cards, section headers, contents. */
.card{border:1px solid var(--line);border-radius:6px;margin-bottom:1rem}
.card-header{padding:.35rem .75rem;background:var(--soft);border-bottom:1px solid var(--line)}
.card-body{padding:.5rem .75rem}
.alert{padding:.55rem .9rem;border:1px solid var(--line);border-radius:6px;margin-bottom:.5rem}
.alert-secondary{background:var(--head)}
.nav{list-style:none;margin:0;padding:0}
.nav-link{display:block;padding:.1rem .25rem;text-decoration:none;word-break:normal!important}
/* Tables, badges (expectation arguments), status icons (Font Awesome classes, drawn here). */
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;vertical-align:top;padding:.4rem .6rem;border-top:1px solid var(--line)}
thead th{background:var(--soft);border-bottom:2px solid var(--line)}
.table-sm th,.table-sm td{padding:.2rem .5rem}
.table-bordered th,.table-bordered td{border:1px solid var(--line)}
.show-scrollbars{overflow:auto;max-height:80vh}
.badge{display:inline-block;padding:0 .4rem;border:1px solid var(--line);border-radius:.6rem;
  background:var(--soft);font:.85em/1.5 ui-monospace,Menlo,Consolas,monospace}
.badge-danger{background:var(--bad);border-color:var(--bad);color:#fff}
.text-success{color:var(--ok)}.text-danger{color:var(--bad)}
i.fas{font-style:normal;font-weight:700}
.fa-check-circle::before{content:"\\2714"}.fa-times::before{content:"\\2718"}
.fa-question-circle::before{content:"?"}.fa-exclamation-triangle::before{content:"!"}
/* "Show more info...": no script opens it, so what it hides is always shown, under a label. */
a[data-toggle="collapse"]{color:var(--muted);font-weight:600;text-decoration:none;pointer-events:none}
/* GX's Validation Filter without scripts: the labels are the buttons of two radio inputs. */
.btn-group{display:flex}.btn-group input{position:absolute;opacity:0}
.btn{flex:1;padding:.2rem .5rem;border:1px solid var(--link);color:var(--link);text-align:center;cursor:pointer}
.btn:has(input:checked){background:var(--link);color:var(--bg)}
body:has(#option2:checked) tr:has(>.hide-succeeded-validation-target-child),
body:has(#option2:checked) .ge-section:has(.hide-succeeded-validations-column-section-target-child){display:none}
/* The index's charts: SVG files of the report, on white as they were drawn. */
.charts{display:flex;flex-wrap:wrap;gap:1.5rem;margin:0;padding:0;list-style:none}
.charts img{display:block;max-width:100%;height:auto;background:#fff}
h2{font-size:1.2rem;margin:1.5rem 0 .75rem}
/* Tooltips GX puts on some values. */
.cooltip{position:relative}.cooltip .top{display:none}
.cooltip:hover .top{display:block;position:absolute;bottom:100%;left:0;z-index:2;min-width:12rem;
  padding:.4rem .6rem;border-radius:6px;background:var(--fg);color:var(--bg)}
""".strip()

# What a browser would fetch: a tag that loads something, or an attribute or style that does.
# None may be left after `offline`.
FETCHES = re.compile(r"<(?:link|script|img|iframe|object|embed|source|video|audio)\b"
                     r"|<[a-z][^>]*\s(?:src|srcset|poster)\s*=[^>]*>|<[a-z][^>]*(?:url\(|@import)[^>]*>",
                     re.IGNORECASE)

_REMOVE = [re.compile(p, re.IGNORECASE | re.DOTALL) for p in (
    r"<link\b[^>]*>",                          # CDN style sheets, Font Awesome, the favicon
    r"<script\b[^>]*>.*?</script>",            # CDN scripts and GX's inline jQuery snippets
    r"<style\b[^>]*>.*?</style>",              # GX's default styles (dark mode loads a logo from S3)
    r"<title>.*?</title>",                     # GX writes two, one of them empty; ours goes in below
    r"<footer\b.*?</footer>",                  # GX's newsletter link
    r'\sonclick="[^"]*"',                     # handlers that called the scripts just removed
)]
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ALT = re.compile(r"""\balt\s*=\s*"([^"]*)\"""", re.IGNORECASE)
_HOME = re.compile(r'href="(?:\.\./)+index\.html"')                    # GX's site index, 4 levels up
_SUITE_LINK = re.compile(r'<a href="(?:\.\./)+expectations/[^"]*"\s*>(.*?)</a>', re.DOTALL)
_BLANK_LINES = re.compile(r"[ \t]+$|\n(?=\s*\n)", re.MULTILINE)


def offline(page: str, title: str, suite_href: str = "") -> str:
    """GX's HTML with nothing fetched from elsewhere: CDN tags, scripts, the logo image and GX's
    styles out, `STYLE` in. Links that pointed into a GX site now point at this site's index and,
    if `suite_href` is given, at the suite file (else the suite name is left as text)."""
    for pattern in _REMOVE:
        page = pattern.sub("", page)
    page = _IMG.sub(_alt_text, page)
    page = _HOME.sub('href="index.html"', page)
    page = _SUITE_LINK.sub((lambda m: f'<a href="{_e(suite_href)}">{m.group(1)}</a>') if suite_href
                           else (lambda m: m.group(1)), page)
    page = page.replace("</head>", f"<title>{_e(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>", 1)
    page = _BLANK_LINES.sub("", page)
    found = FETCHES.search(page) or re.search(r"url\(|@import", STYLE)
    if found:
        end = found.string.find(">", found.start())
        snippet = found.string[found.start():end + 1 if end >= 0 else None][:120]
        raise CqiaError(f"the Data Docs page '{title}' still fetches something: {snippet}", where="cqia/report/datadocs.py",
                        fix="great_expectations' page template has changed; extend `offline` to remove it")
    return page


def _alt_text(img: re.Match) -> str:
    alt = _ALT.search(img.group(0))
    return f"<span>{alt.group(1) if alt else ''}</span>"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


@functools.cache
def _gx() -> SimpleNamespace:
    """GX's classes, imported once (about 2 s), and a page view that never reads the clock."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.registry import get_expectation_impl
    from great_expectations.render import (
        RenderedHeaderContent,
        RenderedSectionContent,
        RenderedStringTemplateContent,
        RenderedTableContent,
        TextContent,
    )
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView
    from great_expectations.validator.validation_statistics import calc_validation_statistics
    from jinja2 import pass_context

    class PageView(DefaultJinjaPageView):
        """GX's page view with counted element ids (GX: uuid4) and URLs without a timestamp."""

        def render(self, document, template=None, **kwargs):
            self._ids = 0
            return super().render(document, template, **kwargs)

        def generate_html_element_uuid(self, prefix=None):
            self._ids += 1
            return f"{prefix or ''}{self._ids}"

        @pass_context
        def add_data_context_id_to_url(self, jinja_context, url, add_datetime=True):
            return url

    return SimpleNamespace(**locals())


def validation_result(gx: dict[str, Any], run_name: str, data_asset: str):
    """GX's ExpectationSuiteValidationResult for one gate run, from the result the stage wrote.

    Map expectations (a test per row) get GX's element_count, unexpected_count and unexpected_percent
    (of all rows validated); an observed value the stage kept (a failing aggregate, an exception)
    becomes GX's observed_value.
    """
    g = _gx()
    map_types = (g.ColumnMapExpectation, g.ColumnPairMapExpectation, g.MulticolumnMapExpectation)
    rows = int(gx.get("rows") or 0)
    results = []
    for exp in gx.get("expectations", []):
        kwargs = dict(exp.get("kwargs") or {})
        if exp.get("column") is not None:
            kwargs = {"column": exp["column"], **kwargs}
        config = g.ExpectationConfiguration(type=exp["expectation"], kwargs=kwargs)
        result: dict[str, Any] = {}
        if issubclass(g.get_expectation_impl(exp["expectation"]), map_types):
            unexpected = int(exp.get("unexpected_count") or 0)
            result = {"element_count": rows, "unexpected_count": unexpected,
                      "unexpected_percent": 100 * unexpected / rows if rows else 0.0}
        if exp.get("observed") is not None:
            result["observed_value"] = exp["observed"]
        results.append(g.ExpectationValidationResult(success=bool(exp.get("success")),
                                                     expectation_config=config, result=result))
    stats = g.calc_validation_statistics(results)
    return g.ExpectationSuiteValidationResult(
        success=bool(gx.get("success")), results=results, suite_name=gx.get("suite") or "suite",
        statistics={"evaluated_expectations": stats.evaluated_expectations,
                    "successful_expectations": stats.successful_expectations,
                    "unsuccessful_expectations": stats.unsuccessful_expectations,
                    "success_percent": stats.success_percent},
        meta={"great_expectations_version": g.great_expectations.__version__,
              "run_id": {"run_name": run_name, "run_time": RUN_TIME},
              "batch_spec": {"data_asset_name": data_asset}})


def _text(value: Any, tag: str = "span", classes: Iterable[str] = ()) -> Any:
    """Text in a GX string template: GX escapes the value."""
    template: dict[str, Any] = {"template": "$value", "params": {"value": str(value)}, "tag": tag}
    if classes:
        template["styling"] = {"classes": list(classes)}
    return _gx().RenderedStringTemplateContent(content_block_type="string_template", string_template=template)


def _status(success: bool) -> str:
    """GX's status icon (its markup), with the word."""
    icon, word = ("fa-check-circle text-success", "passed") if success else ("fa-times text-danger", "failed")
    return f'<i class="fas {icon}" aria-hidden="true"></i> {word}'


def _gate_section(gx: dict[str, Any], notes: str, other_gates: Iterable[tuple[str, bool, str]],
                  context: Iterable[tuple[str, Any]]):
    """Our section, in GX's components: the inputs, the other gates, failing rows, the suite's notes."""
    g = _gx()
    table_style = {"classes": ["col-12", "table-responsive", "mt-1"], "body": {"classes": ["table", "table-sm"]}}
    blocks = [g.RenderedHeaderContent(
        header=_text(GATE_SECTION, "h5", ["m-0"]), content_block_type="header",
        styling={"classes": ["col-12", "p-0"], "header": {"classes": ["alert", "alert-secondary"]}})]
    rows = [[_text(label), _text(value)] for label, value in [("rows validated", gx.get("rows", 0)), *context]]
    blocks.append(g.RenderedTableContent(table=rows, header=_text("Inputs", "h6", ["m-0"]), styling=table_style))
    expectations = gx.get("expectations", [])
    passed = sum(1 for e in expectations if e.get("success"))
    gates = [[_status(bool(gx.get("success"))), _text(f"Great Expectations suite {gx.get('suite', '')}"),
              _text(f"{passed} of {len(expectations)} expectations passed (this page)")]]
    gates += [[_status(ok), _text(name), _text(detail)] for name, ok, detail in other_gates]
    blocks.append(g.RenderedTableContent(table=gates, header=_text("Gates", "h6", ["m-0"]),
                                         header_row=["Status", "Gate", "Detail"], styling=table_style))
    failing = [[_text(e["expectation"]), _text(e.get("column") or ""), _text(", ".join(e["sample_ids"]))]
               for e in expectations if e.get("sample_ids")]
    if failing:
        blocks.append(g.RenderedTableContent(
            table=failing, header=_text("Failing rows (sample ids)", "h6", ["m-0"]),
            header_row=["Expectation", "Column", "id"], styling=table_style))
    if notes:
        blocks.append(g.TextContent(text=[_text(notes)], header=_text("Suite notes", "h6", ["m-0"]),
                                    styling={"classes": ["col-12", "mt-1"]}))
    return g.RenderedSectionContent(section_name=GATE_SECTION, content_blocks=blocks)


def gate_page(gx: dict[str, Any], run_name: str, data_asset: str, *, notes: str = "", suite_href: str = "",
              other_gates: Iterable[tuple[str, bool, str]] = (), context: Iterable[tuple[str, Any]] = ()) -> str:
    """GX's Data Docs page of one gate run, offline (see `offline`).

    `gx` is what `cqia.gates.gx_worker.SuiteRun.result()` returned (as the stage wrote it); `run_name` names the
    gate run (`category@zhihu`); `other_gates` are (name, success, detail) and `context` (label,
    value) rows of the "Gate run" section, which follows GX's Overview.
    """
    g = _gx()
    document = g.ValidationResultsPageRenderer().render(validation_result(gx, run_name, data_asset))
    document.sections.insert(1, _gate_section(gx, notes, other_gates, context))
    return offline(g.PageView().render(document), document.page_title, suite_href)


def index_page(title: str, pages: list[dict[str, Any]], charts: Iterable[dict[str, str]] = ()) -> str:
    """Ours: one row per gate run, linking its GX page, then the charts. pages: [{"href", "name", "suite",
    "rows", "success", "evaluated", "unsuccessful"}]; charts: [{"href", "title"}], each an SVG file
    (href relative to the page)."""
    body = [f'<nav class="navbar"><span class="navbar-brand"><a href="index.html">Data Docs</a></span>'
            f'<span class="lead">{_e(title)}</span></nav>',
            '<div class="container-fluid">', f'<h1>{_e(title)}</h1>',
            '<p class="lead">One page per gate run, rendered by Great Expectations from the results the stages '
            'wrote. Offline: nothing is fetched from elsewhere.</p>',
            '<table class="table">', '<thead><tr><th>Status</th><th>Gate run</th><th>Suite</th><th>Rows</th>'
            '<th>Expectations</th><th>Unsuccessful</th></tr></thead>', '<tbody>']
    for page in pages:
        body.append(f'<tr><td>{_status(bool(page["success"]))}</td>'
                    f'<td><a href="{_e(page["href"])}">{_e(page["name"])}</a></td><td>{_e(page["suite"])}</td>'
                    f'<td>{_e(page["rows"])}</td><td>{_e(page["evaluated"])}</td><td>{_e(page["unsuccessful"])}</td></tr>')
    body += ['</tbody>', '</table>']
    charts = list(charts)
    if charts:
        body += ['<h2 id="charts">Charts</h2>',
                 '<p class="lead">The report&#39;s plots as SVG files, drawn when the report was built: they show '
                 'without a network, unlike <code>dvc plots show</code>, whose page loads Vega from a CDN.</p>',
                 '<ul class="charts">']
        body += [f'<li><a href="{_e(c["href"])}"><img src="{_e(c["href"])}" alt="{_e(c["title"])}"></a></li>'
                 for c in charts]
        body += ['</ul>']
    body += ['</div>']
    return "\n".join(['<!DOCTYPE html>', '<html>', '<head>', '<meta charset="UTF-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1.0">',
                      f'<title>{_e(title)}</title>', f'<style>\n{STYLE}\n</style>', '</head>', '<body>',
                      *body, '</body>', '</html>', ''])
