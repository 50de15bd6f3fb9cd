"""HTML for the app's views. Every piece of untrusted text (prompts, context, responses, rationales,
notes, user names, model names) goes through `render_text` or `html.escape`: HTML/JS in it is
displayed, never run (`gr.HTML` does not sanitise)."""

from __future__ import annotations

import html

from .i18n import LETTERS, t


def render_text(text: str | None) -> str:
    """Untrusted text as inert HTML: every character escaped, whitespace preserved by CSS."""
    return f'<div class="ann-text">{html.escape(text or "", quote=True)}</div>'


def render_prompt(item: dict, lang: str) -> str:
    head = html.escape(t(lang, "item", item=item["item_id"], language=item.get("lang") or "-", category=item.get("category") or "-"))
    parts = [f'<div class="ann-meta">{head}</div>']
    if item.get("messages"):
        *context, last = item["messages"]
        if context:
            parts.append(f'<div class="ann-label">{html.escape(t(lang, "context"))}</div>')
            for m in context:
                parts.append(f'<div class="ann-turn ann-{html.escape(m["role"])}"><span class="ann-role">'
                             f'{html.escape(m["role"])}</span>{render_text(m["content"])}</div>')
        parts.append(f'<div class="ann-label">{html.escape(t(lang, "prompt"))}</div>')
        parts.append(f'<div class="ann-turn ann-prompt">{render_text(last["content"])}</div>')
    else:
        parts.append(f'<div class="ann-label">{html.escape(t(lang, "prompt"))}</div>')
        parts.append(f'<div class="ann-turn ann-prompt">{render_text(item.get("prompt"))}</div>')
    return "\n".join(parts)


def md_escape(text: str) -> str:
    """Escape for gr.Markdown: HTML-escaped and Markdown punctuation neutralised."""
    s = html.escape(str(text))
    for ch in "\\`*_{}[]()#+!|~":
        s = s.replace(ch, "\\" + ch)
    return s


CSS = """
.ann-text { white-space: pre-wrap; word-break: break-word; font-family: ui-sans-serif, system-ui, sans-serif;
            line-height: 1.45; }
.ann-meta { color: #6b7280; font-size: 0.85em; margin-bottom: 6px; }
.ann-label { font-weight: 600; margin: 8px 0 4px; }
.ann-turn { border-radius: 8px; padding: 8px 10px; margin: 4px 0; background: #f3f4f6; }
.ann-turn.ann-prompt { background: #eef2ff; border: 1px solid #c7d2fe; }
.ann-role { display: inline-block; font-size: 0.75em; font-weight: 600; color: #4b5563; margin-bottom: 2px;
            text-transform: uppercase; }
.ann-response { border: 1px solid #d1d5db; border-radius: 8px; padding: 10px; min-height: 120px;
                max-height: 420px; overflow-y: auto; background: white; }
.ann-col.ann-selected { outline: 3px solid #6366f1; border-radius: 10px; }
.ann-advice { border-left: 4px solid #f59e0b; background: #fffbeb; padding: 6px 10px; margin: 6px 0; }
.ann-advice.ann-advice-ok { border-left-color: #10b981; background: #ecfdf5; }
.ann-demo-edit { border-color: #6366f1; }
.ann-review-table td, .ann-review-table th { border: 1px solid #e5e7eb; padding: 4px 8px; vertical-align: top; }
"""

SHORTCUTS_JS = """
<script>
(() => {
  if (window.__annShortcuts) return; window.__annShortcuts = true;
  let sel = 0;
  const cols = () => Array.from(document.querySelectorAll('.ann-col')).filter(c => c.offsetParent !== null);
  const mark = () => cols().forEach((c, i) => c.classList.toggle('ann-selected', i === sel));
  const clickIn = (id) => { const b = document.querySelector('#' + id); if (b) { (b.tagName === 'BUTTON' ? b : b.querySelector('button') || b).click(); } };
  document.addEventListener('keydown', (e) => {
    const el = e.target;
    const typing = el && (el.tagName === 'TEXTAREA' || (el.tagName === 'INPUT' && !['radio', 'checkbox'].includes(el.type)) || el.isContentEditable);
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') { e.preventDefault(); clickIn('ann-submit'); sel = 0; mark(); return; }
    if (e.altKey && (e.key === 's' || e.key === 'S' || e.code === 'KeyS')) { e.preventDefault(); clickIn('ann-skip'); sel = 0; mark(); return; }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key.toLowerCase();
    const n = cols().length;
    if (k.length === 1 && k >= 'a' && k <= 'f' && 'abcdef'.indexOf(k) < n) { sel = 'abcdef'.indexOf(k); mark(); e.preventDefault(); return; }
    if (/^[1-9]$/.test(k) && n > 0) {
      const radio = document.querySelector('#ann-rank-' + sel + ' input[type=radio][value="' + k + '"]');
      if (radio) { radio.click(); sel = Math.min(sel + 1, n - 1); mark(); e.preventDefault(); }
    }
  });
})();
</script>
"""


