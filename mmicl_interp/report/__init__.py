"""Self-contained HTML reports (plotly + circuitsvis inlined once; opens with no network)."""

from mmicl_interp.report.html import build_report_html, external_resources, write_report

__all__ = ["build_report_html", "external_resources", "write_report"]
