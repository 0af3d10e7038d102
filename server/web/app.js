// The page's logic: microphone or file in, FunASR's WebSocket protocol out, text on the page.
// Protocol (FunASR's WebSocket protocol): a JSON configuration, binary
// 16-bit PCM (or a whole file in offline mode), {"is_speaking": false}, then JSON results.

const $ = (id) => document.getElementById(id);
const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";

const TARGET_RATE = 16000;   // what the models take; the page downsamples to it
const STRIDE_MS = 60;        // FunASR's clients send chunk_size[1] * 60 ms / chunk_interval = 60 ms
const FILE_SLICE = 1 << 20;  // a file goes out in 1 MiB messages, well under the server's limit

const profile = meta("funasr-profile");  // "2pass", "offline", or "" while the models load
const apiKeyRequired = meta("funasr-api-key") === "required";
const sensevoice = meta("funasr-model") === "sensevoice";  // SenseVoiceSmall: its language and ITN controls

// What the page has seen, for debugging (and for the project's browser test).
const page = { state: "idle", url: "", messages: [], errors: [], sentSeconds: 0, audioRate: 0,
  cues: [], currentSentence: -1, lastDownload: null };
window.funasrPage = page;

// ------------------------------------------------------------------ transcript

// Protocol §4.2: online deltas are appended as they come; each 2pass-offline message replaces the
// deltas of its segment (its `index`) with the corrected sentence.
const transcript = {
  finals: [],  // corrected text, one entry per segment
  live: [],    // deltas not yet replaced: {index, text}
  reset() {
    this.finals = [];
    this.live = [];
    $("sentences").tBodies[0].replaceChildren();
    page.cues = [];
    page.currentSentence = -1;
    $("log").textContent = "";
    this.render();
  },
  delta(msg) {
    if (msg.text) this.live.push({ index: msg.index, text: msg.text });
  },
  segment(msg) {
    if (msg.text) this.finals.push(msg.text);
    this.live = typeof msg.index === "number"
      ? this.live.filter((d) => typeof d.index === "number" && d.index > msg.index)
      : [];
    addSentences(msg);
  },
  finish(mode) {
    // online mode has no corrected pass: its deltas are the text; otherwise the offline text wins
    if (mode === "online") this.finals.push(this.live.map((d) => d.text).join(""));
    this.live = [];
  },
  render() {
    updateDownloads();
    $("final-text").textContent = this.finals.join("");
    $("live-text").textContent = this.live.map((d) => d.text).join("");
  },
};

const seconds = (ms) => (typeof ms === "number" ? (ms / 1000).toFixed(2) : "");
// text_seg has a space between tokens; keep it only between two non-CJK tokens (English words)
const tidy = (s) => s.replace(/ (?=[\u2e80-\uffff])|(?<=[\u2e80-\uffff]) /g, "");

function addSentences(msg) {
  const body = $("sentences").tBodies[0];
  const row = (start, end, text) => {
    const tr = body.insertRow();
    for (const value of [seconds(start), seconds(end), text]) tr.insertCell().textContent = value;
    if (typeof start === "number" && typeof end === "number") page.cues.push({ start, end, text });
    else page.cues.push({ start: 0, end: 0, text });
  };
  if (Array.isArray(msg.stamp_sents) && msg.stamp_sents.length) {
    for (const s of msg.stamp_sents) row(s.start, s.end, tidy(s.text_seg || "") + (s.punc || ""));
  } else if (msg.text) {
    row(msg.start_time, msg.end_time, msg.text);
  }
}

// ------------------------------------------------------------------ status and errors

function setState(state, text) {
  page.state = state;
  $("status").textContent = text;
  const busy = ["connecting", "recording", "finishing", "uploading"].includes(state);
  $("start").disabled = busy || !micAvailable();
  $("stop").disabled = state !== "recording";
  $("upload").disabled = busy || !$("file").files.length;
  document.body.classList.toggle("recording", state === "recording");
}

