// dockyard CI web UI: buttons that call the API, a run page that notices changes, and
// the live log. Everything from the server is put in the page as text (textContent,
// createTextNode), never as HTML: log lines, step names and messages are hostile.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = false;
}

// --- buttons: <button data-post="/api/v1/..." [data-go="run"]> ----------------------

async function post(button) {
  button.disabled = true;
  try {
    const response = await fetch(button.dataset.post, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
      body: "{}",
      credentials: "same-origin",
    });
    const doc = await response.json().catch(() => ({}));
    if (!response.ok) {
      notice(`${button.textContent.trim()}: ${doc.error ?? response.statusText}`);
      button.disabled = false;
      return;
    }
    if (button.dataset.go === "run" && doc.repository && Number.isInteger(doc.number)) {
      location.assign(`/repos/${encodeURIComponent(doc.repository)}/runs/${doc.number}`);
    } else {
      location.reload();
    }
  } catch (error) {
    notice(`${button.textContent.trim()}: ${error}`);
    button.disabled = false;
  }
}

for (const button of document.querySelectorAll("button[data-post]")) {
  button.addEventListener("click", () => post(button));
}

// --- a run that has not ended: reload when its state or its steps' change ------------

function fingerprint(run) {
  return JSON.stringify([run.status, run.cancel_requested, (run.steps ?? []).map((s) => s.status)]);
}

const watched = document.querySelector("[data-watch]");
if (watched) {
  let seen = null;
  const check = async () => {
    try {
      const response = await fetch(watched.dataset.watch, { credentials: "same-origin" });
      if (response.ok) {
        const now = fingerprint(await response.json());
        if (seen !== null && now !== seen) {
          location.reload();
          return;
        }
        seen = now;
      }
    } catch (error) {
      // the server restarting: try again on the next tick
    }
    setTimeout(check, 1500);
  };
  check();
}

// --- the live log ---------------------------------------------------------------------

// ANSI SGR colours as class names built only from numbers in known ranges.
function applySgr(params, state) {
  const codes = params === "" ? [0] : params.split(";").map((c) => Number(c) || 0);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(state, { fg: 0, bg: 0, bold: false });
    else if (c === 1) state.bold = true;
    else if (c === 22) state.bold = false;
    else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) state.fg = c;
    else if (c === 39) state.fg = 0;
    else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) state.bg = c;
    else if (c === 49) state.bg = 0;
    else if (c === 38 || c === 48) i += codes[i + 1] === 5 ? 2 : codes[i + 1] === 2 ? 4 : 0;
  }
}

function piece(text, state) {
  if (!state.fg && !state.bg && !state.bold) return document.createTextNode(text);
  const span = document.createElement("span");
  const classes = [];
  if (state.fg) classes.push(`fg${state.fg}`);
  if (state.bg) classes.push(`bg${state.bg}`);
  if (state.bold) classes.push("b");
  span.className = classes.join(" ");
  span.textContent = text;
  return span;
}

