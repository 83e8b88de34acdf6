/* MCP analytics dashboard: vanilla JS, hand-drawn SVG, no dependencies.
 *
 * Every value shown comes from agents and is untrusted: it is written with textContent,
 * setAttribute or SVG text nodes, never parsed as HTML.
 *
 * Test hooks: each panel has data-panel="<name>"; values sit in elements with
 * data-field="<column>" (data-value holds the raw value); table rows are <tr data-row>.
 * <body data-loaded="true"> once every panel has loaded; data-error="<message>" when a request failed.
 * Filters (the API's slices) live in the fragment (#client=Cursor&tool=a,b); a value shown in a row is a link
 * (a.slice, data-filter="<name>") that adds it, and each active filter is a chip (data-filter-chip) that removes it.
 */
'use strict';

(() => {
  const RANGES = ['15m', '1h', '24h', '7d', '30d', 'all'];
  const DEFAULT_RANGE = '24h';
  const FITTING = [['15m', 15 * 60000], ['1h', 3600000], ['24h', 86400000], ['7d', 7 * 86400000], ['30d', 30 * 86400000]];
  const PANELS = ['summary', 'timeseries', 'trends', 'slo', 'latency', 'tools', 'failures', 'clients', 'users',
    'methods', 'prompts', 'cost', 'unused_tools', 'errors', 'arguments', 'servers', 'new_clients', 'unused_prompts',
    'intents', 'sessions'];
  const DIMENSIONS = ['tool', 'client', 'user', 'server', 'method', 'origin'];
  const LIMITS = { tools: 15, clients: 10, users: 10, prompts: 15, cost: 15, unused_tools: 15, sessions: 50, latency: 15,
    errors: 15, arguments: 20, servers: 10, new_clients: 10, unused_prompts: 15, intents: 50, slo: 30 };
  const SESSION_LIMIT = 1000;
  const STORAGE_KEY = 'mcp-analytics.api-key';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#76b7b2', '#b07aa1', '#edc948', '#9c755f', '#bab0ac'];
  const FAMILY_COLORS = { requests: '#4e79a7', capabilities: '#76b7b2', custom: '#b07aa1', auth: '#e15759' };
  const MAX_SERIES = 7;
  const BY = ['method', 'family', 'tool', 'client'];
  const ORIGINS = ['client', 'auth', 'upstream', 'server'];
  const ORIGIN_COLORS = { client: '#f28e2b', auth: '#e15759', upstream: '#c8b08a', server: '#9c1f1f', unknown: '#c9ccd1' };
  const LATENCY_LINES = [
    { field: 'p50_ms', label: 'p50', color: '#9fb6cf' },
    { field: 'p95_ms', label: 'p95', color: '#3d6a99' },
    { field: 'p99_ms', label: 'p99', color: '#1f3a5a' },
    { field: 'own_p95_ms', label: 'own p95', color: '#59a14f', dash: true },
    { field: 'upstream_p95_ms', label: 'upstream p95', color: '#c8b08a', dash: true },
  ];
  const INT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

  const $ = (id) => document.getElementById(id);
  const body = document.body;
  const state = { key: null, last: DEFAULT_RANGE, by: 'method', session: null, filters: {}, q: '' };
  let generation = 0;
  let controller = null;
  let lastTimeseries = null;
  let lastTrends = null;

  /* ---------- DOM helpers (text only) ---------- */

  function el(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function sv(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function build(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name === 'class') node.setAttribute('class', value);
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function panelBody(name) {
    return document.querySelector(`[data-panel="${name}"] .body`);
  }

  /* ---------- formatting ---------- */

  const fmt = {
    int: (v) => (v === null || v === undefined ? '–' : INT.format(v)),
    ms: (v) => {
      if (v === null || v === undefined) return '–';
      if (v < 10) return v.toFixed(2);
      if (v < 1000) return v.toFixed(1);
      return INT.format(Math.round(v));
    },
    pct: (v) => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)}%`),
    ratio: (v) => (v === null || v === undefined ? '–' : (Math.round(v * 100) / 100).toString()),
    usd: (v) => (v === null || v === undefined ? '–' : `$${v < 1 ? v.toFixed(4) : v.toFixed(2)}`),
    list: (v) => (Array.isArray(v) ? v.filter((item) => item !== null).join(', ') : (v === null || v === undefined ? '–' : String(v))),
    bytes: (v) => {
      if (v === null || v === undefined) return '–';
      const units = ['B', 'KB', 'MB', 'GB', 'TB'];
      let value = v;
      let unit = 0;
      while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
      return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
    },
    seconds: (v) => {
      if (v === null || v === undefined) return '–';
      if (v < 60) return `${v.toFixed(v < 10 ? 1 : 0)} s`;
      if (v < 3600) return `${Math.floor(v / 60)} min ${Math.round(v % 60)} s`;
      return `${Math.floor(v / 3600)} h ${Math.round((v % 3600) / 60)} min`;
    },
    text: (v) => (v === null || v === undefined || v === '' ? '–' : String(v)),
    time: (v) => {
      if (!v) return '–';
      const date = new Date(v);
      if (Number.isNaN(date.getTime())) return String(v);
      const today = new Date();
      const pad = (n) => String(n).padStart(2, '0');
      const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
      if (date.toDateString() === today.toDateString()) return clock;
      return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock.slice(0, 5)}`;
    },
  };

  /* A cell (or any element) holding one value: formatted text, the raw value in data-value. */
  function field(tag, name, value, format, attrs) {
    const raw = value === null || value === undefined ? '' : String(value);
    const node = el(tag, { 'data-field': name, 'data-value': raw, ...(attrs || {}) }, (format || fmt.text)(value));
    if (format === fmt.time && value) node.setAttribute('title', String(value));
    return node;
  }

  /* ---------- the URL fragment: #key=…&last=…&by=…&session=…&<filter>=a,b ---------- */

  function parseFragment() {
    const found = {};
    for (const part of location.hash.replace(/^#/, '').split('&')) {
      if (!part) continue;
      const at = part.indexOf('=');
      const name = at < 0 ? part : part.slice(0, at);
      let value = at < 0 ? '' : part.slice(at + 1);
      try { value = decodeURIComponent(value); } catch (error) { /* keep it as written */ }
      found[name] = value;
    }
    return found;
  }

  function fragment(overrides) {
    const next = { last: state.last, by: state.by, session: state.session, filters: state.filters, q: state.q, ...(overrides || {}) };
    const parts = [`last=${encodeURIComponent(next.last)}`];
    if (next.by && next.by !== 'method') parts.push(`by=${encodeURIComponent(next.by)}`);
    if (next.q) parts.push(`q=${encodeURIComponent(next.q)}`);
    if (next.session) parts.push(`session=${encodeURIComponent(next.session)}`);
    for (const [name, values] of Object.entries(filterQuery(next.filters))) parts.push(`${name}=${encodeURIComponent(values)}`);
    return `#${parts.join('&')}`;
  }

  /* Filters as the API takes them: {client: 'a,b'}; values never contain a comma (the API splits on it). */
  function filterQuery(filters) {
    const found = {};
    for (const name of DIMENSIONS) {
      if (filters[name] && filters[name].length) found[name] = filters[name].join(',');
    }
    return found;
  }

  function withFilter(name, value) {
    const values = state.filters[name] || [];
    return { ...state.filters, [name]: values.includes(value) ? values : [...values, value] };
  }

  function withoutFilter(name, value) {
    return { ...state.filters, [name]: (state.filters[name] || []).filter((item) => item !== value) };
  }

  /* A value shown in a row, as a link to the same view sliced by it (``shown``: its text or node; data from
   * agents, so text only). None for no value, or one the API could not take as one value. */
  function sliceLink(name, value, shown) {
    if (value === null || value === undefined || value === '' || String(value).includes(',')) return null;
    return el('a', { class: 'slice', href: fragment({ filters: withFilter(name, String(value)), session: null }),
      'data-filter': name, title: `only the events of ${name} ${value}` }, shown === undefined ? String(value) : shown);
  }

  function readState() {
    const found = parseFragment();
    if (found.key) {
      state.key = found.key;
      storeKey(found.key);
    } else if (!state.key) {
      state.key = loadKey();
    }
    // No range given: null until the project's history has been asked for (see fittingRange).
    state.last = RANGES.includes(found.last) || /^\d{1,6}[mhd]$/.test(found.last || '') ? found.last : null;
    state.by = BY.includes(found.by) ? found.by : 'method';
    state.session = found.session || null;
    state.q = (found.q || '').trim().slice(0, 512);
    $('intent-q').value = state.q;
    state.filters = {};
    for (const name of DIMENSIONS) {
      const values = (found[name] || '').split(',').map((value) => value.trim()).filter(Boolean);
      if (values.length) state.filters[name] = [...new Set(values)];
    }
    if (found.key) {
      // The key is kept in localStorage, not in the address bar, history or bookmarks.
      history.replaceState(null, '', location.pathname + location.search + fragment());
    }
  }

  function storeKey(key) {
    try { localStorage.setItem(STORAGE_KEY, key); } catch (error) { /* storage disabled: keep it in memory */ }
  }

  function loadKey() {
    try { return localStorage.getItem(STORAGE_KEY); } catch (error) { return null; }
  }

  function forgetKey() {
    try { localStorage.removeItem(STORAGE_KEY); } catch (error) { /* nothing stored */ }
    state.key = null;
  }

  /* ---------- API ---------- */

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function query(name, params, signal) {
    const search = new URLSearchParams({ last: state.last, ...filterQuery(state.filters), ...params });
    const answer = await get(`/v1/panels/${encodeURIComponent(name)}?${search}`, signal);
    if (!Array.isArray(answer.rows)) throw new ApiError(200, 'the answer has no rows');
    return answer;
  }

  /* One GET of the API with the project's key: its JSON, or an ApiError saying why not. */
  async function get(path, signal) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: `Bearer ${state.key}`, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
        signal,
      });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new ApiError(0, `the server could not be reached (${error.message})`);
    }
    let answer = null;
    try { answer = await response.json(); } catch (error) { /* not JSON */ }
    if (!response.ok) {
      const detail = answer && answer.detail;
      let message = response.statusText || 'request failed';
      if (detail && typeof detail.message === 'string') message = detail.message;
      else if (Array.isArray(detail) && detail[0] && detail[0].msg) message = detail[0].msg;
      throw new ApiError(response.status, `${response.status}: ${message}`);
    }
    if (!answer) throw new ApiError(response.status, 'the answer is not JSON');
    return answer;
  }

  /* ---------- loading ---------- */

  function setError(message) {
    body.dataset.error = message;
    const banner = $('banner');
    banner.textContent = message;
    banner.hidden = false;
  }

  function clearError() {
    delete body.dataset.error;
    $('banner').hidden = true;
    $('banner').textContent = '';
  }

  function showKeyForm(message) {
    $('keyform').hidden = false;
    $('overview').hidden = true;
    $('session-view').hidden = true;
    if (message) setError(message);
    $('keyform-input').focus();
  }

  function renderChrome() {
    const nav = clear($('ranges'));
    for (const range of RANGES) {
      nav.appendChild(el('a', {
        href: fragment({ last: range, session: null }),
        class: range === state.last ? 'active' : null,
        'aria-current': range === state.last ? 'true' : null,
        'data-range': range,
      }, range === 'all' ? 'All' : range));
    }
    for (const button of document.querySelectorAll('#by-toggle button')) {
      button.classList.toggle('active', button.dataset.by === state.by);
      button.setAttribute('aria-pressed', String(button.dataset.by === state.by));
    }
    $('session-back').setAttribute('href', fragment({ session: null }));
    const chips = clear($('filters'));
    const active = DIMENSIONS.flatMap((name) => (state.filters[name] || []).map((value) => [name, value]));
    chips.hidden = !active.length;
    for (const [name, value] of active) {
      chips.appendChild(el('a', { class: 'chip', href: fragment({ filters: withoutFilter(name, value) }),
        'data-filter-chip': name, 'data-value': value, title: `remove the filter ${name} ${value}` },
        el('span', { class: 'sub' }, `${name} `), value, el('span', { class: 'x', 'aria-hidden': 'true' }, ' ×')));
    }
    if (active.length) chips.appendChild(el('a', { class: 'clear', href: fragment({ filters: {} }), id: 'filters-clear' }, 'Clear filters'));
  }

  function showWindow(answer) {
    $('project').hidden = false;
    $('project').textContent = answer.project;
    $('window').textContent = `${fmt.time(answer.from)} → ${fmt.time(answer.to)}`;
    $('window').setAttribute('title', `${answer.from} → ${answer.to} (UTC)`);
  }

  function clearPanels() {
    clear($('summary-stats'));
    for (const name of PANELS) {
      const target = panelBody(name);
      if (target) clear(target);
    }
    clear(panelBody('session'));
    clear($('session-facts'));
  }

  async function load() {
    renderChrome();
    if (controller) controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    const mine = ++generation;
    body.dataset.loaded = 'false';
    clearError();
    if (!state.key) {
      clearPanels();
      showKeyForm();
      return;
    }
    $('keyform').hidden = true;
    body.classList.add('loading');
    if (!state.last) {
      state.last = await fittingRange(signal);
      if (mine !== generation) return;
      history.replaceState(null, '', location.pathname + location.search + fragment());
      renderChrome();
    }
    const jobs = state.session ? [loadSession(signal)] : [...PANELS.map((name) => loadPanel(name, signal)), loadAlerts(signal)];
    $('overview').hidden = Boolean(state.session);
    $('session-view').hidden = !state.session;
    const results = await Promise.allSettled(jobs);
    if (mine !== generation) return; // a newer load took over
    body.classList.remove('loading');
    const failed = results.filter((result) => result.status === 'rejected' && result.reason.name !== 'AbortError');
    if (!failed.length) {
      body.dataset.loaded = 'true';
      return;
    }
    const reason = failed[0].reason;
    if (reason.status === 401 || reason.status === 403) {
      forgetKey(); // a refused key is not kept: the next visit asks for one
      clearPanels();
      $('project').hidden = true;
      $('window').textContent = '';
      showKeyForm(`The API key was refused (${reason.message}). Enter the project's key.`);
    } else {
      setError(`Could not load ${failed.length === 1 ? 'a panel' : `${failed.length} panels`}: ${reason.message}`);
    }
  }

  /* The range shown when the URL names none: the smallest that holds the project's whole history (at most
   * 30 days), so a short history is not squeezed into one bar of a day. */
  async function fittingRange(signal) {
    let first = null;
    try {
      const answer = await query('extent', { last: 'all' }, signal);
      first = answer.rows[0] && answer.rows[0].first_event;
    } catch (error) {
      return DEFAULT_RANGE; // the panels will say what is wrong (a refused key, say)
    }
    if (!first) return DEFAULT_RANGE;
    const age = Date.now() - new Date(first).getTime();
    const fitting = FITTING.find(([, ms]) => age <= ms);
    return fitting ? fitting[0] : '30d';
  }

  /* The alerts firing now (the API evaluates its rules on a schedule): one line each, above the panels. */
  async function loadAlerts(signal) {
    const target = clear($('alerts'));
    let answer;
    try {
      answer = await get('/v1/alerts?state=firing', signal);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      return; // the panels say what is wrong with the key or the server
    }
    const alerts = (answer && Array.isArray(answer.alerts)) ? answer.alerts : [];
    target.hidden = !alerts.length;
    for (const alert of alerts) {
      target.appendChild(el('div', { class: 'alert', 'data-rule': alert.rule, 'data-subject': alert.subject },
        el('span', { class: 'badge bad' }, alert.rule.replace(/_/g, ' ')), ' ',
        field('span', 'text', alert.text), ' ',
        el('span', { class: 'sub' }, `since ${fmt.time(alert.since)}`)));
    }
  }

  async function loadPanel(name, signal) {
    const target = panelBody(name);
    const params = { limit: String(LIMITS[name] || 100) };
    if (name === 'timeseries') params.by = state.by;
    if (name === 'intents' && state.q) params.q = state.q;
    try {
      const answer = await query(name, params, signal);
      if (signal.aborted) return;
      if (name === 'summary') showWindow(answer);
      RENDER[name](answer, target);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      const holder = name === 'summary' ? $('summary-stats') : target;
      clear(holder).appendChild(el('p', { class: 'panel-error' }, `Could not load: ${error.message}`));
      throw error;
    }
  }

  /* ---------- panels ---------- */

  function empty(message) {
    return el('p', { class: 'empty' }, message);
  }

  /* columns: [{field, label, format, num, bar}]; bar draws the value against the column's max. */
  function table(columns, rows, options) {
    const opts = options || {};
    const maxima = {};
    for (const column of columns) {
      if (column.bar) maxima[column.field] = Math.max(0, ...rows.map((row) => Number(row[column.field]) || 0));
    }
    return el('table', { class: `data ${opts.class || ''}` },
      el('thead', null, el('tr', null, columns.map((column) =>
        el('th', { class: column.num ? 'num' : null, scope: 'col', title: column.title || null }, column.label)))),
      el('tbody', null, rows.map((row) => {
        const tr = el('tr', { 'data-row': true, ...(opts.rowAttrs ? opts.rowAttrs(row) : {}) });
        for (const column of columns) {
          if (column.render) {
            tr.appendChild(column.render(row));
            continue;
          }
          const cell = field('td', column.field, row[column.field], column.format, { class: column.num ? 'num' : null });
          const link = column.filter && sliceLink(column.filter, column.filterValue ? column.filterValue(row) : row[column.field], cell.textContent);
          if (link) clear(cell).appendChild(link);
          if (column.bar && maxima[column.field] > 0) {
            const fill = el('span', { class: `bar ${column.barClass ? column.barClass(row) : ''}` });
            fill.style.width = `${Math.max(1, (100 * (Number(row[column.field]) || 0)) / maxima[column.field])}%`;
            cell.classList.add('with-bar');
            cell.prepend(el('span', { class: 'track', 'aria-hidden': 'true' }, fill));
          }
          tr.appendChild(cell);
        }
        return tr;
      })));
  }

  function stat(name, label, value, format, extra) {
    return el('div', { class: `stat ${extra || ''}` },
      el('div', { class: 'label' }, label),
      field('div', name, value, format, { class: 'value' }));
  }

  const RENDER = {
    summary(answer) {
      const row = answer.rows[0] || {};
      const target = clear($('summary-stats'));
      target.append(
        stat('events', 'Events', row.events, fmt.int),
        stat('failures', 'Failures', row.failures, fmt.int, row.failures ? 'bad' : ''),
        stat('success_rate', 'Success rate', row.success_rate, fmt.pct),
        stat('tool_calls', 'Tool calls', row.tool_calls, fmt.int),
        stat('sessions', 'Sessions', row.sessions, fmt.int),
        stat('users', 'Users', row.users, fmt.int),
        stat('clients', 'Clients', row.clients, fmt.int),
      );
    },

    timeseries(answer, target) {
      lastTimeseries = answer;
      drawTimeseries(answer, target);
    },

    trends(answer, target) {
      lastTrends = answer;
      drawTrends(answer, target);
    },

    latency(answer, target) {
      clear(target);
      const overall = answer.rows.find((row) => row.tool === null) || {};
      const tools = answer.rows.filter((row) => row.tool !== null);
      target.appendChild(el('div', { class: 'stats compact', 'data-overall': 'true' },
        stat('calls', 'Requests', overall.calls, fmt.int),
        stat('p50_ms', 'p50', overall.p50_ms, (v) => `${fmt.ms(v)} ms`),
        stat('p95_ms', 'p95', overall.p95_ms, (v) => `${fmt.ms(v)} ms`),
        stat('p99_ms', 'p99', overall.p99_ms, (v) => `${fmt.ms(v)} ms`),
        stat('own_p95_ms', 'Own p95', overall.own_p95_ms, (v) => `${fmt.ms(v)} ms`),
        stat('upstream_p95_ms', 'Upstream p95', overall.upstream_p95_ms, (v) => `${fmt.ms(v)} ms`),
        stat('upstream_share', 'Time upstream', overall.upstream_share, fmt.pct)));
      if (!tools.length) {
        target.appendChild(empty('No tool calls in this window.'));
        return;
      }
      const scale = Math.max(...tools.map((row) => Math.max(row.p95_ms || 0, row.own_p95_ms || 0, row.upstream_p95_ms || 0)), 0);
      target.appendChild(table([
        { field: 'tool', label: 'Tool', format: fmt.text, filter: 'tool' },
        { field: 'calls', label: 'Calls', format: fmt.int, num: true },
        { field: 'p50_ms', label: 'p50 ms', format: fmt.ms, num: true },
        { field: 'p95_ms', label: 'p95 ms', format: fmt.ms, num: true },
        { field: 'p99_ms', label: 'p99 ms', format: fmt.ms, num: true },
        { field: 'own_p95_ms', label: 'Own p95', format: fmt.ms, num: true, title: 'p95 of the time spent in the server itself' },
        { field: 'upstream_p95_ms', label: 'Upstream p95', format: fmt.ms, num: true, title: 'p95 of the time spent in upstream calls' },
        { field: 'upstream_share', label: 'Upstream', format: fmt.pct, num: true, title: 'share of the total time spent upstream' },
        { label: 'Own vs upstream p95', render: (row) => latencyBars(row, scale) },
      ], tools, { class: 'latency' }));
      target.appendChild(el('div', { class: 'legend' },
        el('span', { class: 'key own' }), 'own p95', el('span', { class: 'key upstream' }), 'upstream p95'));
    },

    tools(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'tool', label: 'Tool', filter: 'tool' },
        { field: 'calls', label: 'Calls', format: fmt.int, num: true, bar: true },
        { field: 'errors', label: 'Errors', format: fmt.int, num: true },
        { field: 'error_rate', label: 'Error rate', format: fmt.pct, num: true },
        { field: 'share', label: 'Share', format: fmt.pct, num: true, title: "the tool's share of all tool calls" },
        { field: 'p95_ms', label: 'p95 ms', format: fmt.ms, num: true },
        { field: 'users', label: 'Users', format: fmt.int, num: true },
        { field: 'last_called', label: 'Last called', format: fmt.time, num: true },
      ], answer.rows, { rowAttrs: (row) => ({ class: row.errors ? 'has-errors' : null }) }) : empty('No tool calls in this window.'));
    },

    clients(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'client', label: 'Client', filter: 'client' },
        { field: 'events', label: 'Events', format: fmt.int, num: true, bar: true },
        { field: 'tool_calls', label: 'Tool calls', format: fmt.int, num: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'sessions', label: 'Sessions', format: fmt.int, num: true },
        { field: 'users', label: 'Users', format: fmt.int, num: true },
      ], answer.rows) : empty('No clients in this window.'));
    },

    users(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'user', label: 'User', render: (row) => el('td', null,
          sliceLink('user', row.user, field('span', 'user', row.user)) || field('span', 'user', row.user), row.name ? el('span', { class: 'sub' }, ' ', field('span', 'name', row.name)) : null) },
        { field: 'events', label: 'Events', format: fmt.int, num: true, bar: true },
        { field: 'tool_calls', label: 'Tool calls', format: fmt.int, num: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'sessions', label: 'Sessions', format: fmt.int, num: true },
        { field: 'last_seen', label: 'Last seen', format: fmt.time, num: true },
      ], answer.rows) : empty('No identified users in this window.'));
    },

    failures(answer, target) {
      clear(target);
      if (!answer.rows.length) {
        target.appendChild(empty('No failures in this window.'));
        return;
      }
      const origins = [];
      for (const row of answer.rows) {
        let group = origins.find((item) => item.origin === row.origin);
        if (!group) origins.push(group = { origin: row.origin, total: row.origin_failures, rows: [] });
        group.rows.push(row);
      }
      const max = Math.max(...origins.map((group) => group.total));
      target.appendChild(el('div', { class: 'hbars' }, origins.map((group) => {
        const fill = el('span', { class: 'fill bad' });
        fill.style.width = `${(100 * group.total) / max}%`;
        return el('div', { class: 'hbar', 'data-origin': group.origin },
          el('span', { class: 'name' }, sliceLink('origin', group.origin === 'unknown' ? null : group.origin,
            field('span', 'origin', group.origin, fmt.text)) || field('span', 'origin', group.origin, fmt.text)),
          el('span', { class: 'track' }, fill),
          field('span', 'origin_failures', group.total, fmt.int, { class: 'num' }));
      })));
      const tableNode = el('table', { class: 'data failures' },
        el('thead', null, el('tr', null,
          el('th', { scope: 'col' }, 'Reason'), el('th', { scope: 'col', class: 'num' }, 'Failures'),
          el('th', { scope: 'col' }, 'Example'), el('th', { scope: 'col', class: 'num' }, 'Last seen'))));
      for (const group of origins) {
        const section = el('tbody', { 'data-origin': group.origin },
          el('tr', { class: 'group', 'data-group': group.origin },
            el('th', { colspan: '4', scope: 'rowgroup' }, group.origin, el('span', { class: 'sub' }, ` · ${fmt.int(group.total)}`))));
        for (const row of group.rows) {
          section.appendChild(el('tr', { 'data-row': true, 'data-origin': row.origin },
            field('td', 'reason', row.reason),
            field('td', 'failures', row.failures, fmt.int, { class: 'num' }),
            field('td', 'example', row.example, fmt.text, { class: 'example' }),
            field('td', 'last_seen', row.last_seen, fmt.time, { class: 'num' })));
        }
        tableNode.appendChild(section);
      }
      target.appendChild(tableNode);
    },

    methods(answer, target) {
      clear(target);
      if (!answer.rows.length) {
        target.appendChild(empty('No MCP messages in this window.'));
        return;
      }
      const ratio = answer.rows[0].calls_per_list;
      target.appendChild(el('div', { class: 'stats compact' },
        stat('calls_per_list', 'tools/call per tools/list', ratio, fmt.ratio)));
      target.appendChild(table([
        { field: 'method', label: 'Method', filter: 'method' },
        { field: 'events', label: 'Events', format: fmt.int, num: true },
        { field: 'share', label: 'Share', format: fmt.pct, num: true, bar: true },
      ], answer.rows));
    },

    prompts(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'prompt', label: 'Prompt' },
        { field: 'argument_keys', label: 'Argument keys', render: (row) => el('td', null, row.argument_keys
          ? el('code', { 'data-field': 'argument_keys', 'data-value': row.argument_keys }, row.argument_keys)
          : el('span', { class: 'sub', 'data-field': 'argument_keys', 'data-value': '' }, '(none)')) },
        { field: 'uses', label: 'Uses', format: fmt.int, num: true, bar: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'users', label: 'Users', format: fmt.int, num: true },
      ], answer.rows) : empty('No prompts used in this window.'));
    },

    cost(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'tool', label: 'Tool', filter: 'tool' },
        { field: 'user', label: 'User', filter: 'user', filterValue: (row) => (row.user === '(anonymous)' ? null : row.user) },
        { field: 'calls', label: 'Calls', format: fmt.int, num: true },
        { field: 'response_bytes', label: 'Response', format: fmt.bytes, num: true, bar: true },
        { field: 'avg_response_bytes', label: 'Avg', format: fmt.bytes, num: true },
        { field: 'total_ms', label: 'Total time', format: (v) => `${fmt.ms(v)} ms`, num: true },
        { field: 'est_tokens', label: 'Est. tokens', format: fmt.int, num: true, title: 'response bytes / 4' },
        { field: 'est_cost', label: 'Est. cost', format: fmt.usd, num: true, title: 'estimated tokens at the configured price per million' },
      ], answer.rows) : empty('No tool calls in this window.'));
    },

    slo(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'tool', label: 'Tool', filter: 'tool' },
        { field: 'tier', label: 'Tier', render: (row) => el('td', null, field('span', 'tier', row.tier),
          el('span', { class: 'sub', title: { pattern: 'by its name', observed: 'by its p95 over the last 7 days', slowest: 'slower than every target' }[row.assigned] || '' },
            ` ${row.assigned}`)) },
        { field: 'target_ms', label: 'Target', format: (v) => `${fmt.ms(v)} ms`, num: true },
        { field: 'calls', label: 'Calls', format: fmt.int, num: true },
        { field: 'p95_ms', label: 'p95 ms', format: fmt.ms, num: true },
        { field: 'attainment', label: 'Within target', format: fmt.pct, num: true },
        { field: 'objective', label: 'Objective', format: fmt.pct, num: true },
        { field: 'budget_remaining', label: 'Budget left', format: fmt.pct, num: true, bar: true,
          barClass: (row) => (row.budget_remaining < 0.25 ? 'bad' : '') },
      ], answer.rows, { rowAttrs: (row) => ({ class: row.met ? null : 'has-errors', 'data-met': String(row.met) }) })
        : empty('No tool calls in this window.'));
    },

    errors(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'code', label: 'Code', format: fmt.text, num: true },
        { field: 'name', label: 'Meaning' },
        { field: 'errors', label: 'Errors', format: fmt.int, num: true, bar: true },
        { field: 'methods', label: 'Methods', format: fmt.list },
        { field: 'origins', label: 'Origin', format: fmt.list },
        { field: 'example', label: 'Example', format: fmt.text },
      ], answer.rows) : empty('No JSON-RPC errors in this window.'));
    },

    arguments(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'kind', label: 'Kind' },
        { field: 'name', label: 'Name', filter: 'tool', filterValue: (row) => (row.kind === 'tool' ? row.name : null) },
        { field: 'argument_keys', label: 'Keys', render: (row) => el('td', null, row.argument_keys
          ? el('code', { 'data-field': 'argument_keys', 'data-value': row.argument_keys }, row.argument_keys)
          : el('span', { class: 'sub', 'data-field': 'argument_keys', 'data-value': '' }, '(none)')) },
        { field: 'calls', label: 'Calls', format: fmt.int, num: true, bar: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'share', label: 'Share', format: fmt.pct, num: true, title: "this shape's share of the tool's or prompt's calls" },
      ], answer.rows, { rowAttrs: (row) => ({ class: row.failures ? 'has-errors' : null }) }) : empty('No tool calls or prompts in this window.'));
    },

    servers(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'server', label: 'Server', filter: 'server', filterValue: (row) => (row.server === '(unknown)' ? null : row.server) },
        { field: 'versions', label: 'Versions' },
        { field: 'events', label: 'Events', format: fmt.int, num: true, bar: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'p95_ms', label: 'p95 ms', format: fmt.ms, num: true },
        { field: 'clients', label: 'Clients', format: fmt.int, num: true },
        { field: 'users', label: 'Users', format: fmt.int, num: true },
      ], answer.rows) : empty('No events in this window.'));
    },

    new_clients(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'client', label: 'Client', filter: 'client' },
        { field: 'versions', label: 'Versions' },
        { field: 'first_seen', label: 'First seen', format: fmt.time, num: true },
        { field: 'events', label: 'Events', format: fmt.int, num: true },
        { field: 'users', label: 'Users', format: fmt.int, num: true },
      ], answer.rows) : empty('No client was seen for the first time in this window.'));
    },

    unused_prompts(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'prompt', label: 'Prompt' },
        { field: 'last_used', label: 'Last used', format: (v) => (v ? fmt.time(v) : 'never'), num: true },
        { field: 'uses_before', label: 'Uses before', format: fmt.int, num: true },
        { field: 'last_listed', label: 'Last listed', format: fmt.time, num: true },
      ], answer.rows) : empty('Every prompt listed or used before this window was used in it.'));
    },

    intents(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'ts', label: 'Time', format: fmt.time, num: true },
        { field: 'intent', label: 'Intent', render: (row) => el('td', { class: 'intent' }, field('span', 'intent', row.intent)) },
        { field: 'tool', label: 'Tool', filter: 'tool' },
        { field: 'user', label: 'User', filter: 'user' },
        { field: 'client', label: 'Client', filter: 'client' },
      ], answer.rows, { rowAttrs: (row) => ({ class: row.is_error ? 'has-errors' : null }) })
        : empty(state.q ? `No intent in this window mentions “${state.q}”.` : 'No intents in this window.'));
    },

    unused_tools(answer, target) {
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'tool', label: 'Tool' },
        { field: 'last_called', label: 'Last called', format: (v) => (v ? fmt.time(v) : 'never'), num: true },
        { field: 'calls_before', label: 'Calls before', format: fmt.int, num: true },
        { field: 'last_listed', label: 'Last listed', format: fmt.time, num: true },
      ], answer.rows) : empty('Every tool listed or called before this window was called in it.'));
    },

    sessions(answer, target) {
      const GROUPINGS = {
        'user + client': 'no session id: grouped by user, client and the session timeout of inactivity',
        'caller + client': 'no session id and no user: grouped by caller (address, user agent, credentials), client and the session timeout',
        'single event': 'no session id, no user and no caller: an event of its own',
      };
      clear(target).appendChild(answer.rows.length ? table([
        { field: 'session', label: 'Session', render: (row) => el('td', { class: 'session-cell' },
          el('a', { href: fragment({ session: row.session }), 'data-field': 'session', 'data-value': row.session, title: row.session },
            row.session),
          row.grouping !== 'session id' ? el('span', { class: 'badge', 'data-field': 'grouping', title: GROUPINGS[row.grouping] || '' },
          row.grouping) : null) },
        { field: 'state', label: 'State', render: (row) => field('td', 'state', row.state, null, { class: `state-${row.state}`,
          title: row.state === 'active' ? 'an event within the session timeout' : 'no event for the session timeout: ended' }) },
        { field: 'user', label: 'User', filter: 'user' },
        { field: 'client', label: 'Client', filter: 'client' },
        { field: 'started', label: 'Started', format: fmt.time, num: true },
        { field: 'duration_s', label: 'Duration', format: fmt.seconds, num: true },
        { field: 'events', label: 'Events', format: fmt.int, num: true },
        { field: 'tool_calls', label: 'Tool calls', format: fmt.int, num: true },
        { field: 'failures', label: 'Failures', format: fmt.int, num: true },
        { field: 'intents', label: 'Intents', format: fmt.int, num: true },
      ], answer.rows, { rowAttrs: (row) => ({ class: row.failures ? 'has-errors' : null }) }) : empty('No sessions in this window.'));
    },
  };

  function latencyBars(row, scale) {
    const cell = el('td', { class: 'split', 'aria-hidden': 'true' });
    for (const [name, value] of [['own', row.own_p95_ms], ['upstream', row.upstream_p95_ms]]) {
      const fill = el('span', { class: `fill ${name}` });
      fill.style.width = scale > 0 ? `${Math.max(0, (100 * (value || 0)) / scale)}%` : '0';
      cell.appendChild(el('span', { class: 'track thin', title: `${name} p95: ${fmt.ms(value)} ms` }, fill));
    }
    return cell;
  }

  /* ---------- events over time: stacked bars, failures as a line ---------- */

  function niceStep(max, ticks) {
    const raw = Math.max(max, 1) / ticks;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw);
    return Math.max(1, step);
  }

  function tickLabel(date, bucketMin, spanMs) {
    const pad = (n) => String(n).padStart(2, '0');
    const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
    const day = `${date.toLocaleString('en-US', { month: 'short' })} ${date.getDate()}`;
    if (bucketMin >= 1440) return day;
    if (spanMs > 86400000) return `${day} ${clock}`;
    return clock;
  }

  /* The buckets of a chart: from the window's start ("all": from the first bucket with data, as the store
   * starts its buckets at the first event; buckets of whole hours begin on the hour) to its end, one bucket as
   * the store chose it. */
  function timeFrame(answer) {
    const rows = answer.rows;
    const to = new Date(answer.to).getTime();
    const bucketMin = rows[0].bucket_seconds / 60;
    const bucketMs = bucketMin * 60000;
    const hour = 3600000;
    const from = new Date(answer.from).getTime();
    const start = state.last === 'all' ? Math.min(...rows.map((row) => new Date(row.bucket).getTime()))
      : bucketMs % hour === 0 ? Math.floor(from / hour) * hour : from;
    const count = Math.max(1, Math.ceil((to - start) / bucketMs));
    const indexOf = (row) => Math.min(count - 1, Math.max(0, Math.round((new Date(row.bucket).getTime() - start) / bucketMs)));
    return { to, bucketMin, bucketMs, start, count, indexOf };
  }

  /* An empty chart over ``frame`` with a y scale up to ``max``: grid, time axis, titles. */
  function chartFrame(target, frame, max, { yTitle, label, format }) {
    const step = niceStep(max, 4);
    const top = Math.ceil(Math.max(max, 1e-9) / step) * step;
    const width = Math.max(480, target.clientWidth || 1000);
    const height = 240;
    const margin = { top: 12, right: 16, bottom: 44, left: 56 };
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const slot = plotW / frame.count;
    const y = (value) => margin.top + plotH - (plotH * value) / top;
    const x = (index) => margin.left + index * slot;
    const chart = sv('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label });
    const grid = sv('g', { class: 'grid' });
    for (let value = 0; value <= top; value += step) {
      grid.appendChild(sv('line', { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }));
      grid.appendChild(sv('text', { x: margin.left - 8, y: y(value) + 4, 'text-anchor': 'end', class: 'tick' }, (format || INT.format)(value)));
    }
    chart.appendChild(grid);
    const axis = sv('g', { class: 'axis' });
    axis.appendChild(sv('line', { x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0) }));
    const labelEvery = Math.max(1, Math.ceil(frame.count / Math.max(2, Math.floor(plotW / 90))));
    for (let index = 0; index <= frame.count; index += labelEvery) {
      const when = new Date(frame.start + index * frame.bucketMs);
      axis.appendChild(sv('line', { x1: x(index), x2: x(index), y1: y(0), y2: y(0) + 4 }));
      axis.appendChild(sv('text', { x: x(index), y: y(0) + 17, 'text-anchor': 'middle', class: 'tick' }, tickLabel(when, frame.bucketMin, frame.to - frame.start)));
    }
    axis.appendChild(sv('text', { class: 'axis-title', x: margin.left + plotW / 2, y: height - 6, 'text-anchor': 'middle' },
      `time (one bucket = ${duration(frame.bucketMin)})`));
    axis.appendChild(sv('text', { class: 'axis-title', transform: `translate(14 ${margin.top + plotH / 2}) rotate(-90)`, 'text-anchor': 'middle' }, yTitle));
    chart.appendChild(axis);
    return { chart, x, y, slot, barW: Math.max(1, slot * (frame.count > 60 ? 0.9 : 0.75)) };
  }

  function duration(minutes) {
    return minutes >= 1440 ? `${minutes / 1440} d` : minutes >= 60 ? `${minutes / 60} h` : `${minutes} min`;
  }

  function legendItem(name, color, extra, attrs) {
    const swatch = el('span', { class: 'key' });
    swatch.style.background = color;
    return el('span', { class: 'item', ...(attrs || {}) }, swatch, name, extra ? el('span', { class: 'sub' }, ` ${extra}`) : null);
  }

  /* Stacked bars per bucket: rows of {bucket, bucket_seconds, series, events, failures}; the largest
   * MAX_SERIES series by total, the rest as "other"; failures as a red mark. */
  function drawStacked(answer, target, options) {
    clear(target);
    const rows = answer.rows;
    if (!rows.length) {
      target.appendChild(empty(options.empty));
      return;
    }
    const frame = timeFrame(answer);
    const totals = new Map();
    for (const row of rows) totals.set(row.series, (totals.get(row.series) || 0) + row.events);
    const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([name]) => name);
    const shown = ranked.length > MAX_SERIES + 1 ? ranked.slice(0, MAX_SERIES) : ranked;
    const seriesOf = (name) => (shown.includes(name) ? name : 'other');
    const series = shown.length < ranked.length ? [...shown, 'other'] : shown;
    const color = (name, index) => (options.colors && options.colors[name]) || (name === 'other' ? '#c9ccd1' : PALETTE[index % PALETTE.length]);

    const buckets = Array.from({ length: frame.count }, () => ({ values: new Map(), total: 0, failures: 0 }));
    for (const row of rows) {
      const bucket = buckets[frame.indexOf(row)];
      const name = seriesOf(row.series);
      bucket.values.set(name, (bucket.values.get(name) || 0) + row.events);
      bucket.total += row.events;
      bucket.failures += row.failures || 0;
    }
    const box = chartFrame(target, frame, Math.max(...buckets.map((bucket) => bucket.total)),
      { yTitle: options.yTitle, label: options.label(frame) });
    const bars = sv('g', { class: 'bars' });
    buckets.forEach((bucket, index) => {
      if (!bucket.total) return;
      let base = 0;
      const when = new Date(frame.start + index * frame.bucketMs);
      series.forEach((name, seriesIndex) => {
        const value = bucket.values.get(name) || 0;
        if (!value) return;
        bars.appendChild(sv('rect', {
          x: box.x(index) + (box.slot - box.barW) / 2, width: box.barW,
          y: box.y(base + value), height: Math.max(0.5, box.y(base) - box.y(base + value)),
          fill: color(name, seriesIndex), 'data-series': name,
        }, sv('title', null, `${fmt.time(when.toISOString())} · ${name}: ${INT.format(value)}`)));
        base += value;
      });
    });
    box.chart.appendChild(bars);
    buckets.forEach((bucket, index) => {
      if (!bucket.failures) return;
      const half = Math.max(3, Math.min(box.barW / 2 + 2, 10));
      box.chart.appendChild(sv('line', {
        class: 'failure-mark', x1: box.x(index) + box.slot / 2 - half, x2: box.x(index) + box.slot / 2 + half,
        y1: box.y(bucket.failures), y2: box.y(bucket.failures),
      }, sv('title', null, `${INT.format(bucket.failures)} failures`)));
    });
    target.appendChild(box.chart);

    const legend = el('div', { class: 'legend' });
    series.forEach((name, index) => {
      const total = name === 'other'
        ? ranked.filter((item) => !shown.includes(item)).reduce((sum, item) => sum + totals.get(item), 0)
        : totals.get(name);
      legend.appendChild(legendItem(name, color(name, index), INT.format(total), { 'data-series': name }));
    });
    if (buckets.some((bucket) => bucket.failures)) {
      legend.appendChild(el('span', { class: 'item' }, el('span', { class: 'key line' }), 'failures'));
    }
    target.appendChild(legend);
  }

  function drawTimeseries(answer, target) {
    drawStacked(answer, target, {
      empty: 'No events in this window.',
      yTitle: 'events',
      colors: state.by === 'family' ? FAMILY_COLORS : null,
      label: (frame) => `Events per ${duration(frame.bucketMin)}, stacked by ${state.by}`,
    });
  }

  /* Trends (requests only): latency percentiles as lines, and the failures of each bucket by origin. */
  function drawTrends(answer, target) {
    clear(target);
    const rows = answer.rows;
    if (!rows.length) {
      target.appendChild(empty('No requests in this window.'));
      return;
    }
    const frame = timeFrame(answer);
    const latency = el('div', { class: 'trend', 'data-trend': 'latency' });
    const errors = el('div', { class: 'trend', 'data-trend': 'errors' });
    target.append(el('h3', null, 'Latency'), latency, el('h3', null, 'Failures by origin'), errors); // in place: sized
    const max = Math.max(...rows.map((row) => Math.max(row.p99_ms || 0, row.p95_ms || 0)));
    const box = chartFrame(latency, frame, max, { yTitle: 'ms', format: fmt.ms,
      label: `Request latency per ${duration(frame.bucketMin)}: p50, p95, p99, own and upstream p95` });
    const legend = el('div', { class: 'legend' });
    for (const line of LATENCY_LINES) {
      const known = rows.filter((row) => row[line.field] !== null && row[line.field] !== undefined);
      if (!known.length) continue;
      // A line joins neighbouring buckets only: a bucket without requests breaks it (no invented values).
      const runs = [];
      let previous = null;
      for (const row of known) {
        const index = frame.indexOf(row);
        if (previous === null || index !== previous + 1) runs.push([]);
        runs[runs.length - 1].push([box.x(index) + box.slot / 2, box.y(row[line.field])]);
        previous = index;
      }
      for (const run of runs) {
        const attrs = { 'data-series': line.field };
        if (run.length === 1) {
          box.chart.appendChild(sv('circle', { cx: run[0][0], cy: run[0][1], r: 3, fill: line.color, ...attrs }, sv('title', null, line.label)));
        } else {
          box.chart.appendChild(sv('polyline', { class: `line ${line.dash ? 'dashed' : ''}`, stroke: line.color, ...attrs,
            points: run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' ') }, sv('title', null, line.label)));
        }
      }
      legend.appendChild(legendItem(line.label, line.color, null, { 'data-series': line.field }));
    }
    latency.append(box.chart, legend);

    const byOrigin = [];
    for (const row of rows) {
      for (const origin of ORIGINS) {
        if (row[`${origin}_errors`]) byOrigin.push({ bucket: row.bucket, bucket_seconds: row.bucket_seconds, series: origin, events: row[`${origin}_errors`] });
      }
      const unknown = row.errors - ORIGINS.reduce((sum, origin) => sum + (row[`${origin}_errors`] || 0), 0);
      if (unknown > 0) byOrigin.push({ bucket: row.bucket, bucket_seconds: row.bucket_seconds, series: 'unknown', events: unknown });
    }
    drawStacked({ ...answer, rows: byOrigin }, errors, {
      empty: 'No failed requests in this window.',
      yTitle: 'failures',
      colors: ORIGIN_COLORS,
      label: (errorFrame) => `Failed requests per ${duration(errorFrame.bucketMin)}, by origin`,
    });
  }

  /* ---------- one session's timeline ---------- */

  async function loadSession(signal) {
    const target = panelBody('session');
    $('session-id').textContent = state.session;
    clear($('session-facts'));
    try {
      const answer = await query('session', { session: state.session, limit: String(SESSION_LIMIT) }, signal);
      if (signal.aborted) return;
      showWindow(answer);
      drawSession(answer.rows, target);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      clear(target).appendChild(el('p', { class: 'panel-error' }, `Could not load: ${error.message}`));
      throw error;
    }
  }

  function drawSession(rows, target) {
    clear(target);
    const facts = $('session-facts');
    if (!rows.length) {
      target.appendChild(empty('No events in this session.'));
      return;
    }
    const times = rows.map((row) => new Date(row.ts).getTime());
    const begin = Math.min(...times);
    const end = Math.max(...rows.map((row, index) => times[index] + (row.duration_ms || 0)));
    const span = Math.max(1, end - begin);
    // Each from the first row that has it: the handshake comes before the user is identified.
    const user = (rows.find((row) => row.user) || {}).user;
    const client = (rows.find((row) => row.client) || {}).client;
    const failures = rows.filter((row) => row.is_error).length;
    facts.append(
      fact('user', 'User', user),
      fact('client', 'Client', client),
      fact('started', 'Started', rows[0].ts, fmt.time),
      fact('duration', 'Duration', (end - begin) / 1000, fmt.seconds),
      fact('events', 'Events', rows.length, fmt.int),
      fact('failures', 'Failures', failures, fmt.int, failures ? 'bad' : ''),
    );

    const tbody = el('tbody');
    rows.forEach((row, index) => {
      const custom = row.type.startsWith('custom:');
      const offset = (times[index] - begin) / 1000;
      const kind = row.is_error ? 'error' : custom ? 'custom' : 'request';
      const bar = el('span', { class: `fill ${kind}` });
      bar.style.left = `${(100 * (times[index] - begin)) / span}%`;
      bar.style.width = `${Math.max(0.6, (100 * (row.duration_ms || 0)) / span)}%`;
      const outcome = row.is_error
        ? el('td', { class: 'outcome' },
          el('span', { class: 'badge bad' }, 'error'), ' ',
          row.error_type ? field('span', 'error_type', row.error_type, fmt.text, { class: 'etype' }) : null,
          row.error_message ? el('div', { class: 'emsg' }, field('span', 'error_message', row.error_message)) : null,
          row.failure_origin || row.failure_reason
            ? el('div', { class: 'sub' }, field('span', 'failure_origin', row.failure_origin), ' / ',
              field('span', 'failure_reason', row.failure_reason))
            : null)
        : el('td', { class: 'outcome' }, el('span', { class: 'badge ok' }, 'ok'));
      tbody.appendChild(el('tr', { 'data-row': true, 'data-type': row.type, class: kind },
        el('td', { class: 'num' }, field('span', 'ts', row.ts, fmt.time),
          el('div', { class: 'sub' }, `+${offset.toFixed(offset < 10 ? 2 : 1)} s`)),
        el('td', null, field('span', 'type', row.type, fmt.text, { class: `type ${kind}` }),
          row.resource ? el('div', null, field('span', 'resource', row.resource, fmt.text, { class: 'resource' })) : null),
        el('td', { class: 'detail' },
          row.intent ? el('div', { class: 'intent' }, field('span', 'intent', row.intent)) : null,
          row.message !== null && row.message !== undefined
            ? el('div', { class: 'message' }, field('span', 'message', row.message)) : null,
          payload('content', 'Captured content', row.content),
          payload('custom', 'Event payload', row.custom),
          !row.intent && (row.message === null || row.message === undefined) && !row.content && !row.custom
            ? el('span', { class: 'sub' }, '–') : null),
        field('td', 'duration_ms', row.duration_ms, (v) => `${fmt.ms(v)} ms`, { class: 'num' }),
        el('td', { class: 'waterfall', 'aria-hidden': 'true' }, el('span', { class: 'lane' }, bar)),
        outcome));
    });
    target.appendChild(el('table', { class: 'data timeline' },
      el('thead', null, el('tr', null,
        el('th', { scope: 'col', class: 'num' }, 'Time'), el('th', { scope: 'col' }, 'Event'),
        el('th', { scope: 'col' }, 'Intent / message'), el('th', { scope: 'col', class: 'num' }, 'Duration'),
        el('th', { scope: 'col' }, 'Timeline'), el('th', { scope: 'col' }, 'Outcome'))),
      tbody));
  }

  /* A JSON payload (captured arguments and result, a custom event's parameters), folded, as text. */
  function payload(name, label, value) {
    if (value === null || value === undefined || value === '') return null;
    let text = typeof value === 'string' ? value : JSON.stringify(value);
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (error) { /* shown as stored */ }
    return el('details', { class: 'payload' }, el('summary', null, label),
      el('pre', { 'data-field': name, 'data-value': typeof value === 'string' ? value : JSON.stringify(value) }, text));
  }

  function fact(name, label, value, format, extra) {
    return el('div', { class: `fact ${extra || ''}` }, el('span', { class: 'label' }, label), field('span', name, value, format));
  }

  /* ---------- wiring ---------- */

  $('keyform-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('keyform-input').value.trim();
    if (!key) return;
    $('keyform-input').value = '';
    state.key = key;
    storeKey(key);
    load();
  });

  $('forget').addEventListener('click', () => {
    forgetKey();
    clearPanels();
    $('project').hidden = true;
    $('window').textContent = '';
    load();
  });

  $('refresh').addEventListener('click', () => load());

  $('intent-search').addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = fragment({ q: $('intent-q').value.trim() }); // a search is a link too
  });

  for (const button of document.querySelectorAll('#by-toggle button')) {
    button.addEventListener('click', () => {
      if (button.dataset.by !== state.by) location.hash = fragment({ by: button.dataset.by });
    });
  }

  window.addEventListener('hashchange', () => {
    const before = { last: state.last, session: state.session, key: state.key, filters: JSON.stringify(state.filters),
      by: state.by, q: state.q };
    readState();
    const same = before.last === state.last && before.session === state.session && before.key === state.key
      && before.filters === JSON.stringify(state.filters) && !state.session && body.dataset.loaded === 'true';
    if (same && (before.by !== state.by || before.q !== state.q)) {
      // Only the chart's grouping or the intents search changed: query that panel alone.
      renderChrome();
      const signal = (controller = new AbortController()).signal;
      const panel = before.by !== state.by ? 'timeseries' : 'intents';
      loadPanel(panel, signal).catch((error) => { if (error.name !== 'AbortError') setError(error.message); });
    } else {
      load();
    }
  });

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (lastTimeseries && !state.session) drawTimeseries(lastTimeseries, panelBody('timeseries'));
      if (lastTrends && !state.session) drawTrends(lastTrends, panelBody('trends'));
    }, 150);
  });

  readState();
  load();
})();
