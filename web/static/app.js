// Nightshift dashboard: a single-page app on hash routes, no framework, no build step.
//   #/                          DAGs
//   #/dag/DAG_ID                one DAG: graph, grid, trigger
//   #/dag/DAG_ID/run/RUN_ID     one run: Gantt, task instances, actions, log viewer (?task=T&map=M&try=N)
//
// Security: the page runs under a strict CSP, and everything that comes from DAG files, confs, logs or
// errors is put on the page with textContent / createTextNode / canvas fillText only. There is no
// innerHTML anywhere in this file.
'use strict';

(() => {
  const API = '/api/v1';
  const POLL_MS = 1500;
  const TOKEN_KEY = 'nightshift.token';
  const GRID_LIMIT_KEY = 'nightshift.gridLimit';
  // Which task states exist and which of them are finished come from the daemon (GET /api/v1/states,
  // i.e. core/states), loaded before the first view; TI_ORDER is only the order legends list them in,
  // and a state it does not name is listed after these.
  const TI_ORDER = ['success', 'running', 'failed', 'up_for_retry', 'upstream_failed', 'skipped', 'queued',
                    'scheduled'];
  let TI_STATES = TI_ORDER;
  let TERMINAL = new Set();
  const STATE_LABEL = { up_for_retry: 'up for retry', upstream_failed: 'upstream failed', none: 'no status' };

  // ------------------------------------------------------------------------------------------------
  // DOM helpers

  // h('div', {class: 'x', text: 'literal', onclick: fn, dataset: {k: v}}, child, 'text child', [more])
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    applyProps(el, props);
    appendKids(el, kids);
    return el;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, props, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    applyProps(el, props);
    appendKids(el, kids);
    return el;
  }

  function applyProps(el, props) {
    if (!props) return;
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.setAttribute('class', value);
      else if (key === 'text') el.textContent = String(value);
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (key === 'style') throw new Error('inline styles are blocked by the CSP; use classes or el.style');
      else el.setAttribute(key, value === true ? '' : String(value));
    }
  }

  function appendKids(el, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
  }

  // Replaces el's children; kids as for h() (nested arrays, strings as text, null skipped).
  function fill(el, ...kids) {
    el.replaceChildren();
    appendKids(el, kids);
    return el;
  }

  const $ = (sel, root = document) => root.querySelector(sel);
  const enc = encodeURIComponent;
  const stateName = (st) => st || 'none';
  const stateLabel = (st) => STATE_LABEL[stateName(st)] || stateName(st);
  const safeClass = (st) => 'st-' + String(st || 'none').replace(/[^a-z_]/g, '');

  function badge(state, extraProps) {
    return h('span', { class: 'badge ' + safeClass(state), ...extraProps }, stateLabel(state));
  }

  function legend(states) {
    return h('div', { class: 'legend', 'aria-label': 'State colours' },
      states.map(st => h('span', { class: 'legend-item' }, h('span', { class: 'sq ' + safeClass(st) }), stateLabel(st))));
  }

  // ------------------------------------------------------------------------------------------------
  // Time formatting (the API speaks RFC 3339 UTC; the page shows the browser's local time)

  const parseTime = (iso) => {
    if (!iso) return null;
    const t = Date.parse(iso);
    return Number.isNaN(t) ? null : t;
  };

  const fmtFull = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  const fmtSameYear = new Intl.DateTimeFormat(undefined, {
    month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  const fmtClockOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

  function fmtTime(iso) {
    const t = parseTime(iso);
    if (t === null) return '—';
    const d = new Date(t);
    return (d.getFullYear() === new Date().getFullYear() ? fmtSameYear : fmtFull).format(d);
  }
  const fmtClock = (ms) => fmtClockOnly.format(new Date(ms));

  function fmtDur(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
    if (seconds < 0) seconds = 0;
    if (seconds < 0.1) return Math.round(seconds * 1000) + 'ms';
    if (seconds < 10) return seconds.toFixed(1) + 's';
    if (seconds < 60) return Math.round(seconds) + 's';
    const m = Math.floor(seconds / 60);
    if (m < 60) return `${m}m ${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
    const hr = Math.floor(m / 60);
    if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
    return `${Math.floor(hr / 24)}d ${hr % 24}h`;
  }

  const GANTT_STEPS = [0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                       10800, 21600, 43200, 86400];
  // An axis offset on a round step: "0.25s", "30s", "5m", "1h 30m".
  function fmtStep(sec) {
    if (sec < 1) return String(Math.round(sec * 100) / 100) + 's';
    if (sec < 60) return Math.round(sec) + 's';
    if (sec < 3600) return Math.floor(sec / 60) + 'm' + (sec % 60 ? ` ${Math.round(sec % 60)}s` : '');
    return Math.floor(sec / 3600) + 'h' + (sec % 3600 ? ` ${Math.round((sec % 3600) / 60)}m` : '');
  }

  function fmtRel(iso) {
    const t = parseTime(iso);
    if (t === null) return '';
    const diff = (t - Date.now()) / 1000;
    const span = fmtDur(Math.abs(diff)).replace(/\.\ds$/, 's');
    if (Math.abs(diff) < 5) return 'now';
    return diff > 0 ? `in ${span}` : `${span} ago`;
  }

  function spanSeconds(startIso, endIso) {
    const a = parseTime(startIso);
    if (a === null) return null;
    const b = parseTime(endIso) ?? Date.now();
    return (b - a) / 1000;
  }

  // ------------------------------------------------------------------------------------------------
  // API client with the bearer token from sessionStorage

  class ApiError extends Error {
    constructor(status, title, detail) {
      super(detail || title || `HTTP ${status}`);
      this.status = status;
      this.title = title;
      this.detail = detail;
    }
  }

  const getToken = () => sessionStorage.getItem(TOKEN_KEY) || '';
  let readTokenDeclined = false;  // the user cancelled the token form: polls stop asking

  async function errorFrom(res) {
    let title = res.statusText, detail = '';
    try {
      const body = await res.json();
      title = body.title || title;
      detail = body.detail || '';
    } catch (_) { /* not JSON */ }
    return new ApiError(res.status, title, detail || `${res.status} ${title}`);
  }

  // request('GET', '/dags') -> parsed JSON. opts: body (JSON), auth (ask for the token first if none),
  // raw (return the Response), allow404 (return null on 404).
  async function request(method, path, opts = {}) {
    const mutating = method !== 'GET';
    for (let attempt = 0; ; attempt++) {
      let token = getToken();
      if (mutating && !token) {
        token = await askToken('Changing state needs the API token.');
        if (!token) throw new ApiError(401, 'Unauthorized', 'no API token was given');
      }
      const headers = { Accept: 'application/json' };
      if (token) headers.Authorization = 'Bearer ' + token;
      if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
      let res;
      try {
        res = await fetch(API + path, {
          method, headers, cache: 'no-store',
          body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        });
      } catch (e) {
        throw new ApiError(0, 'Network error', 'the daemon did not answer (' + e.message + ')');
      }
      if (res.status === 401 && attempt < 3 && (mutating || !readTokenDeclined)) {
        const again = await askToken(token ? 'The daemon rejected this token. Enter it again.'
                                           : 'Reading this daemon needs the API token.');
        if (!again) {
          if (!mutating) readTokenDeclined = true;
          throw await errorFrom(res);
        }
        continue;
      }
      if (res.status === 404 && opts.allow404) return null;
      if (!res.ok) throw await errorFrom(res);
      if (opts.raw) return res;
      const text = await res.text();
      return text ? JSON.parse(text) : null;
    }
  }
  const get = (path, opts) => request('GET', path, opts);

  const dagPath = (dagId) => `/dags/${enc(dagId)}`;
  const runPath = (dagId, runId) => `${dagPath(dagId)}/dagRuns/${enc(runId)}`;
  const tiPath = (dagId, runId, taskId) => `${runPath(dagId, runId)}/taskInstances/${enc(taskId)}`;

  const dagHref = (dagId) => `#/dag/${enc(dagId)}`;
  function runHref(dagId, runId, task) {
    let href = `${dagHref(dagId)}/run/${enc(runId)}`;
    if (task) {
      const q = new URLSearchParams({ task: task.task_id });
      if (task.map_index !== undefined && task.map_index !== null && task.map_index >= 0) q.set('map', task.map_index);
      href += '?' + q.toString();
    }
    return href;
  }

  // ------------------------------------------------------------------------------------------------
  // Dialogs, toasts, tooltip

  let tokenPromise = null;
  function askToken(message) {
    if (tokenPromise) return tokenPromise;
    const dialog = $('#token-dialog'), input = $('#token-input'), error = $('#token-error');
    tokenPromise = new Promise((resolve) => {
      error.hidden = !message;
      error.textContent = message || '';
      input.value = '';
      const finish = (value) => {
        dialog.removeEventListener('close', onClose);
        $('#token-form').removeEventListener('submit', onSubmit);
        $('#token-cancel').removeEventListener('click', onCancel);
        tokenPromise = null;
        resolve(value);
      };
      const onSubmit = (e) => {
        e.preventDefault();
        const value = input.value.trim();
        if (!value) { error.hidden = false; error.textContent = 'Enter the token.'; return; }
        sessionStorage.setItem(TOKEN_KEY, value);
        readTokenDeclined = false;
        updateTokenButton();
        finish(value);
        dialog.close();
      };
      const onCancel = () => dialog.close();
      const onClose = () => finish(null);
      dialog.addEventListener('close', onClose);
      $('#token-form').addEventListener('submit', onSubmit);
      $('#token-cancel').addEventListener('click', onCancel);
      dialog.showModal();
      input.focus();
    });
    return tokenPromise;
  }

  function updateTokenButton() {
    $('#token-button').textContent = getToken() ? 'Token set' : 'Set token';
  }

  function confirmBox(title, text, okLabel = 'OK') {
    const dialog = $('#confirm-dialog');
    return new Promise((resolve) => {
      $('#confirm-title').textContent = title;
      $('#confirm-text').textContent = text;
      $('#confirm-ok').textContent = okLabel;
      let result = false;
      const form = dialog.querySelector('form');
      const onSubmit = (e) => { e.preventDefault(); result = true; dialog.close(); };
      const onCancel = () => dialog.close();
      const onClose = () => {
        form.removeEventListener('submit', onSubmit);
        $('#confirm-cancel').removeEventListener('click', onCancel);
        dialog.removeEventListener('close', onClose);
        resolve(result);
      };
      form.addEventListener('submit', onSubmit);
      $('#confirm-cancel').addEventListener('click', onCancel);
      dialog.addEventListener('close', onClose);
      dialog.showModal();
      $('#confirm-ok').focus();
    });
  }

  function toast(message, kind = 'ok') {
    const el = h('div', { class: 'toast' + (kind === 'error' ? ' error' : ''), title: 'Click to dismiss' }, message);
    el.addEventListener('click', () => el.remove());
    $('#toasts').append(el);
    setTimeout(() => el.remove(), kind === 'error' ? 7000 : 4000);
  }

  const tooltip = {
    show(x, y, title, rows) {
      const el = $('#tooltip');
      fill(el, h('div', { class: 'tt-title' }, title), rows.filter(Boolean).map(r => h('div', { class: 'tt-row' }, r)));
      el.hidden = false;
      const pad = 14, rect = el.getBoundingClientRect();
      let left = x + pad, top = y + pad;
      if (left + rect.width > window.innerWidth - 8) left = x - rect.width - pad;
      if (top + rect.height > window.innerHeight - 8) top = y - rect.height - pad;
      el.style.left = Math.max(8, left) + 'px';
      el.style.top = Math.max(8, top) + 'px';
    },
    hide() { $('#tooltip').hidden = true; },
  };

  // A paused toggle shared by the DAGs list and the DAG page. Calls onChange(dag) after the PATCH.
  function pauseSwitch(dag, onChange) {
    const active = !dag.is_paused;
    const btn = h('button', {
      class: 'switch', type: 'button', role: 'switch', 'aria-checked': String(active),
      'aria-label': `${active ? 'Pause' : 'Unpause'} ${dag.dag_id}`,
      title: active ? 'Active: click to pause' : 'Paused: click to unpause',
      dataset: { dagId: dag.dag_id },
    });
    btn.addEventListener('click', async (e) => {
      e.stopPropagation();
      btn.disabled = true;
      const pause = btn.getAttribute('aria-checked') === 'true';
      try {
        const updated = await request('PATCH', dagPath(dag.dag_id), { body: { is_paused: pause } });
        btn.setAttribute('aria-checked', String(!pause));
        toast(`${dag.dag_id} ${pause ? 'paused' : 'unpaused'}`);
        onChange && onChange(updated);
      } catch (err) {
        toast(`Could not ${pause ? 'pause' : 'unpause'} ${dag.dag_id}: ${err.message}`, 'error');
      } finally {
        btn.disabled = false;
      }
    });
    return btn;
  }

  // ------------------------------------------------------------------------------------------------
  // Layering tasks by dependency (graph layout and run-page order)

  function layerTasks(tasks) {
    const byId = new Map(tasks.map(t => [t.task_id, t]));
    const layer = new Map();
    const visiting = new Set();
    const depth = (id) => {
      if (layer.has(id)) return layer.get(id);
      if (visiting.has(id)) return 0;  // a cycle cannot load, but never loop on one
      visiting.add(id);
      let d = 0;
      for (const up of (byId.get(id)?.depends_on || [])) if (byId.has(up)) d = Math.max(d, depth(up) + 1);
      visiting.delete(id);
      layer.set(id, d);
      return d;
    };
    tasks.forEach(t => depth(t.task_id));
    const layers = [];
    tasks.forEach(t => { (layers[layer.get(t.task_id)] ||= []).push(t.task_id); });
    // Barycenter ordering: sort each layer by the mean position of its upstream tasks, to reduce crossings.
    for (let pass = 0; pass < 2; pass++) {
      const pos = new Map();
      layers.forEach(ids => ids.forEach((id, i) => pos.set(id, i / Math.max(1, ids.length - 1))));
      for (let l = 1; l < layers.length; l++) {
        const key = new Map(layers[l].map((id, i) => {
          const ups = (byId.get(id).depends_on || []).filter(u => pos.has(u));
          const bc = ups.length ? ups.reduce((a, u) => a + pos.get(u), 0) / ups.length : i / Math.max(1, layers[l].length - 1);
          return [id, bc];
        }));
        layers[l].sort((a, b) => key.get(a) - key.get(b));
        layers[l].forEach((id, i) => pos.set(id, i / Math.max(1, layers[l].length - 1)));
      }
    }
    return { layers, layerOf: layer };
  }

  // One state for a task from its (possibly mapped) instances.
  function aggregateState(states) {
    const present = states.filter(Boolean);
    if (!present.length) return null;
    if (present.every(st => st === present[0])) return present[0];
    for (const st of ['running', 'up_for_retry', 'queued', 'scheduled', 'failed', 'upstream_failed']) {
      if (present.includes(st)) return st;
    }
    return present.includes('success') ? 'success' : present[0];
  }

  // ------------------------------------------------------------------------------------------------
  // Graph view: an SVG of the tasks in layers (left to right), coloured by state in the selected run

  // Layered (Sugiyama-style) layout, left to right: layers by longest path from a root, a virtual
  // waypoint in every layer an edge skips, a few barycenter sweeps to reduce crossings, then each layer
  // stacked and centred. Returns positions by id, each edge as a chain of ids, and the size.
  function graphLayout(tasks, { W, H, VH, GX, GY, PAD }) {
    const { layerOf } = layerTasks(tasks);
    const ids = new Set(tasks.map(t => t.task_id));
    const ups = new Map(), downs = new Map(), virtual = new Set();
    const link = (a, b) => {
      (ups.get(b) || ups.set(b, []).get(b)).push(a);
      (downs.get(a) || downs.set(a, []).get(a)).push(b);
    };
    const layers = [];
    const put = (id, l) => (layers[l] ||= []).push(id);
    tasks.forEach(t => put(t.task_id, layerOf.get(t.task_id)));
    const edges = [];
    for (const t of tasks) {
      for (const u of t.depends_on || []) {
        if (!ids.has(u)) continue;
        const chain = [u];
        for (let l = layerOf.get(u) + 1; l < layerOf.get(t.task_id); l++) {
          const v = `\u0000${u}\u0000${t.task_id}\u0000${l}`;
          virtual.add(v);
          put(v, l);
          chain.push(v);
        }
        chain.push(t.task_id);
        for (let i = 1; i < chain.length; i++) link(chain[i - 1], chain[i]);
        edges.push(chain);
      }
    }
    const pos = new Map();
    const index = () => layers.forEach(ids2 => ids2.forEach((id, i) => pos.set(id, i)));
    index();
    const sweep = (l, neighbours) => {
      const key = new Map(layers[l].map((id, i) => {
        const ns = (neighbours.get(id) || []).filter(n => pos.has(n));
        return [id, ns.length ? ns.reduce((a, n) => a + pos.get(n), 0) / ns.length : i];
      }));
      layers[l].sort((a, b) => key.get(a) - key.get(b));
      layers[l].forEach((id, i) => pos.set(id, i));
    };
    for (let pass = 0; pass < 4; pass++) {
      if (pass % 2 === 0) for (let l = 1; l < layers.length; l++) sweep(l, ups);
      else for (let l = layers.length - 2; l >= 0; l--) sweep(l, downs);
    }
    const heightOf = (ids2) => ids2.reduce((a, id) => a + (virtual.has(id) ? VH : H), 0) + GY * Math.max(0, ids2.length - 1);
    const tallest = Math.max(...layers.map(heightOf));
    const layout = new Map();
    layers.forEach((ids2, l) => {
      let y = PAD + (tallest - heightOf(ids2)) / 2;
      for (const id of ids2) {
        const v = virtual.has(id);
        layout.set(id, { x: PAD + l * (W + GX), y, h: v ? VH : H, virtual: v });
        y += (v ? VH : H) + GY;
      }
    });
    return { layout, edges, width: PAD * 2 + layers.length * W + (layers.length - 1) * GX, height: PAD * 2 + tallest };
  }

  // Cuts text with an ellipsis to fit width px in the given canvas font.
  const measureCtx = document.createElement('canvas').getContext('2d');
  function fitText(text, width, font) {
    measureCtx.font = font;
    if (measureCtx.measureText(text).width <= width) return text;
    let lo = 0, hi = text.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (measureCtx.measureText(text.slice(0, mid) + '…').width <= width) lo = mid; else hi = mid - 1;
    }
    return text.slice(0, lo) + '…';
  }

  class GraphView {
    constructor(onNodeClick) {
      this.font = getComputedStyle(document.documentElement).getPropertyValue('--sans').trim() || 'sans-serif';
      this.onNodeClick = onNodeClick;
      this.el = h('div', { class: 'graph-wrap' });
      this.nodes = new Map();
      this.sig = '';
    }

    setTasks(tasks) {
      const sig = JSON.stringify(tasks.map(t => [t.task_id, t.depends_on]));
      if (sig === this.sig) return;
      this.sig = sig;
      this.nodes.clear();
      if (!tasks.length) { fill(this.el, h('div', { class: 'empty' }, 'This DAG has no tasks.')); return; }
      const W = 176, H = 46, VH = 10, GX = 76, GY = 14, PAD = 8;
      const { layout, edges, width, height } = graphLayout(tasks, { W, H, VH, GX, GY, PAD });
      const svg = s('svg', { class: 'graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
                             'aria-label': 'Task dependency graph' });
      svg.append(s('defs', null, s('marker', { id: 'ns-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { class: 'arrow', d: 'M0,0 L10,5 L0,10 z' }))));
      // Edges: a curve from each box (or virtual waypoint) to the next, straight through waypoints, so
      // an edge that skips layers runs through the gaps between boxes instead of under them.
      const g = s('g', { class: 'edges' });
      for (const chain of edges) {
        const pts = chain.map(id => layout.get(id));
        let d = `M${pts[0].x + W},${pts[0].y + pts[0].h / 2}`;
        for (let i = 1; i < pts.length; i++) {
          const a = pts[i - 1], b = pts[i];
          const x1 = a.x + W, y1 = a.y + a.h / 2, x2 = b.x - (b.virtual ? 0 : 2), y2 = b.y + b.h / 2;
          const dx = Math.max(20, (x2 - x1) / 2);
          if (i > 1 || !a.virtual) d += ` C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
          if (b.virtual) d += ` L${b.x + W},${y2}`;
        }
        g.append(s('path', { class: 'edge', d, 'marker-end': 'url(#ns-arrow)' }));
      }
      svg.append(g);
      for (const t of tasks) {
        const p = layout.get(t.task_id);
        const label = fitText(t.task_id, W - 24, '600 12.5px ' + this.font);
        const sub = s('text', { class: 'sub', x: 14, y: 34 }, 'no status');
        const node = s('g', { class: 'node st-none', transform: `translate(${p.x},${p.y})`, tabindex: 0,
                              role: 'button', dataset: { taskId: t.task_id } },
          s('title', null, t.task_id),
          s('rect', { class: 'box', width: W, height: H, rx: 8 }),
          s('rect', { class: 'bar', x: 0.8, y: 0.8, width: 5, height: H - 1.6, rx: 3 }),
          s('text', { class: 'label', x: 14, y: 19 }, label),
          sub);
        node.addEventListener('click', () => this.onNodeClick(t.task_id));
        node.addEventListener('keydown', (e) => { if (e.key === 'Enter') this.onNodeClick(t.task_id); });
        this.nodes.set(t.task_id, { g: node, sub, extra: t.map ? ' · mapped' : '' });
        svg.append(node);
      }
      fill(this.el, svg);
    }

    // states: Map task_id -> state (or null)
    setStates(states) {
      for (const [id, node] of this.nodes) {
        const st = states.get(id) || null;
        node.g.setAttribute('class', 'node ' + safeClass(st));
        node.g.dataset.state = stateName(st);
        node.sub.textContent = stateLabel(st) + node.extra;
      }
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Grid view: runs (columns, oldest left, newest right) × tasks (rows) drawn on a canvas.
  // Only the visible part is drawn, so 500 runs × 200 tasks cost the same as 20 × 5; one set of
  // listeners on the canvas handles hover and clicks for every cell.

  class GridCanvas {
    constructor({ onCellClick, onRunClick }) {
      this.onCellClick = onCellClick;
      this.onRunClick = onRunClick;
      this.tasks = [];
      this.runs = [];
      this.selected = null;
      this.hover = null;
      this.cell = 16;
      this.header = 62;
      this.wrap = h('div', { class: 'grid-wrap', id: 'grid', tabindex: 0, 'aria-label': 'Grid of runs by tasks' });
      this.inner = h('div', { class: 'grid-inner' });
      this.canvas = h('canvas', { class: 'grid-canvas' });
      this.inner.append(this.canvas);
      this.wrap.append(this.inner);
      this.ctx = this.canvas.getContext('2d');
      this.colors = {};
      const css = getComputedStyle(document.documentElement);
      for (const st of [...TI_STATES, 'removed', 'none']) this.colors[st] = css.getPropertyValue('--st-' + st).trim() || '#ccc';
      this.font = css.getPropertyValue('--sans').trim() || 'sans-serif';
      this.labelCache = new Map();
      this.stickRight = true;
      this.frame = 0;
      this.wrap.addEventListener('scroll', () => {
        this.stickRight = this.wrap.scrollLeft + this.wrap.clientWidth >= this.wrap.scrollWidth - 4;
        this.schedule();
        tooltip.hide();
      }, { passive: true });
      this.canvas.addEventListener('mousemove', (e) => this.onMove(e));
      this.canvas.addEventListener('mouseleave', () => { this.hover = null; tooltip.hide(); this.schedule(); });
      this.canvas.addEventListener('click', (e) => this.onClick(e));
      // Re-layout when the wrap's width changes (window resize); its height follows the content.
      this.resizeObserver = new ResizeObserver(() => {
        if (this.wrap.clientWidth !== this.seenWidth) { this.seenWidth = this.wrap.clientWidth; this.layout(); }
      });
      this.resizeObserver.observe(this.wrap);
    }

    destroy() { this.resizeObserver.disconnect(); tooltip.hide(); }

    // tasks: [task_id]; runs: oldest first, each {dag_run_id, state, start_date, end_date, logical_date, states[]}
    setData(tasks, runs, selectedRunId) {
      const t0 = performance.now();
      this.tasks = tasks;
      this.runs = runs;
      this.selected = selectedRunId;
      let maxDur = 0;
      this.durations = runs.map(r => {
        const d = spanSeconds(r.start_date, r.end_date) || 0;
        if (d > maxDur) maxDur = d;
        return d;
      });
      this.maxDur = maxDur;
      this.layout();
      this.drawNow();
      this.wrap.dataset.runs = String(runs.length);
      this.wrap.dataset.tasks = String(tasks.length);
      this.wrap.dataset.renderMs = (performance.now() - t0).toFixed(1);
    }

    layout() {
      const narrow = window.innerWidth < 600;
      this.labelW = narrow ? 112 : Math.min(230, Math.max(140, this.longestLabel() + 28));
      const W = this.labelW + this.runs.length * this.cell + 12;
      const H = this.header + this.tasks.length * this.cell + 8;
      this.contentW = W;
      this.contentH = H;
      // The inner box has the full content size; the canvas is only as big as the visible part of
      // the wrap (at most 560px high, style.css) and sticks to its top left corner while scrolling.
      this.inner.style.width = W + 'px';
      this.inner.style.height = H + 'px';
      const cw = Math.max(0, Math.min(W, this.wrap.clientWidth));
      const ch = Math.max(0, Math.min(H, this.wrap.clientHeight));
      const dpr = window.devicePixelRatio || 1;
      if (this.cw !== cw || this.ch !== ch || this.dpr !== dpr) {
        this.cw = cw; this.ch = ch; this.dpr = dpr;
        this.canvas.width = Math.round(cw * dpr);
        this.canvas.height = Math.round(ch * dpr);
        this.canvas.style.width = cw + 'px';
        this.canvas.style.height = ch + 'px';
      }
      if (this.stickRight) this.wrap.scrollLeft = this.wrap.scrollWidth;
      this.schedule();
    }

    longestLabel() {
      this.ctx.font = `12px ${this.font}`;
      let w = 0;
      for (const t of this.tasks.slice(0, 400)) w = Math.max(w, this.ctx.measureText(t).width);
      return w;
    }

    schedule() {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => { this.frame = 0; this.drawNow(); });
    }

    fit(text, width) {
      const key = text + '\u0000' + width;
      let out = this.labelCache.get(key);
      if (out !== undefined) return out;
      out = text;
      if (this.ctx.measureText(text).width > width) {
        let lo = 0, hi = text.length;
        while (lo < hi) {
          const mid = (lo + hi + 1) >> 1;
          if (this.ctx.measureText(text.slice(0, mid) + '…').width <= width) lo = mid; else hi = mid - 1;
        }
        out = text.slice(0, lo) + '…';
      }
      if (this.labelCache.size > 5000) this.labelCache.clear();
      this.labelCache.set(key, out);
      return out;
    }

    drawNow() {
      const { ctx, cell, header, labelW, cw, ch } = this;
      if (!cw || !ch) return;
      const sx = this.wrap.scrollLeft, sy = this.wrap.scrollTop;
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      ctx.clearRect(0, 0, cw, ch);
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, cw, ch);
      const c0 = Math.max(0, Math.floor(sx / cell)), c1 = Math.min(this.runs.length, Math.ceil((sx + cw - labelW) / cell) + 1);
      const r0 = Math.max(0, Math.floor(sy / cell)), r1 = Math.min(this.tasks.length, Math.ceil((sy + ch - header) / cell) + 1);
      const colX = (c) => labelW + c * cell - sx;
      const rowY = (r) => header + r * cell - sy;
      const selIdx = this.runs.findIndex(r => r.dag_run_id === this.selected);

      // Highlights: selected run column, hovered row and column.
      if (selIdx >= c0 && selIdx < c1) {
        ctx.fillStyle = '#e3ebff';
        ctx.fillRect(colX(selIdx), 0, cell, ch);
      }
      if (this.hover) {
        ctx.fillStyle = '#f1f4f9';
        if (this.hover.row >= 0) ctx.fillRect(0, rowY(this.hover.row), cw, cell);
        if (this.hover.col >= 0 && this.hover.col !== selIdx) ctx.fillRect(colX(this.hover.col), 0, cell, ch);
      }

      // Cells, batched by colour (one path and one fill per state).
      const sq = cell - 4, inset = 2;
      const paths = new Map();
      for (let c = c0; c < c1; c++) {
        const states = this.runs[c].states || [];
        const x = colX(c) + inset;
        for (let r = r0; r < r1; r++) {
          const st = states[r] || 'none';
          let p = paths.get(st);
          if (!p) { p = new Path2D(); paths.set(st, p); }
          const y = rowY(r) + inset;
          if (p.roundRect) p.roundRect(x, y, sq, sq, 2.5); else p.rect(x, y, sq, sq);
        }
      }
      for (const [st, p] of paths) {
        ctx.fillStyle = this.colors[st] || this.colors.none;
        ctx.fill(p);
      }

      // Header: one bar per run, its height by duration, its colour by the run's state.
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, cw, header);
      if (selIdx >= c0 && selIdx < c1) { ctx.fillStyle = '#e3ebff'; ctx.fillRect(colX(selIdx), 0, cell, header); }
      if (this.hover && this.hover.col >= 0 && this.hover.col !== selIdx) {
        ctx.fillStyle = '#f1f4f9';
        ctx.fillRect(colX(this.hover.col), 0, cell, header);
      }
      const base = header - 6, maxBar = header - 16;
      for (let c = c0; c < c1; c++) {
        const run = this.runs[c];
        const frac = this.maxDur > 0 ? this.durations[c] / this.maxDur : 0;
        const bh = Math.max(4, Math.round(frac * maxBar));
        ctx.fillStyle = this.colors[run.state] || this.colors.none;
        ctx.beginPath();
        if (ctx.roundRect) ctx.roundRect(colX(c) + 3, base - bh, cell - 6, bh, 2); else ctx.rect(colX(c) + 3, base - bh, cell - 6, bh);
        ctx.fill();
      }
      ctx.fillStyle = '#e2e5eb';
      ctx.fillRect(0, header - 1, cw, 1);

      // Task names, pinned on the left.
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, header, labelW, ch - header);
      ctx.font = `12px ${this.font}`;
      ctx.textBaseline = 'middle';
      for (let r = r0; r < r1; r++) {
        const y = rowY(r);
        if (y + cell < header) continue;
        if (this.hover && this.hover.row === r) { ctx.fillStyle = '#f1f4f9'; ctx.fillRect(0, y, labelW, cell); }
        ctx.fillStyle = '#1c2230';
        ctx.fillText(this.fit(this.tasks[r], labelW - 22), 12, y + cell / 2 + 0.5);
      }
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, labelW, header);
      ctx.fillStyle = '#e2e5eb';
      ctx.fillRect(labelW - 1, 0, 1, ch);
      ctx.fillRect(0, header - 1, labelW, 1);
      ctx.fillStyle = '#667085';
      ctx.font = `600 11px ${this.font}`;
      ctx.textBaseline = 'alphabetic';
      ctx.fillText('TASK', 12, header - 10);
      ctx.textAlign = 'right';
      ctx.fillText('RUN ▸', labelW - 10, header - 10);
      ctx.textAlign = 'left';
    }

    hit(e) {
      const rect = this.canvas.getBoundingClientRect();
      const x = e.clientX - rect.left, y = e.clientY - rect.top;
      const col = x >= this.labelW ? Math.floor((x - this.labelW + this.wrap.scrollLeft) / this.cell) : -1;
      const row = y >= this.header ? Math.floor((y - this.header + this.wrap.scrollTop) / this.cell) : -1;
      return {
        col: col >= 0 && col < this.runs.length ? col : -1,
        row: row >= 0 && row < this.tasks.length ? row : -1,
        inLabels: x < this.labelW, inHeader: y < this.header,
      };
    }

    onMove(e) {
      const hit = this.hit(e);
      const prev = this.hover;
      this.hover = (hit.col >= 0 || hit.row >= 0) ? hit : null;
      if (!prev || !this.hover || prev.col !== this.hover.col || prev.row !== this.hover.row) this.schedule();
      const run = hit.col >= 0 ? this.runs[hit.col] : null;
      this.canvas.style.cursor = run && (hit.row >= 0 || hit.inHeader) ? 'pointer' : 'default';
      if (run && hit.row >= 0) {
        const st = (run.states || [])[hit.row];
        tooltip.show(e.clientX, e.clientY, this.tasks[hit.row],
          [`State: ${stateLabel(st)}`, `Run: ${run.dag_run_id}`, `Logical date: ${fmtTime(run.logical_date)}`]);
      } else if (run && hit.inHeader) {
        tooltip.show(e.clientX, e.clientY, run.dag_run_id,
          [`State: ${stateLabel(run.state)}`, `Started: ${fmtTime(run.start_date)}`,
           `Duration: ${fmtDur(spanSeconds(run.start_date, run.end_date))}`, 'Click to select this run']);
      } else if (hit.row >= 0 && hit.inLabels) {
        tooltip.show(e.clientX, e.clientY, this.tasks[hit.row], []);
      } else {
        tooltip.hide();
      }
    }

    onClick(e) {
      const hit = this.hit(e);
      if (hit.col < 0) return;
      if (hit.row >= 0) this.onCellClick(this.runs[hit.col], this.tasks[hit.row]);
      else if (hit.inHeader) this.onRunClick(this.runs[hit.col]);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Views. Each has el, refresh() (called on every poll) and destroy().

  function pageHead({ crumbs, title, titleExtra, subtitle, meta, actions }) {
    const crumbEls = [];
    (crumbs || []).forEach((c, i) => {
      if (i) crumbEls.push(h('span', { class: 'sep', 'aria-hidden': 'true' }, '›'));
      crumbEls.push(c.href ? h('a', { href: c.href }, c.text) : h('span', null, c.text));
    });
    return h('div', { class: 'page-head' },
      h('div', { class: 'titles' },
        crumbEls.length ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, crumbEls) : null,
        h('div', { class: 'title-row' }, title, titleExtra),
        subtitle, meta),
      actions ? h('div', { class: 'actions' }, actions) : null);
  }

  function metaItem(k, v, extra) {
    return h('div', { class: 'meta-item', ...extra }, h('span', { class: 'k' }, k), h('span', { class: 'v' }, v));
  }

  function errorCard(err) {
    return h('div', { class: 'banner' }, h('span', { class: 'banner-icon', 'aria-hidden': 'true' }, '!'),
      h('div', null, h('h2', null, err.title || 'Error'), h('div', null, err.detail || err.message)));
  }

  // ---------- DAGs page ----------

  class DagsView {
    constructor() {
      this.rows = new Map();
      this.filter = sessionStorage.getItem('nightshift.filter') || '';
      this.show = 'all';
      this.search = h('input', { type: 'search', class: 'search', placeholder: 'Filter by id, description or tag',
                                 'aria-label': 'Filter DAGs', value: this.filter });
      this.search.addEventListener('input', () => {
        this.filter = this.search.value;
        sessionStorage.setItem('nightshift.filter', this.filter);
        this.applyFilter();
      });
      this.showSelect = h('select', { 'aria-label': 'Show' },
        h('option', { value: 'all' }, 'All DAGs'), h('option', { value: 'active' }, 'Active'),
        h('option', { value: 'paused' }, 'Paused'), h('option', { value: 'failed' }, 'Last run failed'));
      this.showSelect.addEventListener('change', () => { this.show = this.showSelect.value; this.applyFilter(); });
      this.count = h('span', { class: 'muted' });
      this.banner = h('div', { id: 'import-errors' });
      this.tbody = h('tbody');
      this.emptyRow = h('tr', { hidden: true }, h('td', { colspan: 6, class: 'empty' }, 'No DAG matches the filter.'));
      this.table = h('table', { class: 'dag-table', id: 'dag-table' },
        h('thead', null, h('tr', null,
          h('th', { class: 'col-toggle' }, h('span', { class: 'sr-only' }, 'Active')),
          h('th', null, 'DAG'), h('th', null, 'Schedule'), h('th', null, 'Window'),
          h('th', null, 'Next run'), h('th', null, 'Recent runs'))),
        this.tbody);
      this.el = h('div', { class: 'view-dags' },
        pageHead({ title: h('h1', null, 'DAGs'), subtitle: h('div', { class: 'subtitle' }, this.count),
                   actions: h('div', { class: 'toolbar' }, this.search, this.showSelect) }),
        this.banner,
        h('section', { class: 'card' }, h('div', { class: 'card-body flush' }, this.table)),
        legend(TI_STATES));
      document.title = 'DAGs · Nightshift';
    }

    async refresh() {
      const [dags, windows, errors] = await Promise.all([
        get('/dags?limit=1000'),
        get('/windows', { allow404: true }).catch(() => null),
        get('/importErrors').catch(() => null),
      ]);
      const winList = windows ? (Array.isArray(windows) ? windows : windows.windows || []) : null;
      const winByName = new Map((winList || []).map(w => [w.name, w]));
      this.renderErrors(errors ? errors.import_errors || [] : []);
      const list = dags.dags || [];
      const seen = new Set();
      const minute = Math.floor(Date.now() / 20000);  // relative times ("in 3h") refresh now and then
      let prev = null;
      for (const d of list) {
        seen.add(d.dag_id);
        const win = d.window ? (winList ? winByName.get(d.window) || { name: d.window, unknown: true } : { name: d.window }) : null;
        const sig = JSON.stringify([d, win, minute]);
        let entry = this.rows.get(d.dag_id);
        if (!entry || entry.sig !== sig) {
          const tr = this.buildRow(d, win);
          if (entry) entry.tr.replaceWith(tr);
          entry = { tr, sig, dag: d };
          this.rows.set(d.dag_id, entry);
        }
        const want = prev ? prev.nextSibling : this.tbody.firstChild;
        if (want !== entry.tr) this.tbody.insertBefore(entry.tr, want);
        prev = entry.tr;
      }
      for (const [id, entry] of this.rows) if (!seen.has(id)) { entry.tr.remove(); this.rows.delete(id); }
      if (this.tbody.lastChild !== this.emptyRow) this.tbody.append(this.emptyRow);
      const paused = list.filter(d => d.is_paused).length;
      this.count.textContent = `${list.length} DAG${list.length === 1 ? '' : 's'}` + (paused ? ` · ${paused} paused` : '');
      this.applyFilter();
    }

    applyFilter() {
      const f = this.filter.trim().toLowerCase();
      let shown = 0;
      for (const { tr, dag } of this.rows.values()) {
        const hay = [dag.dag_id, dag.description || '', ...(dag.tags || [])].join('\n').toLowerCase();
        const last = (dag.recent_runs || [])[0];
        const okShow = this.show === 'all' || (this.show === 'active' && !dag.is_paused) ||
          (this.show === 'paused' && dag.is_paused) || (this.show === 'failed' && last && last.state === 'failed');
        tr.hidden = !(okShow && (!f || hay.includes(f)));
        if (!tr.hidden) shown++;
      }
      this.emptyRow.hidden = shown > 0 || this.rows.size === 0;
      if (this.rows.size === 0) {
        this.emptyRow.hidden = false;
        this.emptyRow.firstChild.textContent = 'No DAGs yet: put a *.yaml file in the DAGs folder.';
      } else {
        this.emptyRow.firstChild.textContent = 'No DAG matches the filter.';
      }
    }

    renderErrors(errors) {
      if (!errors.length) { fill(this.banner); return; }
      const sig = JSON.stringify(errors);
      if (this.banner.dataset.sig === sig) return;
      this.banner.dataset.sig = sig;
      fill(this.banner, h('div', { class: 'banner', role: 'alert' },
        h('span', { class: 'banner-icon', 'aria-hidden': 'true' }, '!'),
        h('div', null,
          h('h2', null, `${errors.length} DAG file${errors.length === 1 ? '' : 's'} could not be imported`),
          h('ul', null, errors.map(e => h('li', { class: 'import-error' },
            h('span', { class: 'loc' }, `${e.filename}:${e.line}:${e.column}`), ' — ', e.message))))));
    }

    buildRow(d, win) {
      const tr = h('tr', { class: d.is_paused ? 'paused' : '', dataset: { dagId: d.dag_id } });
      // Toggle
      tr.append(h('td', { class: 'col-toggle' }, pauseSwitch(d, () => poller.kick())));
      // DAG id, description, tags
      tr.append(h('td', { class: 'dag-cell' },
        h('a', { class: 'dag-link', href: dagHref(d.dag_id) }, d.dag_id),
        d.is_paused ? h('span', { class: 'tag tag-paused' }, 'paused') : null,
        d.description ? h('div', { class: 'dag-desc' }, d.description) : null,
        d.has_import_errors ? h('div', { class: 'err-flag' }, '⚠ file has import errors: showing the last good version') : null,
        (d.tags || []).length ? h('div', { class: 'tags' }, d.tags.map(t => h('span', { class: 'tag' }, t))) : null));
      // Schedule
      tr.append(h('td', { 'data-label': 'Schedule' },
        d.schedule ? h('code', null, d.schedule) : h('span', { class: 'muted' }, 'manual'),
        d.timezone && d.timezone !== 'UTC' ? h('span', { class: 'cell-sub' }, d.timezone) : null));
      // Window
      const winCell = h('td', { 'data-label': 'Window' });
      if (!win) {
        winCell.append(h('span', { class: 'faint', title: 'No batch window: tasks may start any time' }, 'any time'));
      } else {
        const open = win.is_open;
        winCell.append(h('span', { class: 'win' }, win.name,
          open === undefined ? null : h('span', { class: 'win-state ' + (open ? 'open' : 'closed') }, open ? 'open' : 'closed')));
        if (win.next_change) {
          winCell.append(h('span', { class: 'cell-sub', title: fmtTime(win.next_change) },
            `${open ? 'closes' : 'opens'} ${fmtRel(win.next_change)}`));
        }
      }
      tr.append(winCell);
      // Next run
      tr.append(h('td', { 'data-label': 'Next run' },
        d.next_run ? [h('span', { class: 'nowrap' }, fmtTime(d.next_run)), h('span', { class: 'cell-sub' }, fmtRel(d.next_run))]
                   : h('span', { class: 'faint' }, d.schedule ? (d.is_paused ? 'paused' : '—') : 'on trigger')));
      // Recent runs: newest first from the API, drawn oldest to newest, left to right.
      const runsCell = h('td', { 'data-label': 'Runs' });
      if (Array.isArray(d.recent_runs)) {
        if (!d.recent_runs.length) runsCell.append(h('span', { class: 'faint' }, 'no runs yet'));
        else {
          runsCell.append(h('div', { class: 'squares' }, d.recent_runs.slice(0, 10).reverse().map(r =>
            h('a', { class: 'sq ' + safeClass(r.state), href: runHref(d.dag_id, r.dag_run_id),
                     title: `${r.dag_run_id} · ${stateLabel(r.state)}`, 'aria-label': `run ${r.dag_run_id}: ${stateLabel(r.state)}` }))));
        }
      } else {
        runsCell.append(h('span', { class: 'faint' }, '—'));
      }
      tr.append(runsCell);
      return tr;
    }

    destroy() {}
  }

  // ---------- DAG page ----------

  class DagView {
    constructor(route) {
      this.dagId = route.dagId;
      this.dag = null;
      this.selectedRunId = route.query.get('run') || null;  // null: follow the newest run
      this.limit = Number(sessionStorage.getItem(GRID_LIMIT_KEY)) || 25;
      this.gridMissingSince = 0;
      this.head = h('div');
      this.graph = new GraphView((taskId) => this.openTask(taskId));
      this.grid = new GridCanvas({
        onCellClick: (run, taskId) => { location.hash = runHref(this.dagId, run.dag_run_id, { task_id: taskId }); },
        onRunClick: (run) => { this.selectedRunId = run.dag_run_id; this.renderSelection(); },
      });
      this.runSelect = h('select', { id: 'run-select', 'aria-label': 'Selected run' });
      this.runSelect.addEventListener('change', () => {
        this.selectedRunId = this.runSelect.value || null;
        this.renderSelection();
      });
      this.selectedInfo = h('div', { class: 'selected-run', id: 'selected-run' });
      const limitSelect = h('select', { 'aria-label': 'Runs in the grid' },
        [25, 50, 100, 250, 500].map(n => h('option', { value: n, selected: n === this.limit }, `${n} runs`)));
      limitSelect.addEventListener('change', () => {
        this.limit = Number(limitSelect.value);
        sessionStorage.setItem(GRID_LIMIT_KEY, String(this.limit));
        poller.kick();
      });
      this.gridFoot = h('div', { class: 'grid-foot' });
      this.el = h('div', { class: 'view-dag' },
        this.head,
        h('section', { class: 'card', id: 'graph-card' },
          h('div', { class: 'card-head' }, h('h2', null, 'Graph'),
            h('label', { class: 'run-picker' }, h('span', { class: 'muted' }, 'Run'), this.runSelect),
            h('div', { class: 'tools' }, this.selectedInfo)),
          this.graph.el),
        h('section', { class: 'card', id: 'grid-card' },
          h('div', { class: 'card-head' }, h('h2', null, 'Grid'),
            h('span', { class: 'hint' }, 'Recent runs × tasks, newest on the right. Click a square to open that task in its run; click a bar to select the run.'),
            h('div', { class: 'tools' }, limitSelect)),
          this.grid.wrap, this.gridFoot),
        legend(TI_STATES));
      document.title = `${this.dagId} · Nightshift`;
    }

    destroy() { this.grid.destroy(); }

    openTask(taskId) {
      const run = this.currentRun();
      if (!run) { toast('This DAG has no runs yet: trigger one first.'); return; }
      location.hash = runHref(this.dagId, run.dag_run_id, { task_id: taskId });
    }

    currentRun() {
      const runs = this.runs || [];
      return runs.find(r => r.dag_run_id === this.selectedRunId) || runs[0] || null;  // runs: newest first
    }

    async refresh() {
      const dag = await get(dagPath(this.dagId));
      if (!this.dag || JSON.stringify(this.dag) !== JSON.stringify(dag)) {
        this.dag = dag;
        this.renderHead();
        this.graph.setTasks(dag.tasks || []);
      }
      const taskIds = (dag.tasks || []).map(t => t.task_id);
      let grid = null;
      // A big grid (hundreds of runs) is a big response: refresh it every 5 s instead of every poll.
      const fresh = this.gridData && this.gridData.limit === this.limit && this.limit > 100 &&
                    Date.now() - this.gridData.at < 5000;
      if (fresh) {
        grid = this.gridData.grid;
      } else if (!this.gridMissingSince || Date.now() - this.gridMissingSince > 30000) {
        grid = await get(`${dagPath(this.dagId)}/grid?limit=${this.limit}`, { allow404: true });
        this.gridMissingSince = grid ? 0 : Date.now();
        this.gridData = grid ? { grid, limit: this.limit, at: Date.now() } : null;
      }
      if (grid) {
        this.tasks = grid.tasks || taskIds;
        this.runs = grid.runs || [];
        this.gridNote = '';
      } else {
        // No grid endpoint on this daemon: columns from the run list, squares for the selected run only.
        const page = await get(`${dagPath(this.dagId)}/dagRuns?limit=${this.limit}`);
        this.tasks = taskIds;
        this.runs = (page.dag_runs || []).map(r => ({ ...r, states: null }));
        const run = this.currentRun();
        if (run) {
          const tis = await get(`${runPath(this.dagId, run.dag_run_id)}/taskInstances`, { allow404: true });
          const by = new Map();
          for (const ti of (tis && tis.task_instances) || []) (by.get(ti.task_id) || by.set(ti.task_id, []).get(ti.task_id)).push(ti.state);
          run.states = this.tasks.map(t => aggregateState(by.get(t) || []));
        }
        this.gridNote = 'This daemon has no grid endpoint: only the selected run\'s squares are shown.';
      }
      this.renderSelection();
    }

    renderSelection() {
      const runs = this.runs || [];
      // The run picker (newest first).
      const optSig = JSON.stringify(runs.map(r => [r.dag_run_id, r.state])) + '|' + this.selectedRunId;
      if (this.runSelect.dataset.sig !== optSig) {
        this.runSelect.dataset.sig = optSig;
        fill(this.runSelect,
          h('option', { value: '' }, runs.length ? 'Latest run' : 'No runs yet'),
          runs.map(r => h('option', { value: r.dag_run_id, selected: r.dag_run_id === this.selectedRunId },
            `${r.dag_run_id} (${stateLabel(r.state)})`)));
      }
      const run = this.currentRun();
      const states = new Map();
      if (run && run.states) this.tasks.forEach((t, i) => states.set(t, run.states[i] || null));
      this.graph.setStates(states);
      fill(this.selectedInfo, run
        ? [badge(run.state), h('span', { class: 'muted' }, fmtTime(run.start_date || run.logical_date)),
           h('span', { class: 'muted' }, fmtDur(spanSeconds(run.start_date, run.end_date))),
           h('a', { href: runHref(this.dagId, run.dag_run_id), id: 'open-run' }, 'Open run →')]
        : h('span', { class: 'muted' }, 'No runs yet'));
      this.grid.setData(this.tasks, runs.slice().reverse(), run ? run.dag_run_id : null);
      const counts = {};
      for (const r of runs) counts[r.state] = (counts[r.state] || 0) + 1;
      fill(this.gridFoot,
        h('span', null, `${runs.length} run${runs.length === 1 ? '' : 's'} × ${this.tasks.length} task${this.tasks.length === 1 ? '' : 's'}`),
        Object.entries(counts).map(([st, n]) => h('span', { class: 'legend-item' }, h('span', { class: 'sq ' + safeClass(st) }), `${n} ${stateLabel(st)}`)),
        this.gridNote ? h('span', { class: 'faint' }, this.gridNote) : null);
    }

    renderHead() {
      const d = this.dag;
      const trigger = h('button', { class: 'btn btn-primary', type: 'button', id: 'trigger-button' },
        h('span', { class: 'icon', 'aria-hidden': 'true' }, '▶'), 'Trigger');
      trigger.addEventListener('click', () => openTrigger(d));
      fill(this.head, pageHead({
        crumbs: [{ text: 'DAGs', href: '#/' }, { text: d.dag_id }],
        title: h('h1', null, d.dag_id),
        titleExtra: [d.is_paused ? h('span', { class: 'badge st-queued' }, 'paused') : null,
                     (d.tags || []).length ? h('span', { class: 'tags' }, d.tags.map(t => h('span', { class: 'tag' }, t))) : null],
        subtitle: d.description ? h('div', { class: 'subtitle', id: 'dag-description' }, d.description) : null,
        meta: h('div', { class: 'meta' },
          metaItem('Schedule', d.schedule || 'manual'),
          metaItem('Timezone', d.timezone || 'UTC'),
          metaItem('Window', d.window || 'any time'),
          metaItem('Next run', d.next_run ? `${fmtTime(d.next_run)} (${fmtRel(d.next_run)})` : '—'),
          metaItem('Tasks', String((d.tasks || []).length)),
          d.fileloc ? metaItem('File', d.fileloc) : null),
        actions: [h('label', { class: 'switch-label' }, pauseSwitch(d, () => poller.kick()), d.is_paused ? 'Paused' : 'Active'), trigger],
      }));
    }
  }

  // ---------- Trigger dialog ----------

  function validateConf(text) {
    if (!text.trim()) return { ok: true, value: {} };
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, message: 'conf must be a JSON object, like {"key": "value"}' };
      return { ok: true, value };
    } catch (e) {
      return { ok: false, message: e.message };
    }
  }

  function openTrigger(dag) {
    const dialog = $('#trigger-dialog'), conf = $('#trigger-conf'), status = $('#trigger-conf-status');
    const runId = $('#trigger-run-id'), error = $('#trigger-error'), submit = $('#trigger-submit');
    $('#trigger-title').textContent = `Trigger ${dag.dag_id}`;
    conf.value = JSON.stringify(dag.params && typeof dag.params === 'object' ? dag.params : {}, null, 2);
    runId.value = '';
    error.hidden = true;
    const check = () => {
      const v = validateConf(conf.value);
      status.textContent = v.ok ? '✓ valid JSON object' : '✗ ' + v.message;
      status.className = 'field-status ' + (v.ok ? 'ok' : 'bad');
      const idOk = !runId.value || /^[A-Za-z0-9_.~:+-]{1,250}$/.test(runId.value);
      submit.disabled = !v.ok || !idOk;
      return v;
    };
    check();
    const onInput = () => check();
    let busy = false;
    const onSubmit = async (e) => {
      e.preventDefault();
      if (busy) return;
      const v = check();
      if (!v.ok) return;
      busy = true;
      submit.disabled = true;
      error.hidden = true;
      const body = { conf: v.value };
      if (runId.value.trim()) body.dag_run_id = runId.value.trim();
      try {
        const run = await request('POST', `${dagPath(dag.dag_id)}/dagRuns`, { body });
        dialog.close();
        toast(`Triggered ${dag.dag_id}: ${run.dag_run_id}`);
        location.hash = runHref(dag.dag_id, run.dag_run_id);
      } catch (err) {
        error.hidden = false;
        error.textContent = `${err.status ? err.status + ' ' : ''}${err.title || 'Error'}: ${err.detail || err.message}`;
      } finally {
        busy = false;
        check();
      }
    };
    const onCancel = () => dialog.close();
    const onClose = () => {
      conf.removeEventListener('input', onInput);
      runId.removeEventListener('input', onInput);
      $('#trigger-form').removeEventListener('submit', onSubmit);
      $('#trigger-cancel').removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
    };
    conf.addEventListener('input', onInput);
    runId.addEventListener('input', onInput);
    $('#trigger-form').addEventListener('submit', onSubmit);
    $('#trigger-cancel').addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    conf.focus();
  }

  // ---------- Run page ----------

  const tiKey = (ti) => `${ti.task_id}\u0000${ti.map_index ?? -1}`;

  class RunView {
    constructor(route) {
      this.dagId = route.dagId;
      this.runId = route.runId;
      this.dag = null;
      this.rows = new Map();
      this.selected = null;   // {task_id, map_index}
      this.log = null;        // log follower state
      this.head = h('div');
      this.confBox = h('div');
      this.summary = h('div', { class: 'tools' });
      this.axis = h('div', { class: 'gantt-axis' });
      this.body = h('div', { class: 'ti-body', id: 'task-instances' });
      this.panel = h('section', { class: 'card task-panel', id: 'task-panel' });
      this.el = h('div', { class: 'view-run' },
        this.head, this.confBox,
        h('section', { class: 'card' },
          h('div', { class: 'card-head' }, h('h2', null, 'Task instances'),
            h('span', { class: 'hint' }, 'Gantt: a bar per try, from its start to its end; earlier tries are faded'), this.summary),
          h('div', { class: 'card-body flush ti-table' },
            h('div', { class: 'ti-head' }, h('div', null, 'Task'), h('div', null, 'State'), h('div', null, 'Try'),
              h('div', null, 'Duration'), h('div', null, 'Progress'), this.axis),
            this.body)),
        this.panel,
        legend(TI_STATES));
      this.onRoute(route);
      document.title = `${this.runId} · ${this.dagId} · Nightshift`;
    }

    onRoute(route) {
      const task = route.query.get('task');
      if (task) {
        const map = route.query.has('map') ? Number(route.query.get('map')) : null;
        const tryNum = route.query.has('try') ? Number(route.query.get('try')) : null;
        this.select({ task_id: task, map_index: map }, tryNum);
      }
    }

    destroy() { this.log = null; }

    async refresh() {
      const needDag = !this.dag;
      const [run, tis, dag] = await Promise.all([
        get(runPath(this.dagId, this.runId)),
        get(`${runPath(this.dagId, this.runId)}/taskInstances`),
        needDag ? get(dagPath(this.dagId)).catch(() => ({ tasks: [] })) : Promise.resolve(this.dag),
      ]);
      this.dag = dag;
      this.run = run;
      this.tis = this.order(tis.task_instances || []);
      await this.fetchTries();
      this.renderHead();
      this.renderRows();
      this.renderPanel();
      await this.pollLog();
    }

    // Earlier tries of retried or cleared tasks, for the Gantt, and every try of the selected task, for
    // its panel. A try that has ended never changes, so each task's list is fetched again only when its
    // try number or state moves on.
    async fetchTries() {
      if (this.triesMissing) return;
      this.tries ||= new Map();
      const wanted = this.tis.filter(ti => {
        const have = this.tries.get(tiKey(ti));
        const sig = `${ti.try_number}|${ti.state}`;
        return (ti.try_number > 1 || this.isSelected(ti)) && ti.try_number > 0 && (!have || have.sig !== sig);
      }).slice(0, 20);
      await Promise.all(wanted.map(async (ti) => {
        let path = `${tiPath(this.dagId, this.runId, ti.task_id)}/tries`;
        if ((ti.map_index ?? -1) >= 0) path += `?map_index=${ti.map_index}`;
        try {
          const body = await get(path, { allow404: true });
          if (body === null) { this.triesMissing = true; return; }
          this.tries.set(tiKey(ti), { sig: `${ti.try_number}|${ti.state}`, list: body.tries || [] });
        } catch (_) { /* the Gantt shows the latest try without them */ }
      }));
    }

    triesOf(ti) {
      const t = this.tries && this.tries.get(tiKey(ti));
      return t ? t.list : [];
    }

    order(tis) {
      const tasks = (this.dag && this.dag.tasks) || [];
      const { layerOf } = layerTasks(tasks);
      const idx = new Map(tasks.map((t, i) => [t.task_id, i]));
      const rank = (ti) => [layerOf.has(ti.task_id) ? layerOf.get(ti.task_id) : 1e9, idx.has(ti.task_id) ? idx.get(ti.task_id) : 1e9];
      return tis.slice().sort((a, b) => {
        const ra = rank(a), rb = rank(b);
        return ra[0] - rb[0] || ra[1] - rb[1] || a.task_id.localeCompare(b.task_id) || (a.map_index ?? -1) - (b.map_index ?? -1);
      });
    }

    renderHead() {
      const r = this.run;
      const sig = JSON.stringify(r);
      if (this.headSig === sig) {
        if (this.durEl) this.durEl.textContent = fmtDur(spanSeconds(r.start_date, r.end_date));
        return;
      }
      this.headSig = sig;
      const mark = (state) => {
        const b = h('button', { class: 'btn btn-sm' + (state === 'failed' ? ' btn-danger' : ''), type: 'button' }, `Mark run ${state}`);
        b.addEventListener('click', async () => {
          if (!await confirmBox(`Mark run ${state}?`, `Run ${r.dag_run_id} of ${this.dagId} will be marked ${state}.`, `Mark ${state}`)) return;
          try {
            await request('PATCH', runPath(this.dagId, this.runId), { body: { state } });
            toast(`Run marked ${state}`);
            poller.kick();
          } catch (err) { toast(`Could not mark the run: ${err.message}`, 'error'); }
        });
        return b;
      };
      fill(this.head, pageHead({
        crumbs: [{ text: 'DAGs', href: '#/' }, { text: this.dagId, href: dagHref(this.dagId) }, { text: 'Run' }],
        title: h('h1', { class: 'mono-title' }, r.dag_run_id),
        titleExtra: badge(r.state, { id: 'run-state', dataset: { state: stateName(r.state) } }),
        meta: h('div', { class: 'meta' },
          metaItem('Type', r.run_type || '—'),
          metaItem('Logical date', fmtTime(r.logical_date)),
          metaItem('Started', fmtTime(r.start_date)),
          metaItem('Ended', fmtTime(r.end_date)),
          metaItem('Duration', fmtDur(spanSeconds(r.start_date, r.end_date)), { id: 'run-duration' })),
        actions: [mark('success'), mark('failed')],
      }));
      this.durEl = this.head.querySelector('#run-duration .v');
      const confSig = JSON.stringify(r.conf || {});
      if (this.confSig !== confSig) {
        this.confSig = confSig;
        const keys = Object.keys(r.conf || {});
        fill(this.confBox, keys.length
          ? h('details', { class: 'run-conf' }, h('summary', null, `Conf (${keys.length} key${keys.length === 1 ? '' : 's'})`),
              h('pre', { class: 'json-box', id: 'run-conf' }, JSON.stringify(r.conf, null, 2)))
          : null);
      }
    }

    // The Gantt's time span: first start to last end (or now while something runs).
    span() {
      let t0 = Infinity, t1 = -Infinity;
      const now = Date.now();
      for (const ti of this.tis) {
        for (const tr of this.triesOf(ti)) {
          const a = parseTime(tr.start_date);
          if (a !== null) t0 = Math.min(t0, a);
        }
        const a = parseTime(ti.start_date);
        if (a === null) continue;
        t0 = Math.min(t0, a);
        t1 = Math.max(t1, parseTime(ti.end_date) ?? now);
      }
      if (t0 === Infinity) {
        const a = parseTime(this.run.start_date);
        if (a === null) return null;
        t0 = a; t1 = parseTime(this.run.end_date) ?? now;
      }
      // Round the span up to a whole number of "nice" steps, so ticks fall on round offsets.
      const total = Math.max(0.5, (t1 - t0) / 1000);
      const step = GANTT_STEPS.find(st => total / st <= 5) || 86400 * Math.ceil(total / 86400 / 5);
      const n = Math.max(1, Math.ceil(total / step - 1e-9));
      return { t0, t1: t0 + n * step * 1000, step, n };
    }

    renderRows() {
      const span = this.span();
      this.renderAxis(span);
      const counts = {};
      const seen = new Set();
      let prev = null;
      for (const ti of this.tis) {
        counts[ti.state] = (counts[ti.state] || 0) + 1;
        const key = tiKey(ti);
        seen.add(key);
        const live = ti.state === 'running' ? Math.floor(Date.now() / 1000) : 0;
        const sel = this.isSelected(ti);
        const sig = JSON.stringify([ti, span, live, sel, this.triesOf(ti)]);
        let entry = this.rows.get(key);
        if (!entry || entry.sig !== sig) {
          const row = this.buildRow(ti, span, sel);
          if (entry) entry.row.replaceWith(row);
          entry = { row, sig };
          this.rows.set(key, entry);
        }
        const want = prev ? prev.nextSibling : this.body.firstChild;
        if (want !== entry.row) this.body.insertBefore(entry.row, want);
        prev = entry.row;
      }
      for (const [key, entry] of this.rows) if (!seen.has(key)) { entry.row.remove(); this.rows.delete(key); }
      if (!this.tis.length) {
        if (!this.emptyEl) this.emptyEl = h('div', { class: 'empty' }, 'No task instances yet: the run has not been scheduled.');
        this.body.append(this.emptyEl);
      } else if (this.emptyEl) this.emptyEl.remove();
      fill(this.summary, TI_STATES.filter(st => counts[st]).map(st =>
        h('span', { class: 'legend-item' }, h('span', { class: 'sq ' + safeClass(st) }), `${counts[st]} ${stateLabel(st)}`)));
    }

    renderAxis(span) {
      if (!span) { fill(this.axis, 'Timeline'); return; }
      // The tracks' grid lines (a repeating gradient in style.css) follow the same step.
      this.el.style.setProperty('--tick', (100 / span.n) + '%');
      const ticks = [];
      for (let i = 0; i <= span.n; i++) {
        const tick = h('span', { class: 'gantt-tick' + (i === 0 ? ' first' : i === span.n ? ' last' : '') },
          i === 0 ? fmtClock(span.t0) : '+' + fmtStep(i * span.step));
        tick.style.left = (i / span.n * 100) + '%';
        ticks.push(tick);
      }
      fill(this.axis, ticks);
    }

    buildRow(ti, span, selected) {
      const mapped = ti.map_index !== undefined && ti.map_index !== null && ti.map_index >= 0;
      const row = h('div', { class: 'ti-row' + (selected ? ' selected' : ''), role: 'button', tabindex: 0,
                             dataset: { taskId: ti.task_id, mapIndex: String(ti.map_index ?? -1), state: stateName(ti.state), try: String(ti.try_number ?? 0) },
                             'aria-label': `${ti.task_id}${mapped ? ' [' + ti.map_index + ']' : ''}: ${stateLabel(ti.state)}` });
      const select = () => this.select({ task_id: ti.task_id, map_index: mapped ? ti.map_index : null }, null, true);
      row.addEventListener('click', select);
      row.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(); } });
      row.append(h('div', { class: 'c-name ti-name' }, ti.task_id, mapped ? h('span', { class: 'map' }, `[${ti.map_index}]`) : null,
        ti.cached ? h('span', { class: 'tag', title: 'Result reused from the cache' }, 'cached') : null,
        ti.waiting_reason ? h('span', { class: 'ti-wait' }, ti.waiting_reason) : null));
      row.append(h('div', { class: 'c-state' }, badge(ti.state)));
      const dur = ti.duration ?? (ti.start_date ? spanSeconds(ti.start_date, ti.end_date) : null);
      row.append(h('div', { class: 'c-meta' },
        h('div', { class: 'c-try ti-num' }, h('span', { class: 'lbl' }, 'try'), ti.max_tries ? `${ti.try_number}/${ti.max_tries}` : String(ti.try_number ?? 0)),
        h('div', { class: 'c-dur ti-num' }, h('span', { class: 'lbl' }, ' · '), fmtDur(dur))));
      const progCell = h('div', { class: 'c-prog' });
      if (typeof ti.progress === 'number') {
        const p = Math.max(0, Math.min(1, ti.progress));
        const fill = h('div', { class: 'progress-fill' });
        fill.style.width = (p * 100).toFixed(1) + '%';
        if (ti.state && ti.state !== 'running') fill.style.background = `var(--st-${stateName(ti.state)})`;
        progCell.append(h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
                                   'aria-valuenow': Math.round(p * 100) }, fill),
                        h('div', { class: 'progress-text' }, `${Math.round(p * 100)}%`));
      } else {
        progCell.append(h('span', { class: 'faint' }, '—'));
      }
      row.append(progCell);
      const track = h('div', { class: 'gantt-track' });
      if (span) {
        // Earlier tries, faded, before the latest one.
        for (const tr of this.triesOf(ti)) {
          const a = parseTime(tr.start_date), b = parseTime(tr.end_date);
          if (tr.try_number >= (ti.try_number || 0) || a === null || b === null) continue;
          const bar = h('div', { class: 'gantt-bar prev ' + safeClass(tr.state),
            title: `${ti.task_id} try ${tr.try_number}: ${stateLabel(tr.state)}${tr.reason ? ' (' + tr.reason + ')' : ''}, ${fmtDur((b - a) / 1000)}` });
          bar.style.left = ((a - span.t0) / (span.t1 - span.t0) * 100).toFixed(3) + '%';
          bar.style.width = (Math.max(0, b - a) / (span.t1 - span.t0) * 100).toFixed(3) + '%';
          track.append(bar);
        }
      }
      const start = parseTime(ti.start_date);
      if (span && start !== null) {
        const end = parseTime(ti.end_date) ?? Date.now();
        const total = span.t1 - span.t0;
        const bar = h('div', { class: 'gantt-bar ' + safeClass(ti.state) + (ti.end_date ? '' : ' live'),
                               title: `${ti.task_id}: ${fmtTime(ti.start_date)} → ${ti.end_date ? fmtTime(ti.end_date) : 'running'} (${fmtDur((end - start) / 1000)})` });
        bar.style.left = ((start - span.t0) / total * 100).toFixed(3) + '%';
        bar.style.width = (Math.max(0, end - start) / total * 100).toFixed(3) + '%';
        track.append(bar);
      }
      row.append(h('div', { class: 'c-gantt' }, track));
      return row;
    }

    isSelected(ti) {
      const s2 = this.selected;
      return !!s2 && s2.task_id === ti.task_id && (s2.map_index === null ? (ti.map_index ?? -1) < 0 || this.firstOf(ti) : s2.map_index === ti.map_index);
    }

    // For a selection without a map index, a mapped task selects its first instance.
    firstOf(ti) {
      const first = (this.tis || []).find(t => t.task_id === ti.task_id);
      return first === ti;
    }

    selectedTi() {
      return (this.tis || []).find(ti => this.isSelected(ti)) || null;
    }

    select(sel, tryNum, fromClick) {
      const changed = !this.selected || this.selected.task_id !== sel.task_id || this.selected.map_index !== sel.map_index;
      this.selected = sel;
      if (changed || tryNum) { this.log = null; this.wantTry = tryNum || null; this.panelSig = null; }
      if (fromClick) {
        const q = new URLSearchParams({ task: sel.task_id });
        if (sel.map_index !== null && sel.map_index >= 0) q.set('map', sel.map_index);
        history.replaceState(null, '', `${dagHref(this.dagId)}/run/${enc(this.runId)}?${q}`);
      }
      if (this.tis) {
        this.renderRows();
        this.renderPanel();
        this.pollLog().catch(() => {});
      }
    }

    renderPanel() {
      const ti = this.selectedTi();
      if (!ti) {
        if (this.panelSig !== 'none') {
          this.panelSig = 'none';
          fill(this.panel, h('div', { class: 'empty' }, this.selected
            ? `Task ${this.selected.task_id} is not in this run.`
            : 'Select a task above to see its details, its log and actions.'));
        }
        return;
      }
      // Pick the try: the one asked for, else the latest (and follow new tries as they start).
      const latest = ti.try_number || 0;
      const tryNum = this.wantTry && this.wantTry <= latest ? this.wantTry : latest;
      if (this.log && this.log.tryNum !== tryNum) this.log = null;
      const sig = JSON.stringify([ti, tryNum, Math.floor(Date.now() / 1000)]);
      if (this.panelSig === sig) return;
      const firstBuild = !this.panelEls || this.panelEls.key !== tiKey(ti) + '|' + tryNum || !this.panel.contains(this.panelEls.pre);
      this.panelSig = sig;
      if (firstBuild) this.log = null;
      const mapped = (ti.map_index ?? -1) >= 0;
      if (firstBuild) {
        const action = (label, cls, fn) => {
          const b = h('button', { class: 'btn btn-sm ' + (cls || ''), type: 'button' }, label);
          b.addEventListener('click', fn);
          return b;
        };
        const path = tiPath(this.dagId, this.runId, ti.task_id);
        const doClear = async (downstream) => {
          if (!await confirmBox(`Clear ${ti.task_id}?`, downstream
            ? `${ti.task_id} and every task downstream of it will run again in this run.`
            : `${ti.task_id} will run again in this run.`, 'Clear')) return;
          try {
            await request('POST', path + '/clear', { body: { downstream } });
            toast(`Cleared ${ti.task_id}${downstream ? ' and downstream' : ''}`);
            this.wantTry = null;
            poller.kick();
          } catch (err) { toast(`Could not clear ${ti.task_id}: ${err.message}`, 'error'); }
        };
        const doMark = async (state) => {
          if (!await confirmBox(`Mark ${ti.task_id} ${state}?`, `The run goes on from there as if ${ti.task_id} had ${state === 'success' ? 'succeeded' : 'failed'}.`, `Mark ${state}`)) return;
          try {
            await request('PATCH', path, { body: { state } });
            toast(`Marked ${ti.task_id} ${state}`);
            poller.kick();
          } catch (err) { toast(`Could not mark ${ti.task_id}: ${err.message}`, 'error'); }
        };
        const titleBadge = h('span');
        const kv = h('div', { class: 'kv' });
        const output = h('div');
        const tries = h('div', { class: 'tries', role: 'group', 'aria-label': 'Tries' });
        const status = h('span', { class: 'log-status', id: 'log-status' });
        const follow = h('input', { type: 'checkbox', checked: true, id: 'log-follow' });
        const wrap = h('input', { type: 'checkbox', id: 'log-wrap' });
        const pre = h('pre', { class: 'log', id: 'log', tabindex: 0, 'aria-label': 'Task log', dataset: { complete: 'false' } });
        wrap.addEventListener('change', () => pre.classList.toggle('wrap', wrap.checked));
        fill(this.panel,
          h('div', { class: 'card-head' },
            h('h2', null, ti.task_id, mapped ? ` [${ti.map_index}]` : ''), titleBadge,
            h('div', { class: 'tools task-actions' },
              action('Clear', '', () => doClear(false)),
              action('Clear with downstream', '', () => doClear(true)),
              action('Mark success', '', () => doMark('success')),
              action('Mark failed', 'btn-danger', () => doMark('failed')))),
          h('div', { class: 'card-body' },
            kv, output,
            h('div', { class: 'log-head' }, h('h3', null, 'Log'), tries, status, h('span', { class: 'spacer' }),
              h('label', { class: 'check' }, follow, 'Follow'), h('label', { class: 'check' }, wrap, 'Wrap lines')),
            pre));
        this.panelEls = { key: tiKey(ti) + '|' + tryNum, titleBadge, kv, output, tries, status, pre, follow };
      }
      const els = this.panelEls;
      fill(els.titleBadge, badge(ti.state));
      const dur = ti.duration ?? (ti.start_date ? spanSeconds(ti.start_date, ti.end_date) : null);
      const kvItem = (k, v) => h('div', null, h('span', { class: 'k' }, k), h('span', { class: 'v' }, v));
      fill(els.kv,
        kvItem('Try', ti.max_tries ? `${ti.try_number} of ${ti.max_tries}` : String(ti.try_number ?? 0)),
        kvItem('Started', fmtTime(ti.start_date)),
        kvItem('Ended', fmtTime(ti.end_date)),
        kvItem('Duration', fmtDur(dur)),
        kvItem('Pool', ti.pool || 'default'),
        kvItem('Priority weight', String(ti.priority_weight ?? '—')),
        typeof ti.progress === 'number' ? kvItem('Progress', `${Math.round(ti.progress * 100)}%`) : null,
        ti.cached ? kvItem('Cached', 'yes: result reused') : null,
        ti.waiting_reason ? kvItem('Waiting because', ti.waiting_reason) : null,
        ...this.tryFacts(ti, tryNum).map(([k, v]) => kvItem(k, v)));
      const outSig = JSON.stringify(ti.output ?? null);
      if (els.outSig !== outSig) {
        els.outSig = outSig;
        fill(els.output, ti.output !== null && ti.output !== undefined
          ? [h('h3', null, 'Output'), h('pre', { class: 'json-box mono' }, typeof ti.output === 'string' ? ti.output : JSON.stringify(ti.output, null, 2))]
          : []);
      }
      const tryList = this.triesOf(ti);
      const triesSig = `${latest}|${tryNum}|${JSON.stringify(tryList)}`;
      if (els.triesSig !== triesSig) {
        els.triesSig = triesSig;
        const buttons = [];
        const byNum = new Map(tryList.map(tr => [tr.try_number, tr]));
        for (let n = 1; n <= latest; n++) {
          const tr = byNum.get(n);
          const st = n === latest ? ti.state : tr && tr.state;
          const b = h('button', { class: 'btn try-btn', type: 'button', 'aria-pressed': String(n === tryNum),
                                  title: tr ? `${stateLabel(tr.state)}${tr.exit_code !== null && tr.exit_code !== undefined ? ', exit code ' + tr.exit_code : ''}${tr.reason ? ': ' + tr.reason : ''}` : '' },
            h('span', { class: 'sq ' + safeClass(st), 'aria-hidden': 'true' }), `Try ${n}`);
          b.addEventListener('click', () => { this.wantTry = n === latest ? null : n; this.log = null; this.panelSig = null; this.renderPanel(); this.pollLog().catch(() => {}); });
          buttons.push(b);
        }
        fill(els.tries, ...buttons);
      }
      if (!this.log) {
        this.log = { tryNum, key: tiKey(ti), offset: 0, complete: false, decoder: new TextDecoder(), bytes: 0, error: null, busy: false };
        fill(els.pre);
        els.pre.dataset.complete = 'false';
        els.pre.dataset.try = String(tryNum);
        if (!tryNum) {
          els.pre.append(h('span', { class: 'log-note' }, 'This task has not started yet: its log appears here once it runs.'));
          this.log.complete = true;
        }
      }
      this.renderLogStatus();
    }

    // Exit code and reason of the try on show, from the tries endpoint.
    tryFacts(ti, tryNum) {
      const tr = this.triesOf(ti).find(t => t.try_number === tryNum);
      if (!tr) return [];
      const facts = [];
      if (tryNum !== ti.try_number) facts.push([`Try ${tryNum}`, `${stateLabel(tr.state)}, ${fmtDur(spanSeconds(tr.start_date, tr.end_date))}`]);
      if (tr.exit_code !== null && tr.exit_code !== undefined) facts.push(['Exit code', String(tr.exit_code)]);
      if (tr.reason) facts.push(['Reason', tr.reason]);
      return facts;
    }

    renderLogStatus() {
      const els = this.panelEls, log = this.log;
      if (!els || !log) return;
      const ti = this.selectedTi();
      els.status.className = 'log-status' + (!log.complete && !log.error ? ' live' : '');
      els.status.textContent = log.error ? log.error
        : !log.tryNum ? ''
        : log.complete ? `try ${log.tryNum} · complete · ${log.bytes} bytes`
        : `try ${log.tryNum} · following${ti && ti.state !== 'running' ? '' : ' a running task'} · ${log.bytes} bytes`;
    }

    async pollLog() {
      const log = this.log, els = this.panelEls;
      if (!log || !els || log.complete || log.busy || !log.tryNum) return;
      const ti = this.selectedTi();
      if (!ti || tiKey(ti) !== log.key) return;
      log.busy = true;
      try {
        for (let round = 0; round < 8 && this.log === log && !log.complete; round++) {
          let url = `${tiPath(this.dagId, this.runId, ti.task_id)}/logs/${log.tryNum}?offset=${log.offset}`;
          if ((ti.map_index ?? -1) >= 0) url += `&map_index=${ti.map_index}`;
          let res;
          try {
            res = await request('GET', url, { raw: true });
          } catch (err) {
            if (this.log !== log) return;
            const ended = TERMINAL.has(ti.state) || log.tryNum < (ti.try_number || 0);
            log.error = err.status === 404 && !ended ? 'waiting for the log…' : `no log: ${err.detail || err.message}`;
            if (err.status === 404 && ended) log.complete = true;
            break;
          }
          if (this.log !== log) return;
          log.error = null;
          const buf = new Uint8Array(await res.arrayBuffer());
          if (this.log !== log) return;
          const next = Number(res.headers.get('X-Next-Offset'));
          const complete = res.headers.get('X-Log-Complete');
          log.offset = Number.isFinite(next) && res.headers.has('X-Next-Offset') ? next : log.offset + buf.length;
          log.bytes = Math.max(log.bytes, log.offset);
          const text = log.decoder.decode(buf, { stream: !(complete === 'true') });
          if (text) {
            const pre = els.pre;
            const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 24;
            pre.append(document.createTextNode(text));
            if (els.follow.checked && (atBottom || round === 0)) pre.scrollTop = pre.scrollHeight;
          }
          if (complete === 'true' || (complete === null && !buf.length && TERMINAL.has(ti.state))) {
            log.complete = true;
            if (!log.bytes) els.pre.append(h('span', { class: 'log-note' }, '(empty log)'));
          }
          if (!buf.length) break;
        }
      } finally {
        log.busy = false;
        if (this.log === log) {
          els.pre.dataset.complete = String(log.complete);
          this.renderLogStatus();
        }
      }
    }
  }

  class NotFoundView {
    constructor() {
      this.el = h('div', { class: 'card card-body empty' }, 'No such page. ', h('a', { href: '#/' }, 'Back to the DAGs'));
    }
    async refresh() {}
    destroy() {}
  }

  // ------------------------------------------------------------------------------------------------
  // Router and poller

  function parseRoute() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const qi = raw.indexOf('?');
    const path = qi < 0 ? raw : raw.slice(0, qi);
    const query = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
    let segs;
    try { segs = path.split('/').filter(Boolean).map(decodeURIComponent); } catch (_) { return { name: 'notfound', query }; }
    if (!segs.length) return { name: 'dags', query, key: 'dags' };
    if (segs[0] === 'dag' && segs.length === 2) return { name: 'dag', dagId: segs[1], query, key: 'dag\u0000' + segs[1] };
    if (segs[0] === 'dag' && segs.length === 4 && segs[2] === 'run') {
      return { name: 'run', dagId: segs[1], runId: segs[3], query, key: `run\u0000${segs[1]}\u0000${segs[3]}` };
    }
    return { name: 'notfound', query, key: 'notfound' };
  }

  const poller = {
    view: null,
    gen: 0,
    timer: 0,
    running: 0,
    failures: 0,
    async tick(gen) {
      if (gen !== this.gen) return;
      clearTimeout(this.timer);
      if (document.hidden) { this.timer = setTimeout(() => this.tick(gen), POLL_MS); return; }
      if (this.running === gen) { this.again = true; return; }
      this.running = gen;
      const view = this.view;
      try {
        await view.refresh();
        if (gen === this.gen) {
          view.el.querySelectorAll(':scope > .view-error').forEach(e => e.remove());
          setConn(true);
          this.failures = 0;
        }
      } catch (err) {
        if (gen === this.gen) {
          this.failures++;
          setConn(false, err);
          if (err.status && err.status !== 0) {
            // The view's data is missing (e.g. an unknown DAG): say so at the top of the page.
            let box = view.el.querySelector(':scope > .view-error');
            const card = errorCard(err);
            card.classList.add('view-error');
            if (box) box.replaceWith(card); else view.el.prepend(card);
          }
          if (this.failures === 1 && !err.status) toast(err.message, 'error');
        }
        console.warn('refresh failed:', err);
      } finally {
        if (this.running === gen) this.running = 0;
      }
      if (gen !== this.gen) return;
      const delay = this.again ? 0 : POLL_MS * Math.min(4, 1 + Math.max(0, this.failures - 1));
      this.again = false;
      this.timer = setTimeout(() => this.tick(gen), delay);
    },
    kick() { this.tick(this.gen); },
    start(view) {
      if (this.view && this.view.destroy) this.view.destroy();
      this.view = view;
      this.gen++;
      this.again = false;
      this.failures = 0;
      clearTimeout(this.timer);
      this.tick(this.gen);
    },
  };

  function setConn(ok, err) {
    const el = $('#conn');
    el.classList.toggle('ok', ok);
    el.classList.toggle('error', !ok);
    $('#conn-text').textContent = ok ? `live · ${fmtClock(Date.now())}` : (err && err.status === 0 ? 'offline' : 'error');
    el.title = ok ? 'Updating every ' + POLL_MS / 1000 + ' s' : (err ? err.message : '');
  }

  let currentKey = null;
  function route() {
    const r = parseRoute();
    if (currentKey === r.key && poller.view && poller.view.onRoute) {
      poller.view.onRoute(r);
      return;
    }
    currentKey = r.key;
    tooltip.hide();
    const view = r.name === 'dags' ? new DagsView() : r.name === 'dag' ? new DagView(r) : r.name === 'run' ? new RunView(r) : new NotFoundView();
    document.querySelectorAll('[data-nav]').forEach(a => a.classList.toggle('active', r.name === 'dags'));
    const app = $('#app');
    fill(app, view.el);
    app.dataset.view = r.name;
    window.scrollTo(0, 0);
    poller.start(view);
  }

  async function loadStates() {
    for (;;) {
      try {
        const states = await get('/states');
        TI_STATES = [...TI_ORDER.filter(st => states.task_states.includes(st)),
                     ...states.task_states.filter(st => !TI_ORDER.includes(st))];
        TERMINAL = new Set(states.finished_task_states);
        return;
      } catch (e) {
        setConn(false, e);
        await new Promise(resolve => setTimeout(resolve, POLL_MS));
      }
    }
  }

  async function init() {
    updateTokenButton();
    $('#token-button').addEventListener('click', () => askToken(''));
    $('#token-forget').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      updateTokenButton();
      $('#token-dialog').close();
      toast('Token forgotten');
    });
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) poller.kick(); });
    await loadStates();
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
