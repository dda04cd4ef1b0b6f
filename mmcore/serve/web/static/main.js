// The chat page: state, the request it sends, and the controls wired to it.
import { attachmentPart, audioAttachment, fileToAttachment, thumbnail } from "./attachments.js";
import { renderConversation } from "./conversation.js";
import { ServerError, errorFromResponse, streamChat } from "./sse.js";
import { canRecord, startRecording } from "./wav.js";

const $ = (id) => document.getElementById(id);
const SETTINGS_KEY = "mmcore-chat-settings";
const SETTING_FIELDS = ["system-prompt", "temperature", "top-p", "max-tokens", "seed", "api-key"];

const state = {
  model: null, // {id, contextLength}
  messages: [], // {role, text, attachments, state: "done" | "streaming" | "error", error, stats}
  pending: [], // attachments of the message being written
  controller: null, // AbortController of the streaming answer
  recording: null,
  sessionId: newSessionId(),
};

function newSessionId() {
  return window.crypto?.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// ---- rendering --------------------------------------------------------------------------------

function nearBottom(element) {
  return element.scrollHeight - element.scrollTop - element.clientHeight < 80;
}

let shownMessages = 0;

function render() {
  const conversation = $("conversation");
  const follow = nearBottom(conversation) || state.messages.length !== shownMessages;
  renderConversation(conversation, state.messages);
  shownMessages = state.messages.length;
  if (follow) conversation.scrollTop = conversation.scrollHeight;
  $("empty-hint").hidden = state.messages.length > 0;

  const streaming = state.controller !== null;
  const last = state.messages.at(-1);
  $("send").disabled = streaming;
  $("stop").hidden = !streaming;
  $("regenerate").disabled = streaming || !last || last.role !== "assistant";
  $("edit-last").disabled = streaming || !state.messages.some((m) => m.role === "user");
  renderPending();
}

function renderPending() {
  const list = $("attachments");
  list.replaceChildren(
    ...state.pending.map((attachment, index) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = attachment.name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${attachment.name}`);
      remove.addEventListener("click", () => {
        state.pending.splice(index, 1);
        render();
        $("message").focus();
      });
      item.append(thumbnail(attachment), name, remove);
      return item;
    }),
  );
}

function notice(text) {
  $("notice").textContent = text;
}

// ---- the model ------------------------------------------------------------------------------

const CONTEXT_FIELDS = ["max_model_len", "context_length", "context_window", "n_ctx"];

async function loadModel() {
  try {
    const response = await fetch("v1/models", { headers: authHeaders() });
    if (!response.ok) throw await errorFromResponse(response);
    const body = await response.json();
    const card = body.data?.[0];
    if (!card) throw new ServerError("the server lists no model");
    const contextLength = CONTEXT_FIELDS.map((field) => card[field] ?? card.meta?.[field]).find(Number.isFinite);
    state.model = { id: card.id, contextLength };
    $("model-info").textContent = contextLength ? `${card.id} · context ${contextLength} tokens` : card.id;
  } catch (error) {
    $("model-info").textContent = `model unavailable: ${error.message}`;
  }
}

// ---- asking ---------------------------------------------------------------------------------

function numberSetting(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function requestMessages() {
  const messages = [];
  const system = $("system-prompt").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const message of state.messages) {
    if (message.role === "assistant") {
      if (message.state === "streaming") continue; // the answer this request asks for
      if (message.state !== "error") messages.push({ role: "assistant", content: message.text });
      else if (messages.at(-1)?.role === "user") messages.pop(); // the question the server refused
      continue;
    }
    const attachments = message.attachments ?? [];
    const content = attachments.length
      ? [...attachments.map(attachmentPart), ...(message.text ? [{ type: "text", text: message.text }] : [])]
      : message.text;
    messages.push({ role: "user", content });
  }
  return messages;
}

function requestBody() {
  const body = { model: state.model?.id ?? "default", messages: requestMessages() };
  const settings = {
    temperature: numberSetting("temperature"),
    top_p: numberSetting("top-p"),
    max_tokens: numberSetting("max-tokens"),
    seed: numberSetting("seed"),
  };
  for (const [key, value] of Object.entries(settings)) if (value !== undefined) body[key] = value;
  return body;
}

function statsLine({ started, firstToken, finished, tokens, usage, stopped }) {
  const parts = [];
  if (firstToken !== null) parts.push(`first token ${Math.round(firstToken - started)} ms`);
  const count = usage?.completion_tokens ?? tokens;
  const decodeSeconds = (finished - (firstToken ?? started)) / 1000;
  if (count > 1 && decodeSeconds > 0) parts.push(`${((count - 1) / decodeSeconds).toFixed(1)} tokens/s`);
  parts.push(`${count} token${count === 1 ? "" : "s"}`);
  if (usage?.prompt_tokens !== undefined) {
    const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
    parts.push(`${cached} of ${usage.prompt_tokens} prompt tokens cached`);
  }
  if (stopped) parts.push("stopped");
  return parts.join(" · ");
}

async function answer() {
  const reply = { role: "assistant", text: "", state: "streaming", stats: "" };
  state.messages.push(reply);
  const controller = new AbortController();
  state.controller = controller;
  render();
  const timing = { started: performance.now(), firstToken: null, finished: 0, tokens: 0, usage: null, stopped: false };
  try {
    if (!state.model) await loadModel();
    const chunks = streamChat("v1/chat/completions", requestBody(), {
      headers: { ...authHeaders(), "X-Session-ID": state.sessionId },
      signal: controller.signal,
    });
    for await (const chunk of chunks) {
      if (chunk.usage) timing.usage = chunk.usage;
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) {
        if (timing.firstToken === null) timing.firstToken = performance.now();
        timing.tokens += 1;
        reply.text += piece;
        render();
      }
    }
    reply.state = "done";
  } catch (error) {
    if (error.name === "AbortError") {
      timing.stopped = true;
      reply.state = "done";
    } else {
      reply.state = "error";
      reply.error = error.message;
    }
  } finally {
    timing.finished = performance.now();
    if (reply.state === "done") reply.stats = statsLine(timing);
    if (state.controller === controller) state.controller = null;
    render();
  }
}

function send() {
  if (state.controller) return;
  const text = $("message").value;
  if (!text.trim() && state.pending.length === 0) return;
  state.messages.push({ role: "user", text, attachments: state.pending, state: "done" });
  state.pending = [];
  $("message").value = "";
  notice("");
  answer();
}

function stop() {
  state.controller?.abort();
}

function newChat() {
  stop();
  state.messages = [];
  state.pending = [];
  state.sessionId = newSessionId();
  $("message").value = "";
  notice("");
  render();
  $("message").focus();
}

function regenerate() {
  if (state.controller || state.messages.at(-1)?.role !== "assistant") return;
  state.messages.pop();
  answer();
}

function editLast() {
  if (state.controller) return;
  const index = state.messages.findLastIndex((m) => m.role === "user");
  if (index < 0) return;
  const message = state.messages[index];
  state.messages = state.messages.slice(0, index);
  state.pending = [...(message.attachments ?? [])];
  $("message").value = message.text;
  render();
  $("message").focus();
}

// ---- attachments ----------------------------------------------------------------------------

async function attach(files) {
  for (const file of files) {
    try {
      state.pending.push(await fileToAttachment(file));
      notice("");
    } catch (error) {
      notice(error.message);
    }
  }
  render();
}

let voiceNotes = 0;

async function toggleRecording() {
  const button = $("record");
  if (state.recording) {
    const recording = state.recording;
    state.recording = null;
    button.textContent = "Record voice note";
    button.setAttribute("aria-pressed", "false");
    try {
      voiceNotes += 1;
      state.pending.push(audioAttachment(`voice note ${voiceNotes}.wav`, await recording.stop(), "wav"));
    } catch (error) {
      notice(`recording failed: ${error.message}`);
    }
    render();
    return;
  }
  try {
    state.recording = await startRecording();
    button.textContent = "Stop recording";
    button.setAttribute("aria-pressed", "true");
    notice("recording…");
  } catch (error) {
    notice(`cannot record: ${error.message}`);
  }
}

// ---- settings -------------------------------------------------------------------------------

function loadSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}");
    for (const id of SETTING_FIELDS) if (typeof saved[id] === "string") $(id).value = saved[id];
  } catch {
    // unreadable settings: start from the defaults
  }
}

function saveSettings() {
  const values = Object.fromEntries(SETTING_FIELDS.map((id) => [id, $(id).value]));
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(values));
  } catch {
    // storage unavailable: settings last for this page only
  }
}

// ---- wiring ---------------------------------------------------------------------------------

function wire() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.controller) stop();
  });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newChat);
  $("regenerate").addEventListener("click", regenerate);
  $("edit-last").addEventListener("click", editLast);
  $("attach").addEventListener("change", (event) => {
    attach(Array.from(event.target.files));
    event.target.value = "";
  });

  // a thumbnail that finishes loading grows the last message: keep following the conversation
  $("conversation").addEventListener(
    "load",
    () => {
      const conversation = $("conversation");
      if (conversation.lastElementChild?.dataset.role === "user" || nearBottom(conversation)) {
        conversation.scrollTop = conversation.scrollHeight;
      }
    },
    true,
  );

  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", (event) => {
    if (event.target === zone) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (event) => {
    zone.classList.remove("dragging");
    if (!event.dataTransfer?.files.length) return;
    event.preventDefault();
    attach(Array.from(event.dataTransfer.files));
  });
  document.addEventListener("paste", (event) => {
    const files = Array.from(event.clipboardData?.files ?? []);
    if (files.length) {
      event.preventDefault();
      attach(files);
    }
  });

  if (canRecord()) {
    $("record").hidden = false;
    $("record").addEventListener("click", toggleRecording);
  }
  for (const id of SETTING_FIELDS) $(id).addEventListener("change", saveSettings);
  $("api-key").addEventListener("change", loadModel);
}

loadSettings();
wire();
render();
loadModel();
$("message").focus();
