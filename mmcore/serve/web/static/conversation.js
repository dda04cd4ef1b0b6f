// The conversation view, driven by the message list. Model text goes in with textContent only.
import { thumbnail } from "./attachments.js";

const views = new WeakMap(); // message -> its element

function messageElement(message) {
  const element = document.createElement("article");
  element.className = `message ${message.role}`;
  element.dataset.role = message.role;
  const label = document.createElement("h2");
  label.className = "visually-hidden";
  label.textContent = message.role === "user" ? "You" : "Assistant";
  const media = document.createElement("div");
  media.className = "media";
  for (const attachment of message.attachments ?? []) media.append(thumbnail(attachment));
  const text = document.createElement("div");
  text.className = "text";
  const stats = document.createElement("p");
  stats.className = "stats";
  element.append(label, media, text, stats);
  return element;
}

function update(element, message) {
  const text = element.querySelector(".text");
  const shown = message.state === "error" ? `Error: ${message.error}` : message.text;
  if (text.textContent !== shown) text.textContent = shown;
  if (message.role === "assistant") element.dataset.state = message.state;
  element.querySelector(".stats").textContent = message.stats ?? "";
  element.setAttribute("aria-busy", String(message.state === "streaming"));
}

/** Make `container` show `messages` in order, reusing the elements of messages it already shows. */
export function renderConversation(container, messages) {
  const wanted = messages.map((message) => {
    let element = views.get(message);
    if (!element) {
      element = messageElement(message);
      views.set(message, element);
    }
    update(element, message);
    return element;
  });
  const current = Array.from(container.children);
  if (current.length !== wanted.length || current.some((element, i) => element !== wanted[i])) {
    container.replaceChildren(...wanted);
  }
}