function showError(text) {
  page.errors.push(text);
  const box = $("error");
  box.hidden = false;
  box.textContent = box.textContent ? `${box.textContent}\n${text}` : text;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function logMessage(msg) {
  const log = $("log");
  log.textContent += JSON.stringify(msg) + "\n";
}

// ------------------------------------------------------------------ the connection

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = $("token").value.trim();
  return `${scheme}//${location.host}/` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

async function whyRefused() {
  // A browser does not show a WebSocket's HTTP status; /health tells at least whether the server is up.
  try {
    const health = await fetch("/health", { cache: "no-store" });
    const state = (await health.json().catch(() => ({}))).status;
    if (state === "full") return "the server has reached its --max-connections limit; try again in a moment";
    if (health.status === 503) return "the server is still loading its models or shutting down; try again in a moment";
    return apiKeyRequired
      ? "check the API key (the server needs one), or the server has reached its --max-connections limit"
      : "the server may have reached its --max-connections limit, or needs an API key";
  } catch {
    return "the server cannot be reached";
  }
}

// Opens a WebSocket, sends `config`, and resolves to a run: {ws, final: Promise, mode}.
function startRun(config) {
  return new Promise((resolve, reject) => {
    const url = socketUrl();
    page.url = url.replace(/\?.*/, "");  // without the key
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const run = { ws, mode: config.mode, done: false };
    run.final = new Promise((ok, fail) => { run.ok = ok; run.fail = fail; });
    run.final.catch(() => {});  // failures are reported where the run is awaited
    ws.onopen = () => {
      run.opened = true;
      ws.send(JSON.stringify(config));
      resolve(run);
    };
    ws.onmessage = (event) => {
      if (run.done) return;  // after the final answer (or an error): nothing more belongs to this run
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        showError(`not a JSON message from the server: ${String(event.data).slice(0, 200)}`);
        return;
      }
      onMessage(run, msg);
    };
    ws.onclose = async (event) => {
      if (run.done) return;
      run.done = true;
      const how = `code ${event.code}${event.reason ? `: ${event.reason}` : ""}`;
      if (!run.opened) {
        reject(new Error(`could not connect to ${url.replace(/\?.*/, "")} (${how}): ${await whyRefused()}`));
      } else {
        run.fail(new Error(`the connection closed before the final result (${how})`));
      }
    };
  });
}

function onMessage(run, msg) {
  page.messages.push(msg);
  logMessage(msg);
  if (msg.error) showError(`server: ${msg.error}`);
  else if (typeof msg.text === "string" && msg.text.startsWith("ERROR")) showError(`server: ${msg.text}`);
  if (msg.mode === "2pass-online" || msg.mode === "online") transcript.delta(msg);
  else if (msg.mode === "2pass-offline" || msg.mode === "offline") transcript.segment(msg);
  if (msg.mode === "offline" && run.mode !== "offline") {
    $("server-info").textContent = "This server runs the offline profile: text comes when you stop.";
  }
  // the offline profile's one answer says is_final: false (as the reference does); it is the last one
  if (msg.is_final === true || msg.mode === "offline") {
    transcript.finish(run.mode);
    if (!run.done) {
      run.done = true;
      run.ok(msg);
    }
  }
  transcript.render();
}

function hotwords() {
  // "word weight" lines (weight optional) become the JSON object string the protocol takes
  const words = {};
  for (const line of $("hotwords").value.split("\n")) {
    const m = line.trim().match(/^(.*?)(?:\s+(\d+))?$/);
    if (m && m[1]) words[m[1]] = m[2] ? Number(m[2]) : 20;
  }
  return Object.keys(words).length ? JSON.stringify(words) : undefined;
}

function baseConfig(mode, wavName) {
  const config = { mode, wav_name: wavName, is_speaking: true, itn: $("itn").checked };
  if (sensevoice) {
    config.svs_lang = $("svs-lang").value;
    config.svs_itn = $("svs-itn").checked;
  }
  const words = hotwords();
  if (words) config.hotwords = words;
  return config;
}

