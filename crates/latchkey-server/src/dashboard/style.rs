//! The dashboard's stylesheet and its one small script, compiled into the binary. No
//! framework and no build step: a person reads the page without JavaScript; the script
//! only adds the copy button and sends the site picker when it changes.

pub const CSS: &str = r#"
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --accent:#2451c7; --accent-bg:#e8eefc;
  --bad:#b3261e; --bad-bg:#fdf0ef; --ok:#1b7f3b; --ok-bg:#edf7f0; --warn:#6b4e00; --warn-line:#d9a400;
  --warn-bg:#fff6d6; --bg:#f7f8fa; }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.5 system-ui, sans-serif; color:var(--fg); background:var(--bg); }
.skip-link { position:absolute; left:-9999px; top:.5rem; padding:.5rem 1rem; background:#fff; border:2px solid var(--accent); z-index:10; }
.skip-link:focus { left:1rem; }
header { display:flex; flex-wrap:wrap; gap:.5rem 1.25rem; align-items:center; padding:.6rem 1.25rem; background:#fff; border-bottom:1px solid var(--line); }
header .brand { font-weight:700; color:var(--fg); text-decoration:none; margin-right:auto; }
nav { display:flex; flex-wrap:wrap; gap:.25rem 1rem; }
nav a { text-decoration:none; padding:.2rem 0; border-bottom:3px solid transparent; }
nav a[aria-current=page] { color:var(--fg); font-weight:600; border-bottom-color:var(--accent); }
.whoami { color:var(--muted); overflow-wrap:anywhere; }
main { max-width:1100px; margin:0 auto; padding:1.25rem; }
main:focus { outline:none; }
h1 { margin:.25rem 0 1rem; overflow-wrap:anywhere; }
h2 { margin:1.75rem 0 .5rem; font-size:1.2rem; }
a { color:var(--accent); }
code { font-family:ui-monospace, monospace; overflow-wrap:break-word; }
code.prefix { white-space:nowrap; }
.visually-hidden { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
table { width:100%; border-collapse:collapse; background:#fff; }
th, td { text-align:left; padding:.5rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:.85rem; white-space:nowrap; }
td { overflow-wrap:break-word; }
form.inline { display:inline; }
form.rename { display:flex; flex-wrap:wrap; gap:.5rem; align-items:flex-start; }
form.rename input { flex:1 1 10rem; width:auto; }
form.rename .field-error { flex-basis:100%; }
label { display:block; font-weight:600; margin:.75rem 0 .25rem; }
label.check { display:flex; gap:.5rem; align-items:flex-start; font-weight:400; }
.hint { color:var(--muted); font-size:.9rem; margin:.2rem 0 0; }
input[type=text], input[type=password], input[type=number], input[type=search], input[type=datetime-local], select, textarea {
  width:100%; max-width:32rem; padding:.45rem; border:1px solid #b9c0cc; border-radius:4px; font:inherit; background:#fff; color:inherit; }
input[type=number] { max-width:12rem; }
input[aria-invalid=true], select[aria-invalid=true], textarea[aria-invalid=true] { border:2px solid var(--bad); }
.field-error { color:var(--bad); font-weight:600; margin:.25rem 0 0; }
button, .button { display:inline-block; padding:.45rem .9rem; border:1px solid var(--accent); background:var(--accent); color:#fff; border-radius:4px; font:inherit; cursor:pointer; text-decoration:none; }
button.secondary, .button.secondary { background:#fff; color:var(--accent); }
button.danger, .button.danger { background:var(--bad); border-color:var(--bad); color:#fff; }
button.danger-outline, .button.danger-outline { background:#fff; border-color:var(--bad); color:var(--bad); }
button:focus-visible, a:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, summary:focus-visible {
  outline:3px solid #f2b600; outline-offset:2px; }
.status-active { color:var(--ok); } .status-blocked, .status-expired { color:var(--bad); }
.notice { padding:.75rem 1rem; border-radius:4px; margin:1rem 0; background:#fff; border:1px solid var(--line); }
.notice.error { border-color:var(--bad); background:var(--bad-bg); color:var(--bad); }
.notice.success { border-color:var(--ok); background:var(--ok-bg); color:#145c2c; }
.notice.warning { border:2px solid var(--warn-line); background:var(--warn-bg); color:var(--warn); }
.notice p { margin:.35rem 0 0; }
.secret { font-family:ui-monospace, monospace; font-size:1.05rem; word-break:break-all; padding:.75rem; background:#fff; border:2px dashed var(--accent); margin:.5rem 0; }
pre.snippet { background:#1d2330; color:#f5f7fa; padding:.75rem; border-radius:4px; white-space:pre-wrap; word-break:break-all; font-size:.85rem; }
.muted { color:var(--muted); }
.small { font-size:.85rem; }
.badge { display:inline-block; font-size:.75rem; font-weight:600; padding:0 .45rem; border-radius:999px; white-space:nowrap; vertical-align:middle; }
.badge.you { background:var(--accent-bg); color:var(--accent); }
.badge.stale, .badge.rotating { background:var(--warn-bg); color:var(--warn); }
.badge.master { background:var(--bad-bg); color:var(--bad); }
fieldset { border:1px solid var(--line); border-radius:4px; margin-top:1rem; max-width:34rem; min-width:0; }
.toolbar { display:flex; flex-wrap:wrap; gap:.75rem; align-items:end; margin:1rem 0; }
.toolbar label { margin-top:0; }
.toolbar > div { min-width:0; }
.pager { display:flex; flex-wrap:wrap; gap:1rem; align-items:center; margin:1rem 0; }
dl.facts { display:grid; grid-template-columns:minmax(8rem, 12rem) 1fr; margin:0; background:#fff; border:1px solid var(--line); border-radius:4px; }
dl.facts dt, dl.facts dd { margin:0; padding:.45rem .6rem; border-bottom:1px solid var(--line); overflow-wrap:anywhere; min-width:0; }
dl.facts dt { font-weight:600; color:var(--muted); font-size:.9rem; }
details.panel { background:#fff; border:1px solid var(--line); border-radius:4px; padding:.5rem 1rem; margin-top:1.75rem; }
details.panel > summary { cursor:pointer; font-weight:600; font-size:1.1rem; padding:.25rem 0; }
section.panel { background:#fff; border:1px solid var(--line); border-radius:4px; padding:.25rem 1rem 1rem; margin-top:1.75rem; }
section.panel h2, .danger-zone h2 { margin-top:.75rem; }
.danger-zone { border:2px solid var(--bad); border-radius:6px; padding:.25rem 1rem 1rem; margin-top:1.75rem; background:#fff; }
.danger-zone h2 { color:var(--bad); }
.danger-zone .action { display:flex; flex-wrap:wrap; gap:.5rem 1rem; align-items:center; justify-content:space-between; padding:.75rem 0; border-top:1px solid var(--line); }
.danger-zone .action p { margin:0; flex:1 1 16rem; }
.chart { margin:0; background:#fff; border:1px solid var(--line); border-radius:4px; padding:.75rem; }
.chart-body { display:flex; height:150px; }
.y-axis { display:flex; flex-direction:column; justify-content:space-between; width:3rem; padding-right:.4rem; text-align:right; font-size:.75rem; color:var(--muted); line-height:1; }
.plot { flex:1; min-width:0; display:flex; align-items:flex-end; gap:2px; border-left:1px solid #8c95a5; border-bottom:1px solid #8c95a5;
  background:linear-gradient(to bottom, transparent calc(50% - 1px), #e3e6ec calc(50% - 1px), #e3e6ec 50%, transparent 50%); }
.day { flex:1; min-width:0; height:100%; display:flex; align-items:flex-end; gap:1px; }
.bar { flex:1; min-width:0; }
.bar.allowed { background:var(--ok); } .bar.refused { background:var(--bad); }
.x-axis { display:flex; justify-content:space-between; margin-left:3rem; font-size:.75rem; color:var(--muted); padding-top:.25rem; }
.legend { display:flex; flex-wrap:wrap; gap:.25rem 1rem; margin-top:.5rem; font-size:.9rem; }
.swatch { display:inline-block; width:.8rem; height:.8rem; border-radius:2px; vertical-align:-.05rem; margin-right:.3rem; }
.chart-empty { display:flex; align-items:center; justify-content:center; text-align:center; min-height:150px; border:2px dashed var(--line); border-radius:4px; color:var(--muted); padding:1rem; }
.sparkline { display:flex; gap:.4rem; align-items:center; white-space:nowrap; }
@media (max-width: 640px) {
  main { padding:.75rem; }
  header { padding:.5rem .75rem; }
  dl.facts { grid-template-columns:1fr; }
  dl.facts dt { border-bottom:0; padding-bottom:0; }
  table.cards, table.cards tbody, table.cards tr, table.cards td { display:block; width:100%; }
  table.cards thead { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); }
  table.cards tr { border:1px solid var(--line); border-radius:6px; margin-bottom:.75rem; background:#fff; }
  table.cards td { display:flex; gap:.75rem; justify-content:space-between; border-bottom:1px solid #eef0f4; text-align:right; }
  table.cards td:last-child { border-bottom:0; }
  table.cards td::before { content:attr(data-label); font-weight:600; color:var(--muted); text-align:left; flex:none; }
  table.cards td > * { min-width:0; }
}
"#;

/// The copy button (with a fallback where the clipboard API is missing: pages served over
/// plain HTTP from anything but localhost, which is how many self-hosted tools run) and
/// the site picker, which shows the chosen site at once.
pub const SCRIPT: &str = r#"
document.querySelectorAll('[data-copy]').forEach(function (button) {
  var source = document.getElementById(button.dataset.copy);
  var status = document.getElementById(button.dataset.copyStatus);
  function selectKey() {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  function selectInstead() {
    selectKey();
    status.textContent = 'Your browser does not let this page use the clipboard (it is not served over HTTPS). '
      + 'The key is selected: press Ctrl+C (or \u2318C on a Mac) to copy it.';
  }
  button.addEventListener('click', function () {
    if (!(window.isSecureContext && navigator.clipboard)) { selectInstead(); return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = 'Copied';
      status.textContent = 'Copied to the clipboard.';
    }, selectInstead);
  });
});
document.querySelectorAll('select[data-autosubmit]').forEach(function (select) {
  select.addEventListener('change', function () { select.form.submit(); });
});
"#;
