// The page's calls to the API: the optional API key, errors in words, and a job's live events.
// Every URL is relative to the page, so the playground works behind a path prefix too.

const KEY_STORAGE = "denoise.apiKey";
// a job's events end with one of these (GET /v1/jobs/{id}/events), carrying the job
const FINAL_EVENTS = new Set(["succeeded", "failed", "cancelled"]);

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(value) {
  if (value) localStorage.setItem(KEY_STORAGE, value);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** An answer other than 2xx; ``detail`` is FastAPI's: a string, or a list of {loc, msg}. */
export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(describe(status, detail, retryAfter));
    this.status = status;
    this.detail = detail;
  }

  /** The detail's items that name a request field: [{field, message}]. */
  get fieldErrors() {
    if (!Array.isArray(this.detail)) return [];
    return this.detail.map((item) => ({ field: fieldOf(item), message: fieldMessage(item) }));
  }
}

/** ["body", "steps"] → "steps"; null for errors about the body as a whole or a header. */
function fieldOf(item) {
  const loc = Array.isArray(item.loc) ? item.loc : [];
  return loc[0] === "body" && typeof loc[1] === "string" ? loc[1] : null;
}

/** One error in words, naming its field when the API's message does not already. */
function fieldMessage(item) {
  const field = fieldOf(item) ?? (Array.isArray(item.loc) ? item.loc.slice(1).join(".") : "");
  const message = String(item.msg ?? item).replace(/^Value error, /, "");
  return field && !message.startsWith(field) ? `${field}: ${message}` : message;
}

function describe(status, detail, retryAfter) {
  const text = Array.isArray(detail) ? detail.map(fieldMessage).join("; ") : String(detail);
  switch (status) {
    case 0:
      return `The API did not answer: ${text}`;
    case 401:
      return `The API asks for a key (${text}): enter one in "API key" at the top.`;
    case 429:
      return `Too many requests: ${text}${retryAfter ? `; try again in ${retryAfter} s` : ""}`;
    case 503:
      return `The service is unavailable right now: ${text}`;
    default:
      return `${status}: ${text}`;
  }
}

async function failure(response) {
  let detail = response.statusText || "no detail";
  try {
    detail = (await response.json()).detail ?? detail;
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, detail, response.headers.get("Retry-After"));
}

async function call(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: headers(init.headers) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, error.message);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export async function getJson(path) {
  return (await call(path, { headers: { Accept: "application/json" } })).json();
}

/**
 * Submits a generation without waiting for it (202 and the JobView).
 * @param {object} body the request's fields, except the seed
 * @param {string} seed as typed: decimal digits are spliced in as they are (seeds go up to 2⁶³ − 1,
 *   past what a JavaScript number holds exactly); "" for none
 */
export async function submitGeneration(body, seed) {
  const digits = /^\d+$/.test(seed);
  // anything else the API judges (a negative seed is its 422, shown at the seed)
  let text = JSON.stringify(digits || seed === "" ? body : { ...body, seed: Number(seed) });
  if (digits) text = `{"seed":${seed}${text === "{}" ? "" : `,${text.slice(1, -1)}`}}`;
  const response = await call("v1/generations", {
    method: "POST",
    headers: { "Content-Type": "application/json", Prefer: "respond-async" },
    body: text,
  });
  return response.json();
}

export async function cancelJob(jobId) {
  try {
    await call(`v1/jobs/${jobId}`, { method: "DELETE" });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409)) throw error; // 409: it had finished
  }
}

/** Server-Sent Events of a response body: {type, id, data (parsed JSON)}. */
async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseFrame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event) yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseFrame(text) {
  const event = { type: "message", id: null, data: null };
  const data = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue; // a comment: the server's keep-alive
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "event") event.type = value;
    else if (name === "id") event.id = value;
    else if (name === "data") data.push(value);
  }
  if (!data.length) return null;
  event.data = JSON.parse(data.join("\n"));
  return event;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follows a job until it ends: ``onEvent(type, data)`` for each of its events (queued, running
 * with step, total and now and then a preview PNG). A dropped stream is resumed after the last
 * event seen (Last-Event-ID); if it keeps failing, the job is polled instead.
 * @returns {Promise<object>} the finished job (JobView)
 */
export async function followJob(jobId, onEvent, signal) {
  let lastEventId = null;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastEventId) extra["Last-Event-ID"] = lastEventId;
      const response = await call(`v1/jobs/${jobId}/events`, { headers: extra, signal });
      for await (const event of readEvents(response.body)) {
        if (event.id) lastEventId = event.id;
        onEvent(event.type, event.data);
        if (FINAL_EVENTS.has(event.type)) return event.data.job ?? getJson(`v1/jobs/${jobId}`);
      }
    } catch (error) {
      if (signal?.aborted) throw error;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) throw error;
    }
    await sleep(500 * (attempt + 1));
  }
  for (;;) {
    const job = await getJson(`v1/jobs/${jobId}`);
    if (FINAL_EVENTS.has(job.status)) return job;
    onEvent(job.status, job.progress);
    await sleep(1000);
    if (signal?.aborted) throw new DOMException("stopped", "AbortError");
  }
}
