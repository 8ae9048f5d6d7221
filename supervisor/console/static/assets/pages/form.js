// Form helpers: labelled inputs with a place for their error.
import { h } from '../dom.js';

// field returns a labelled input and its error slot; opts are input
// attributes, plus help (a hint shown under it).
export function field(name, label, opts = {}) {
  const { help, options, ...attrs } = opts;
  const id = `f-${name}`;
  const errId = `${id}-err`;
  const helpId = help ? `${id}-help` : undefined;
  const describedBy = [helpId, errId].filter(Boolean).join(' ');
  let input;
  if (options) {
    input = h('select', { id, name, 'aria-describedby': describedBy, ...attrs },
      options.map(o => h('option', { value: o }, o)));
  } else {
    input = h('input', { id, name, 'aria-describedby': describedBy, ...attrs });
  }
  const err = h('p', { class: 'field-error', id: errId, 'data-error-for': name, hidden: true });
  const wrap = h('div', { class: 'field', 'data-field': name },
    h('label', { for: id }, label), input,
    help ? h('p', { class: 'help', id: helpId }, help) : null, err);
  return { wrap, input, err };
}

export function setError(f, msg) {
  if (msg) {
    f.err.textContent = msg;
    f.err.hidden = false;
    f.input.setAttribute('aria-invalid', 'true');
  } else {
    f.err.textContent = '';
    f.err.hidden = true;
    f.input.removeAttribute('aria-invalid');
  }
}

// fieldProblems maps an error answer to per-field messages: a "problems"
// list of {field, message, hint}, a "field" of the error, or the lines of
// the error text that start with "config: SECTION.FIELD".
export function fieldProblems(body) {
  const out = new Map();
  const add = (f, msg) => {
    const key = String(f).split('.').pop();
    out.set(key, out.has(key) ? `${out.get(key)}; ${msg}` : msg);
  };
  if (Array.isArray(body.problems)) {
    for (const p of body.problems) if (p.field) add(p.field, p.hint ? `${p.message} (${p.hint})` : p.message);
    return out;
  }
  if (body.field) {
    add(body.field, body.hint ? `${body.error} (${body.hint})` : body.error);
    return out;
  }
  for (const line of String(body.error || '').split('\n')) {
    const m = line.match(/^(?:config: )?(?:[^:\s]+:\d+:\d+: )?((?:orchestrator|control)\.[a-z_]+)\b(.*)$/);
    if (m) add(m[1], line.replace(/^config: /, ''));
  }
  return out;
}