// Escape sequences: SGR ones colour the text, every other one is dropped whole (CSI,
// OSC such as hyperlinks and titles up to BEL or ST, and two-character ones).
const ESCAPE = /\x1b(?:\[([0-9;?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])?/g;

function renderLine(text, state) {
  const out = document.createDocumentFragment();
  const parts = text.split("\r");
  text = parts.filter((p) => p !== "").pop() ?? ""; // a progress bar: its last state
  let last = 0;
  for (const match of text.matchAll(ESCAPE)) {
    if (match.index > last) out.append(piece(text.slice(last, match.index), state));
    if (match[2] === "m") applySgr(match[1] ?? "", state);
    last = match.index + match[0].length;
  }
  if (last < text.length) out.append(piece(text.slice(last), state));
  return out;
}

// Lines come as [source, text, note]; chunks as [id, lines]. The page opens with the
// log's tail (data-lines: the server's /log/lines), follows the event stream after the
// newest chunk it read, and prepends earlier chunks on demand.
function startLog(box) {
  const step = box.dataset.step;
  const stateText = document.getElementById("log-state");
  const followButton = document.getElementById("follow");
  const earlierBar = document.querySelector(".earlier");
  const earlierButton = document.getElementById("earlier");
  const earlierCount = document.getElementById("earlier-count");
  const colours = new Map(); // per source: colours carry over lines, as in a terminal
  let first = 0; // the number of the first line shown, less one
  let count = 0; // the number of the last line shown
  let oldest = null; // the id of the oldest chunk shown
  let following = true;

  const setFollowing = (on) => {
    following = on;
    followButton.setAttribute("aria-pressed", String(on));
    followButton.textContent = on ? "Following" : "Follow";
    if (on) window.scrollTo(0, document.body.scrollHeight);
  };
  followButton.addEventListener("click", () => setFollowing(!following));
  window.addEventListener("wheel", (e) => { if (e.deltaY < 0 && following) setFollowing(false); });
  window.addEventListener("keydown", (e) => {
    if (["PageUp", "ArrowUp", "Home"].includes(e.key) && following) setFollowing(false);
  });

  const lineElement = (number, source, text, note, state) => {
    const line = document.createElement("div");
    line.className = note ? "line note" : "line";
    line.id = `L${number}`;
    const link = document.createElement("a");
    link.className = "ln";
    link.href = `#L${number}`;
    link.textContent = String(number);
    line.append(link);
    if (!step && source) {
      const tag = document.createElement("span");
      tag.className = "source";
      tag.textContent = source;
      line.append(tag);
    }
    const body = document.createElement("span");
    body.className = "text";
    body.append(renderLine(String(text), state));
    line.append(body);
    return line;
  };

  const stateOf = (states, source) => {
    if (!states.has(source)) states.set(source, { fg: 0, bg: 0, bold: false });
    return states.get(source);
  };

  const jumpToTarget = () => {
    if (!location.hash || box.dataset.jumped) return;
    const target = document.getElementById(location.hash.slice(1));
    if (target) {
      box.dataset.jumped = "1";
      setFollowing(false);
      target.classList.add("target");
      target.scrollIntoView({ block: "center" });
    }
  };

  const append = (lines) => {
    const batch = document.createDocumentFragment();
    for (const [source, text, note] of lines) {
      if (step && source !== step) continue;
      count += 1;
      batch.append(lineElement(count, source, text, note, stateOf(colours, source)));
    }
    box.append(batch);
    jumpToTarget();
    if (following) window.scrollTo(0, document.body.scrollHeight);
  };

  // The colours each source is in before the lines sent: the server works them out
  // from the lines before (doc.colours), so earlier lines and the tail start right.
  const statesFrom = (colours) => {
    const states = new Map();
    for (const [source, state] of Object.entries(colours ?? {})) {
      const { fg, bg, bold } = state;
      states.set(source, { fg: Number(fg) || 0, bg: Number(bg) || 0, bold: bold === true });
    }
    return states;
  };

  // Earlier lines go above, numbered down from the first shown.
  const prepend = (chunks, start, colours) => {
    const batch = document.createDocumentFragment();
    const states = statesFrom(colours);
    let number = start;
    for (const [, lines] of chunks) {
      for (const [source, text, note] of lines) {
        if (step && source !== step) continue;
        number += 1;
        batch.append(lineElement(number, source, text, note, stateOf(states, source)));
      }
    }
    const height = document.body.scrollHeight;
    box.prepend(batch);
    window.scrollBy(0, document.body.scrollHeight - height); // the lines in view stay put
    first = start;
  };

  const showEarlier = () => {
    earlierBar.hidden = first === 0;
    earlierCount.textContent = first ? `${first} earlier lines not shown` : "";
  };

  const fetchLines = async (before, wanted) => {
    const query = new URLSearchParams({ step, lines: String(wanted) });
    if (before !== null) query.set("before", String(before));
    const response = await fetch(`${box.dataset.lines}?${query}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    return response.json();
  };

  const loadEarlier = async (wanted) => {
    earlierButton.disabled = true;
    try {
      const doc = await fetchLines(oldest, wanted);
      if (doc.chunks.length) oldest = doc.chunks[0][0];
      prepend(doc.chunks, doc.start, doc.colours);
      showEarlier();
      jumpToTarget();
    } catch (error) {
      notice(`Loading earlier lines: ${error}`);
    } finally {
      earlierButton.disabled = false;
    }
  };
  earlierButton.addEventListener("click", () => {
    setFollowing(false);
    loadEarlier(Number(box.dataset.tail));
  });

  const setState = (word) => {
    stateText.textContent = "";
    const span = document.createElement("span");
    span.className = `status status-${/^[a-z]+$/.test(word) ? word : "other"}`;
    span.textContent = word;
    stateText.append(span);
  };

  const follow = (after) => {
    // The browser resumes after a dropped connection with Last-Event-ID by itself; the
    // server prefers that header to ?after=.
    const events = new EventSource(`${box.dataset.source}?after=${after}`);
    events.addEventListener("log", (e) => append(JSON.parse(e.data).lines ?? []));
    events.addEventListener("end", (e) => {
      events.close();
      setState(JSON.parse(e.data).status ?? "ended");
      box.dataset.ended = "1";
    });
    events.addEventListener("error", () => {
      if (events.readyState === EventSource.CLOSED && !box.dataset.ended) {
        notice("The log stream was refused; reload the page (or sign in again).");
      }
    });
  };

  const open = async () => {
    // A link to a line before the tail loads the log from that line on.
    const linked = /^#L(\d+)$/.exec(location.hash);
    let doc;
    try {
      doc = await fetchLines(null, Number(box.dataset.tail));
      if (linked && Number(linked[1]) <= doc.start) {
        doc = await fetchLines(null, doc.start - Number(linked[1]) + 1 + countLines(doc));
      }
    } catch (error) {
      notice(`Loading the log: ${error}`);
      return;
    }
    oldest = doc.chunks.length ? doc.chunks[0][0] : null;
    first = doc.start;
    count = doc.start;
    for (const [source, state] of statesFrom(doc.colours)) colours.set(source, state);
    append(doc.chunks.flatMap(([, lines]) => lines));
    showEarlier();
    follow(doc.last);
  };
  open();
}

function countLines(doc) {
  return doc.chunks.reduce((n, [, lines]) => n + lines.length, 0);
}

const logBox = document.getElementById("log");
if (logBox) startLog(logBox);
