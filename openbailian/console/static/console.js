// openbailian console: the little interactivity the server-rendered pages need.
// Text from the server (answers aside) is always set with textContent, never as HTML;
// answers arrive as HTML the server rendered from markdown with raw HTML disabled.
"use strict";

const csrf = () => document.body.dataset.csrf || "";

function copyText(text, button) {
  const done = () => {
    const label = button.textContent;
    button.textContent = document.body.dataset.lang === "zh" ? "已复制" : "Copied";
    setTimeout(() => { button.textContent = label; }, 1200);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  done();
}

function setupCopy() {
  document.querySelectorAll("[data-copy]").forEach((b) =>
    b.addEventListener("click", () => copyText(b.dataset.copy, b)));
  document.querySelectorAll("[data-copy-from]").forEach((b) =>
    b.addEventListener("click", () => copyText(document.getElementById(b.dataset.copyFrom).textContent, b)));
}

function setupConfirm() {
  document.querySelectorAll("form[data-confirm]").forEach((form) =>
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    }));
}

// The app editor: a row for each {{variable}} the instructions reference, as they are typed.
function setupVariables() {
  const source = document.querySelector("[data-variables-source]");
  const body = document.querySelector("[data-variables]");
  const template = document.querySelector("template[data-variable-row]");
  if (!source || !body || !template) return;
  const pattern = /\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}/g;
  const refresh = () => {
    const have = new Set([...body.querySelectorAll("tr[data-variable]")].map((r) => r.dataset.variable));
    for (const match of source.value.matchAll(pattern)) {
      const name = match[1];
      if (have.has(name)) continue;
      have.add(name);
      const row = template.content.firstElementChild.cloneNode(true);
      row.dataset.variable = name;
      row.querySelector("code").textContent = "{{" + name + "}}";
      row.querySelector("input[name=var_name]").value = name;
      row.querySelector("input[name=var_default]").dataset.testid = "var-default-" + name;
      body.appendChild(row);
    }
    const empty = document.querySelector("[data-no-variables]");
    if (empty) empty.hidden = have.size > 0;
  };
  source.addEventListener("input", refresh);
}

