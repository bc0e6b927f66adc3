"""A report document (sections of paragraphs, tables, figures, notes) rendered twice: a self-contained
``index.html`` (inline CSS, no script, only relative links into the report folder) and a GitHub
``README.md`` with the same content."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Table:
    frame: pd.DataFrame  # display strings
    bold: pd.DataFrame | None = None  # same shape: True where the cell is the best of its column
    csv: str | None = None  # the CSV file (relative path) holding the raw numbers
    caption: str = ""
    kind: str = "data"  # "data" (numbers, right-aligned) or "kv" (key/value text, wrapping)


@dataclass
class Figure:
    file: str  # relative path inside the report folder
    title: str
    caption: str


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list = field(default_factory=list)  # str (paragraph), Table, Figure, ("note", str), ("pre", str),
    # ("h3", str), ("link", relative path inside the report folder, text)

    def add(self, *blocks) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]


CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1f2328;background:#fff}
main{max-width:1240px;margin:0 auto;padding:20px 24px 64px}
h1{font-size:28px;margin:8px 0 4px}h2{font-size:21px;margin-top:40px;border-bottom:1px solid #d0d7de;padding-bottom:6px}
h3{font-size:16px;margin:22px 0 8px}.sub{color:#57606a;margin:0 0 16px}
nav{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px 16px;font-size:14px}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
table{border-collapse:collapse;font-size:13px;margin:8px 0 6px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
td.best{font-weight:700;background:#dafbe1}
.scroll{overflow-x:auto}
table.kv td,table.kv th{white-space:normal;text-align:left}
th{white-space:normal;vertical-align:bottom}
figure{margin:14px 0 26px}figure img{max-width:100%;border:1px solid #eaeef2}
figcaption{font-size:13px;color:#57606a;max-width:980px}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px;font-size:12px;overflow:auto}
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;font-size:13px}
.caption{font-size:13px;color:#57606a}a.csv{font-size:12px}
"""


def _esc(x) -> str:
    return html.escape(str(x))


def _html_table(t: Table) -> str:
    f = t.frame
    out = [
        '<div class="scroll">',
        f'<table class="{t.kind}">',
        "<thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in f.columns) + "</tr></thead>",
        "<tbody>",
    ]
    for i, (_, row) in enumerate(f.iterrows()):
        cells = []
        for j, c in enumerate(f.columns):
            best = t.bold is not None and bool(t.bold.iloc[i, j])
            cells.append(f'<td class="best">{_esc(row[c])}</td>' if best else f"<td>{_esc(row[c])}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    if t.caption:
        out.append(f'<p class="caption">{_esc(t.caption)}</p>')
    if t.csv:
        out.append(f'<a class="csv" href="{_esc(t.csv)}">{_esc(t.csv)}</a>')
    return "\n".join(out)


def to_html(doc: Document) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(doc.title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{_esc(doc.title)}</h1>",
        f'<p class="sub">{_esc(doc.subtitle)}</p>',
        "<nav>" + "".join(f'<a href="#{s.anchor}">{_esc(s.title)}</a>' for s in doc.sections) + "</nav>",
    ]
    for s in doc.sections:
        parts.append(f'<h2 id="{s.anchor}">{_esc(s.title)}</h2>')
        for b in s.blocks:
            if isinstance(b, str):
                parts.append(f"<p>{_esc(b)}</p>")
            elif isinstance(b, Table):
                parts.append(_html_table(b))
            elif isinstance(b, Figure):
                parts.append(
                    f'<h3>{_esc(b.title)}</h3><figure><img src="{_esc(b.file)}" alt="{_esc(b.title)}">'
                    f"<figcaption>{_esc(b.caption)}</figcaption></figure>"
                )
            elif isinstance(b, tuple) and b[0] == "note":
                parts.append(f'<p class="note">{_esc(b[1])}</p>')
            elif isinstance(b, tuple) and b[0] == "pre":
                parts.append(f"<pre>{_esc(b[1])}</pre>")
            elif isinstance(b, tuple) and b[0] == "h3":
                parts.append(f"<h3>{_esc(b[1])}</h3>")
            elif isinstance(b, tuple) and b[0] == "link":  # ("link", relative path inside the folder, text)
                parts.append(f'<p><a href="{_esc(b[1])}">{_esc(b[2])}</a></p>')
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _md_text(x) -> str:
    """Text from data (labels, names, errors) safe inside Markdown: HTML escaped, one line."""
    return " ".join(html.escape(str(x), quote=False).split())


def _md_cell(x, bold: bool) -> str:
    s = _md_text(x)
    for ch in "\\`*[]|":  # no code spans, emphasis, links or cell breaks from data
        s = s.replace(ch, "\\" + ch)
    return f"**{s}**" if bold and s else s


def _md_table(t: Table) -> str:
    f = t.frame
    lines = [
        "| " + " | ".join(_md_cell(c, False) for c in f.columns) + " |",
        "|" + "|".join("---" if j == 0 or t.kind == "kv" else "---:" for j in range(len(f.columns))) + "|",
    ]
    for i, (_, row) in enumerate(f.iterrows()):
        lines.append(
            "| "
            + " | ".join(
                _md_cell(row[c], t.bold is not None and bool(t.bold.iloc[i, j])) for j, c in enumerate(f.columns)
            )
            + " |"
        )
    if t.caption:
        lines += ["", f"*{t.caption}*"]
    if t.csv:
        lines += ["", f"[{t.csv}]({t.csv})"]
    return "\n".join(lines)


def to_markdown(doc: Document) -> str:
    parts = [
        f"# {_md_text(doc.title)}",
        "",
        _md_text(doc.subtitle),
        "",
        " · ".join(f"[{s.title}](#{s.anchor})" for s in doc.sections),
        "",
    ]
    for s in doc.sections:
        parts += [f'<a id="{s.anchor}"></a>', f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, str):
                parts += [b, ""]
            elif isinstance(b, Table):
                parts += [_md_table(b), ""]
            elif isinstance(b, Figure):
                parts += [f"### {b.title}", "", f"![{b.title}]({b.file})", "", b.caption, ""]
            elif isinstance(b, tuple) and b[0] == "note":
                parts += [f"> **Note:** {b[1]}", ""]
            elif isinstance(b, tuple) and b[0] == "pre":
                lang = b[2] if len(b) > 2 else ""
                parts += [f"```{lang}", b[1].rstrip("\n"), "```", ""]
            elif isinstance(b, tuple) and b[0] == "h3":
                parts += [f"### {b[1]}", ""]
            elif isinstance(b, tuple) and b[0] == "link":
                parts += [f"[{_md_cell(b[2], False)}]({b[1]})", ""]
    return "\n".join(parts).rstrip() + "\n"
