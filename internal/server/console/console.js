// Progressive enhancement only: every page works without it.
// A button with data-confirm asks before its form is sent.
document.addEventListener('submit', (e) => {
  const b = e.submitter;
  if (b && b.dataset.confirm && !window.confirm(b.dataset.confirm)) e.preventDefault();
});
// The policy editor keeps its line numbers in step with the text.
document.addEventListener('DOMContentLoaded', () => {
  const text = document.getElementById('policy-text');
  const bad = document.getElementById('policy-bad-line');
  if (bad) bad.scrollIntoView({ block: 'center' });
  if (!text) return;
  const lines = text.parentElement.querySelector('ol.lines');
  text.addEventListener('input', () => {
    const n = text.value.split('\n').length;
    while (lines.children.length < n) {
      const li = document.createElement('li');
      li.textContent = String(lines.children.length + 1);
      lines.appendChild(li);
    }
    while (lines.children.length > n && lines.children.length > 1) lines.lastChild.remove();
    text.rows = Math.max(n, 6);
  });
});