async function finishRun(run) {
  const final = await run.final;
  run.ws.close(1000);
  setState("done", final.error ? "Finished with an error." : "Done.");
}

// ------------------------------------------------------------------ microphone

function micAvailable() {
  return window.isSecureContext && !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
}

// Float samples at the AudioContext's rate in, int16 at `outRate` out. Each output sample is
// the mean of the input samples of its period: a box low-pass, enough against aliasing for speech.
class Downsampler {
  constructor(inRate, outRate) {
    this.ratio = inRate / outRate;
    this.next = this.ratio;  // input position where the current output period ends
    this.pos = 0;
    this.sum = 0;
    this.count = 0;
  }
  push(input) {
    const out = new Int16Array(Math.ceil(input.length / this.ratio) + 1);
    let k = 0;
    for (let i = 0; i < input.length; i++) {
      this.sum += input[i];
      this.count++;
      if (++this.pos >= this.next) {
        const v = Math.max(-1, Math.min(1, this.sum / this.count));
        out[k++] = v < 0 ? v * 32768 : v * 32767;
        this.sum = 0;
        this.count = 0;
        this.next += this.ratio;
      }
    }
    return out.subarray(0, k);
  }
}

async function openMicrophone(onSamples) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  let node;
  let flush = async () => {};
  try {
    await ctx.resume();
    if (ctx.audioWorklet && typeof AudioWorkletNode === "function") {
      await ctx.audioWorklet.addModule(new URL("capture-worklet.js", import.meta.url));
      node = new AudioWorkletNode(ctx, "pcm-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit",
      });
      let flushed = () => {};
      node.port.onmessage = (e) => {
        if (e.data instanceof Float32Array) onSamples(e.data);
        else if (e.data && e.data.flushed) { onSamples(e.data.flushed); flushed(); }
      };
      flush = () => new Promise((resolve) => {
        flushed = resolve;
        node.port.postMessage("flush");
        setTimeout(resolve, 500);
      });
    } else {  // older browsers: the deprecated ScriptProcessorNode
      node = ctx.createScriptProcessor(4096, 1, 1);
      node.onaudioprocess = (e) => onSamples(new Float32Array(e.inputBuffer.getChannelData(0)));
    }
    source.connect(node);
    node.connect(ctx.destination);  // outputs silence; connected so the browser keeps it running
  } catch (e) {
    stream.getTracks().forEach((t) => t.stop());
    ctx.close();
    throw e;
  }
  return {
    rate: ctx.sampleRate,
    async close() {
      await flush();
      source.disconnect();
      node.disconnect();
      stream.getTracks().forEach((t) => t.stop());
      await ctx.close();
    },
  };
}

function micErrorText(e) {
  if (e.name === "NotAllowedError") return "microphone permission was denied: allow it in the address bar and try again";
  if (e.name === "NotFoundError") return "no microphone was found";
  return `the microphone could not be opened: ${e.message || e}`;
}

let recording = null;  // {run, mic, outRate, pending: Int16Array[] not sent yet, pendingSamples, sent}

async function startRecording() {
  clearError();
  transcript.reset();
  page.messages = [];
  page.sentSeconds = 0;
  const mode = $("mode").value;
  setState("connecting", "Connecting…");
  let run;
  try {
    run = await startRun({
      ...baseConfig(mode, "mic"),
      chunk_size: [5, 10, 5],
      chunk_interval: 10,
      wav_format: "pcm",
      audio_fs: TARGET_RATE,  // updated below if the microphone runs slower than 16 kHz
    });
  } catch (e) {
    showError(e.message);
    setState("error", "Not connected.");
    return;
  }
  const rec = { run, pending: [], pendingSamples: 0, sent: 0 };
  try {
    let down = null;
    rec.mic = await openMicrophone((samples) => down && sendPcm(rec, down.push(samples)));
    rec.outRate = Math.min(rec.mic.rate, TARGET_RATE);
    page.audioRate = rec.mic.rate;
    if (rec.outRate !== TARGET_RATE) run.ws.send(JSON.stringify({ audio_fs: rec.outRate }));
    down = new Downsampler(rec.mic.rate, rec.outRate);
  } catch (e) {
    run.ws.close();
    showError(micErrorText(e));
    setState("error", "Not recording.");
    return;
  }
  recording = rec;
  setState("recording", `Recording (${mode})… press Stop when you are done.`);
  run.final.then(() => {
    // the server ended the utterance by itself (an error): stop the microphone too
    if (recording === rec && page.state === "recording") stopRecording();
  }, () => {});
}