def render_review(item: dict, lang: str) -> str:
    """Everyone's rankings of one item as an escaped HTML table."""
    ids = [r["id"] for r in item["responses"]]
    head = "".join(f"<th>{html.escape(LETTERS[k])}</th>" for k in range(len(ids)))
    rows = []
    for r in item["rankings"]:
        cells = "".join(
            f"<td>{r['ranks'].get(i, '')}" + (f"<br><small>{html.escape(', '.join(r['flags'].get(i, [])))}</small>" if r["flags"].get(i) else "") + "</td>"
            for i in ids)
        rows.append(f"<tr><td>{html.escape(r['annotator'])}</td>{cells}<td>{render_text(r['rationale'])}</td></tr>")
    if item["review"]:
        cells = "".join(f"<td><b>{item['review']['ranks'].get(i, '')}</b></td>" for i in ids)
        rows.append(f"<tr><td><b>{html.escape(item['review']['reviewer'])} (final)</b></td>{cells}<td>{render_text(item['review']['note'])}</td></tr>")
    responses = "".join(
        f'<div class="ann-label">{html.escape(t(lang, "response", letter=LETTERS[k]))}'
        + (f' <small>({html.escape(r["model"])})</small>' if r["model"] else "")
        + f'</div><div class="ann-response">{render_text(r["text"])}</div>'
        for k, r in enumerate(item["responses"]))
    return (render_prompt(item, lang)
            + f'<table class="ann-review-table"><tr><th></th>{head}<th>rationale</th></tr>{"".join(rows)}</table>'
            + responses)


def render_write_item(item: dict, lang: str) -> str:
    """A write item: its prompt or conversation (escaped), or the request to write a prompt."""
    if item.get("write_prompt"):
        head = html.escape(t(lang, "item", item=item["item_id"], language=item.get("lang") or "-",
                             category=item.get("category") or "-"))
        language = t(lang, "lang_" + item["lang"]) if item.get("lang") in ("en", "zh") else item.get("lang") or "-"
        task = t(lang, "write_prompt_task", language=html.escape(language), category=html.escape(item.get("category") or "-"))
        task = task.replace("**", "")  # plain text here; the values are escaped above
        return f'<div class="ann-meta">{head}</div><div class="ann-label ann-write-task">{task}</div>'
    return render_prompt(item, lang) + f'<div class="ann-meta">{html.escape(t(lang, "write_intro"))}</div>'


def warning_texts(warnings: list[dict], lang: str) -> list[str]:
    """Each judge warning (see annotation_ui.advice) as a sentence in the UI language."""
    out = []
    for w in warnings or []:
        code = w.get("code")
        names = {k: t(lang, "lang_" + w[k]) if w.get(k) in ("en", "zh") else str(w.get(k)) for k in ("expected", "got")}
        if code == "mixing":
            out.append(t(lang, "warn_mixing", rate=float(w.get("rate", 0.0)), words=", ".join(w.get("words", []))))
        elif code in ("language", "prompt_language"):
            out.append(t(lang, "warn_" + code, **names))
        elif code == "refusal":
            out.append(t(lang, "warn_refusal"))
        else:
            out.append(str(code))
    return out


def render_warnings(warnings: list[dict], lang: str) -> str:
    """The judges' advice as escaped HTML (a list, or 'No warnings.')."""
    texts = warning_texts(warnings, lang)
    if not texts:
        return f'<div class="ann-advice ann-advice-ok">{html.escape(t(lang, "advice_ok"))}</div>'
    items = "".join(f"<li>{html.escape(x)}</li>" for x in texts)
    return f'<div class="ann-advice"><b>{html.escape(t(lang, "advice_title"))}</b><ul>{items}</ul></div>'


def render_demonstration(demo: dict, lang: str) -> str:
    """A demonstration for a reviewer: the item, the annotator's original text, the warnings at
    submit, and every review so far (who decided what, and any edit beside the original)."""
    item = {"item_id": demo["item_id"], "lang": demo["lang"], "category": demo["category"],
            "prompt": demo["item_prompt"], "messages": demo["messages"]}
    meta = f"#{demo['id']} · {demo['annotator']} · {demo['status']}"
    parts = [f'<div class="ann-meta">{html.escape(meta)}</div>']
    if demo["written_prompt"] is not None:
        parts.append(f'<div class="ann-label">{html.escape(t(lang, "your_prompt"))} ({html.escape(demo["annotator"])})</div>'
                     f'<div class="ann-turn ann-prompt">{render_text(demo["written_prompt"])}</div>')
    else:
        parts.append(render_prompt(item, lang))
    parts.append(f'<div class="ann-label">{html.escape(t(lang, "your_response"))} ({html.escape(demo["annotator"])})</div>'
                 f'<div class="ann-response ann-demo-original">{render_text(demo["response"])}</div>')
    parts.append(render_warnings(demo["warnings"], lang))
    for r in demo["reviews"]:
        parts.append(f'<div class="ann-meta">{html.escape(r["created_at"] + " · " + r["reviewer"] + " · " + r["decision"])}</div>')
        if r["prompt"] is not None:
            parts.append(f'<div class="ann-turn ann-demo-edit">{render_text(r["prompt"])}</div>')
        if r["response"] is not None:
            parts.append(f'<div class="ann-response ann-demo-edit">{render_text(r["response"])}</div>')
        if r["note"]:
            parts.append(render_text(r["note"]))
    return "\n".join(parts)