// Server-Sent Events from a fetch body: yields {event, data}.
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setupPlayground() {
  const root = document.querySelector("[data-playground]");
  if (!root) return;
  const form = root.querySelector("[data-chat-form]");
  const prompt = root.querySelector("[data-prompt]");
  const messages = root.querySelector("[data-messages]");
  const send = root.querySelector("[data-send]");
  const stop = root.querySelector("[data-stop]");
  const sessionLabel = root.querySelector("[data-session]");
  const errorBox = root.querySelector("[data-chat-error]");
  const target = root.querySelector("[data-target]");
  let sessionId = null;
  let controller = null;

  const resetSession = () => {
    sessionId = null;
    sessionLabel.textContent = "—";
    messages.replaceChildren();
  };
  root.querySelector("[data-new-session]").addEventListener("click", resetSession);
  target.addEventListener("change", resetSession);
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => controller && controller.abort());

  // Session files: uploaded at once, then watched until ready; ready ones go with each turn.
  const fileInput = root.querySelector("[data-session-file]");
  const fileList = root.querySelector("[data-session-files]");
  const readyFiles = new Set();
  const watch = async (fileId, note) => {
    const response = await fetch("/console/files/" + encodeURIComponent(fileId), { headers: { Accept: "application/json" } });
    const info = await response.json();
    note.textContent = " " + (info.status || info.message) + (info.reason ? " — " + info.reason : "");
    note.dataset.status = info.status || "";
    if (info.status === "FILE_IS_READY") readyFiles.add(fileId);
    else if (response.ok && !/FAILED|EXPIRED|DELETED/.test(info.status)) setTimeout(() => watch(fileId, note), 1000);
  };
  fileInput.addEventListener("change", () => {
    for (const file of fileInput.files) {
      const row = el("li", "", file.name + " ");
      const bar = el("progress");
      bar.max = 100;
      bar.value = 0;
      const note = el("span", "muted");
      note.dataset.testid = "session-file-status";
      row.append(bar, note);
      fileList.appendChild(row);
      const body = new FormData();
      body.append("file", file);
      const request = new XMLHttpRequest();
      request.open("POST", "/console/files");
      request.setRequestHeader("X-CSRF-Token", csrf());
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      });
      request.addEventListener("loadend", () => {
        let info = {};
        try { info = JSON.parse(request.responseText); } catch (e) { info = { message: request.statusText }; }
        if (request.status === 201) {
          bar.value = 100;
          row.dataset.fileId = info.file_id;
          watch(info.file_id, note);
        } else {
          note.textContent = " " + (info.message || "upload failed");
          note.className = "error";
        }
      });
      request.send(body);
    }
    fileInput.value = "";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    errorBox.hidden = true;
    const variables = {};
    root.querySelectorAll("[data-var]").forEach((input) => { variables[input.dataset.var] = input.value; });
    messages.appendChild(el("div", "msg user", text));
    const bot = el("div", "msg bot");
    bot.dataset.testid = "answer";
    const thoughts = el("details", "thoughts");
    thoughts.appendChild(el("summary", "", root.dataset.labelThoughts));
    thoughts.hidden = true;
    const reasoning = el("pre", "reasoning");
    reasoning.hidden = true;
    thoughts.appendChild(reasoning);
    const sources = el("div", "sources");
    sources.hidden = true;
    const answer = el("div", "answer");
    bot.append(thoughts, answer, sources);
    messages.appendChild(bot);
    prompt.value = "";
    controller = new AbortController();
    send.disabled = true;
    stop.hidden = false;
    bot.classList.add("streaming");
    try {
      const response = await fetch(root.dataset.chatUrl, {
        method: "POST",
        signal: controller.signal,
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRF-Token": csrf() },
        body: JSON.stringify({
          prompt: text, session_id: sessionId, target: target.value, variables,
          memory_id: root.querySelector("[data-memory]").value || null,
          session_file_ids: [...readyFiles],
        }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({ message: response.statusText }));
        throw new Error((body.code ? body.code + ": " : "") + body.message);
      }
      for await (const { event: name, data } of readEvents(response)) {
        if (name === "session" || name === "done") {
          sessionId = data.session_id;
          sessionLabel.textContent = sessionId;
          if (name === "done") bot.dataset.finish = data.finish_reason;
        } else if (name === "answer") {
          answer.innerHTML = data.html;
        } else if (name === "reasoning") {
          thoughts.hidden = false;
          reasoning.hidden = false;
          reasoning.textContent += data.text;
        } else if (name === "thought") {
          thoughts.hidden = false;
          const item = el("div", "thought");
          item.appendChild(el("b", "", data.action_type + (data.action ? " · " + data.action : "")));
          if (data.thought) item.appendChild(el("p", "", data.thought));
          if (data.observation) item.appendChild(el("pre", "", data.observation));
          thoughts.appendChild(item);
        } else if (name === "sources") {
          sources.hidden = false;
          sources.appendChild(el("b", "", root.dataset.labelSources));
          const list = el("ol");
          for (const ref of data) {
            const li = el("li");
            const link = el("a", "", ref.doc_name + (ref.title ? " · " + ref.title : ""));
            link.href = "/console/knowledge/" + encodeURIComponent(ref.index_id) + "#doc-" + encodeURIComponent(ref.doc_id);
            link.dataset.testid = "source";
            li.appendChild(link);
            if (ref.page_number && ref.page_number.length) li.appendChild(el("span", "muted", " p." + ref.page_number.join(",")));
            const detail = el("details");
            detail.appendChild(el("summary", "", "…"));
            detail.appendChild(el("p", "", ref.text));
            li.appendChild(detail);
            list.appendChild(li);
          }
          sources.appendChild(list);
        } else if (name === "error") {
          throw new Error(data.code + ": " + data.message);
        }
      }
    } catch (error) {
      if (error.name === "AbortError") {
        bot.dataset.finish = "stopped";
        bot.appendChild(el("p", "muted stopped", root.dataset.labelStopped));
      } else {
        errorBox.textContent = error.message;
        errorBox.hidden = false;
      }
    } finally {
      bot.classList.remove("streaming");
      controller = null;
      send.disabled = false;
      stop.hidden = true;
    }
  });
}

// Knowledge: upload files one request each (with progress), then watch their status.
function setupUpload() {
  const form = document.querySelector("[data-upload]");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  const list = document.querySelector("[data-upload-progress]");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const files = [...input.files];
    let left = files.length;
    for (const file of files) {
      const row = el("li", "", file.name + " ");
      const bar = el("progress");
      bar.max = 100;
      bar.value = 0;
      row.appendChild(bar);
      const note = el("span", "muted");
      row.appendChild(note);
      list.appendChild(row);
      const body = new FormData();
      body.append("file", file);
      body.append("tags", form.querySelector("input[name=tags]").value);
      const request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("X-CSRF-Token", csrf());
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      });
      request.addEventListener("loadend", () => {
        if (request.status >= 200 && request.status < 300) {
          bar.value = 100;
        } else {
          let message = request.statusText || "upload failed";
          try { message = JSON.parse(request.responseText).message; } catch (e) { /* keep */ }
          note.textContent = " " + message;
          note.className = "error";
        }
        left -= 1;
        if (left === 0) refreshDocuments();
      });
      request.send(body);
    }
    input.value = "";
  });
}

const FINAL = new Set(["FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED"]);

async function refreshDocuments() {
  const table = document.querySelector("[data-documents]");
  if (!table) return;
  const response = await fetch(table.dataset.documents, { headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const { html, pending } = await response.json();
  table.innerHTML = html; // rendered by the server's autoescaping template
  bindDocumentActions(table);
  if (pending) setTimeout(refreshDocuments, 1000);
}

function bindDocumentActions(scope) {
  scope.querySelectorAll("form[data-confirm]").forEach((form) =>
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    }));
}

function setupDocuments() {
  const table = document.querySelector("[data-documents]");
  if (!table) return;
  const pending = [...table.querySelectorAll("[data-status]")].some((s) => !FINAL.has(s.dataset.status));
  if (pending) setTimeout(refreshDocuments, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  setupCopy();
  setupConfirm();
  setupVariables();
  setupPlayground();
  setupUpload();
  setupDocuments();
});