// Sends the PCM in strides of STRIDE_MS; `flush` sends what is left too (before the end signal).
function sendPcm(rec, pcm, flush = false) {
  rec.pending.push(pcm);
  rec.pendingSamples += pcm.length;
  const stride = Math.round((rec.outRate * STRIDE_MS) / 1000);
  if (rec.pendingSamples < stride && !flush) return;
  const all = new Int16Array(rec.pendingSamples);
  let offset = 0;
  for (const part of rec.pending) { all.set(part, offset); offset += part.length; }
  let i = 0;
  for (; i + stride <= all.length; i += stride) sendAudio(rec.run, all.subarray(i, i + stride));
  if (flush && i < all.length) { sendAudio(rec.run, all.subarray(i)); i = all.length; }
  rec.pending = i < all.length ? [all.slice(i)] : [];
  rec.pendingSamples = all.length - i;
  rec.sent += i;
  page.sentSeconds = rec.sent / rec.outRate;
  $("recorded").textContent = `${page.sentSeconds.toFixed(1)} s sent`;
}

function sendAudio(run, pcm) {
  if (run.ws.readyState === WebSocket.OPEN && !run.done) run.ws.send(pcm);  // a view: only its bytes go out
}

async function stopRecording() {
  const rec = recording;
  if (!rec) return;
  recording = null;
  setState("finishing", "Waiting for the final result…");
  await rec.mic.close();
  const ws = rec.run.ws;
  sendPcm(rec, new Int16Array(0), true);
  if (ws.readyState === WebSocket.OPEN && !rec.run.done) ws.send(JSON.stringify({ is_speaking: false }));
  try {
    await finishRun(rec.run);
  } catch (e) {
    showError(e.message);
    setState("error", "Stopped.");
  }
}

// ------------------------------------------------------------------ file upload

async function transcribeFile() {
  const file = $("file").files[0];
  if (!file) return;
  clearError();
  transcript.reset();
  page.messages = [];
  // the server decodes containers (wav, mp3, m4a, flac, ogg, ...) itself; .pcm/.raw: 16 kHz int16 mono
  const ext = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
  const format = ext === "pcm" || ext === "raw" ? "pcm" : ext || "wav";
  page.resultName = file.name;
  setState("uploading", `Sending ${file.name}…`);
  try {
    const run = await startRun({ ...baseConfig("offline", file.name), wav_format: format, audio_fs: TARGET_RATE });
    const bytes = new Uint8Array(await file.arrayBuffer());
    for (let i = 0; i < bytes.length; i += FILE_SLICE) run.ws.send(bytes.subarray(i, i + FILE_SLICE));
    run.ws.send(JSON.stringify({ is_speaking: false }));
    $("status").textContent = `Transcribing ${file.name}…`;
    await finishRun(run);
  } catch (e) {
    showError(e.message);
    setState("error", "Failed.");
  }
}

// ------------------------------------------------------------------ downloads and playback

