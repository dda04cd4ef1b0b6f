// Files the user attaches (input, drop, paste, microphone) as OpenAI content parts.
import { toBase64, toWav } from "./wav.js";

const AUDIO_FORMATS = {
  "audio/wav": "wav",
  "audio/x-wav": "wav",
  "audio/wave": "wav",
  "audio/vnd.wave": "wav",
  "audio/mpeg": "mp3",
  "audio/mp3": "mp3",
};

function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** An audio attachment of WAV or MP3 bytes. */
export function audioAttachment(name, bytes, format) {
  const data = toBase64(bytes);
  const mime = format === "mp3" ? "audio/mpeg" : "audio/wav";
  return { kind: "audio", name, format, data, url: `data:${mime};base64,${data}` };
}

/**
 * The attachment of a file: images as data URIs; WAV and MP3 as they are; other audio the browser
 * can decode re-encoded as WAV. Throws for anything else.
 */
export async function fileToAttachment(file) {
  const name = file.name || (file.type.startsWith("audio/") ? "recording" : "pasted image");
  if (file.type.startsWith("image/")) {
    return { kind: "image", name, url: await readAsDataUrl(file) };
  }
  if (file.type.startsWith("audio/") || /\.(wav|mp3|ogg|oga|flac|m4a|webm)$/i.test(name)) {
    let format = AUDIO_FORMATS[file.type] || (/\.wav$/i.test(name) ? "wav" : /\.mp3$/i.test(name) ? "mp3" : null);
    if (format) return audioAttachment(name, new Uint8Array(await file.arrayBuffer()), format);
    return audioAttachment(name, await toWav(file), "wav");
  }
  throw new Error(`${name}: attach an image or a sound (got ${file.type || "an unknown type"})`);
}

/** The OpenAI content part of an attachment. */
export function attachmentPart(attachment) {
  if (attachment.kind === "image") return { type: "image_url", image_url: { url: attachment.url } };
  return { type: "input_audio", input_audio: { data: attachment.data, format: attachment.format } };
}

/** A thumbnail (image or audio player) of an attachment; built from DOM nodes, never from markup. */
export function thumbnail(attachment) {
  if (attachment.kind === "image") {
    const img = document.createElement("img");
    img.src = attachment.url;
    img.alt = attachment.name;
    img.className = "thumb";
    return img;
  }
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.src = attachment.url;
  audio.className = "thumb-audio";
  audio.setAttribute("aria-label", attachment.name);
  return audio;
}