const clock = (ms, sep) => {
  const t = Math.max(0, Math.round(ms));
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(Math.floor(t / 3600000))}:${pad(Math.floor(t / 60000) % 60)}:${pad(Math.floor(t / 1000) % 60)}`
    + `${sep}${pad(t % 1000, 3)}`;
};

// The current result as a file: SRT and VTT one cue per sentence row, JSON the text, sentences and messages.
function resultFile(format) {
  const cues = page.cues.filter((c) => c.text);
  if (format === "srt") {
    return cues.map((c, i) => `${i + 1}\n${clock(c.start, ",")} --> ${clock(Math.max(c.start, c.end), ",")}\n${c.text}\n`)
      .join("\n");
  }
  if (format === "vtt") {
    return "WEBVTT\n\n" + cues.map((c) => `${clock(c.start, ".")} --> ${clock(Math.max(c.start, c.end), ".")}\n`
      + `${c.text.replace(/-->/g, "--&gt;")}\n`).join("\n");
  }
  const segments = page.cues.map((c) => ({ start: c.start / 1000, end: c.end / 1000, text: c.text }));
  return JSON.stringify({ text: $("final-text").textContent, segments, messages: page.messages }, null, 1) + "\n";
}

const MEDIA_TYPES = { srt: "application/x-subrip", vtt: "text/vtt", json: "application/json" };

function download(format) {
  const text = resultFile(format);
  const base = (page.resultName || "transcript").replace(/\.[^.]*$/, "") || "transcript";
  const name = `${base}.${format}`;
  page.lastDownload = { format, name, text };
  const url = URL.createObjectURL(new Blob([text], { type: `${MEDIA_TYPES[format]};charset=utf-8` }));
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function updateDownloads() {
  const has = page.cues.some((c) => c.text);
  for (const f of ["srt", "vtt", "json"]) $(`download-${f}`).disabled = !has;
}

// Playback of the chosen file, its sentence row highlighted while it plays.
let playerUrl = null;
function loadPlayer() {
  const file = $("file").files[0];
  const player = $("player");
  if (playerUrl) URL.revokeObjectURL(playerUrl);
  playerUrl = file ? URL.createObjectURL(file) : null;
  player.hidden = !file;
  if (playerUrl) player.src = playerUrl;
  else player.removeAttribute("src");
}

function highlight() {
  const ms = $("player").currentTime * 1000;
  const index = page.cues.findIndex((c) => c.start <= ms && ms < c.end);
  if (index === page.currentSentence) return;
  page.currentSentence = index;
  [...$("sentences").tBodies[0].rows].forEach((tr, i) => tr.classList.toggle("current", i === index));
}

// ------------------------------------------------------------------ set up

function describeServer() {
  const info = $("server-info");
  if (profile === "offline") {
    for (const option of $("mode").options) option.disabled = option.value !== "offline";
    $("mode").value = "offline";
    info.textContent = "This server runs the offline profile (no streaming model): a recording is "
      + "transcribed when you press Stop, a file when it has been sent.";
  } else if (profile === "2pass") {
    info.textContent = "This server streams: 2pass, online and offline modes.";
  } else if (profile === "") {
    info.textContent = "The server is still loading its models: reload this page in a moment.";
  } else {
    info.textContent = "";
  }
  if (!apiKeyRequired) $("token-row").hidden = true;
  $("svs-row").hidden = !sensevoice;
  const token = new URLSearchParams(location.search).get("token");
  if (token) $("token").value = token;
  if (!micAvailable()) {
    const note = $("mic-note");
    note.hidden = false;
    const https = `https://${location.host}${location.pathname}`;
    const link = Object.assign(document.createElement("a"), { href: https, textContent: https });
    note.append(
      "Browsers allow the microphone only on https:// pages or on localhost. Open ", link,
      " instead (accept the server's self-signed certificate once), or transcribe a file below.",
    );
  }
}

$("start").addEventListener("click", startRecording);
$("stop").addEventListener("click", stopRecording);
$("upload").addEventListener("click", transcribeFile);
$("file").addEventListener("change", () => {
  setState(page.state, $("status").textContent);
  loadPlayer();
});
$("player").addEventListener("timeupdate", highlight);
$("player").addEventListener("seeked", highlight);
for (const f of ["srt", "vtt", "json"]) $(`download-${f}`).addEventListener("click", () => download(f));
$("settings").addEventListener("submit", (e) => e.preventDefault());
describeServer();
setState("idle", "Idle.");
