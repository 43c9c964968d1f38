// The playground page: the shared settings, the columns to compare, Run, and the link that
// reproduces a comparison. Everything it offers comes from the API at load time.

import { apiKey, getJson, setApiKey } from "./api.js";
import { Column } from "./column.js";
import { element, Field, fieldSpecs } from "./fields.js";

// What every column shares: the model, what to draw, the size, the seed, and the image to start
// from (so every column denoises the same one). Every other field of the request is a knob of the
// reverse process, set per column (a knob the schema gains shows up by itself). A deadline and a
// webhook do not change the image: they are left to the API's defaults.
const SHARED = [
  "model",
  "class_label",
  "prompt",
  "negative_prompt",
  "width",
  "height",
  "num_images",
  "seed",
  "init_image",
];
// Fields that take a file, sent as base64: the types the file picker offers (the API judges the
// bytes, its size and channels, and its refusal is shown under the field like any other)
const FILE_TYPES = new Map([["init_image", "image/png,image/jpeg"]]);
const NOT_SHOWN = new Set(["timeout_s", "webhook", "webhook_events"]);
const COLUMN_KEY = /^(\d+)\.(\w+)$/; // "2.steps" in a link: column 2's steps

const $ = (id) => document.getElementById(id);

function say(text, kind = "info") {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
  status.hidden = !text;
}

function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

class Playground {
  constructor() {
    this.columns = [];
    this.shared = new Map();
    this.loaded = false;
    this.runs = 0;
  }

  async load() {
    say("Reading the models, the samplers and the request schema from the API…");
    let models, samplers, openapi;
    try {
      [models, samplers, openapi] = await Promise.all([
        getJson("v1/models"),
        getJson("v1/samplers"),
        getJson("openapi.json"),
      ]);
    } catch (error) {
      say(error.message, "error");
      return;
    }
    if (!models.length) {
      say("No model is served right now (no live worker has registered one): reload once a worker runs.", "error");
      return;
    }
    const specs = fieldSpecs(openapi);
    this.models = new Map(models.map((m) => [m.name, m]));
    this.catalog = {
      specs: new Map(specs.map((s) => [s.name, s])),
      samplers: new Map(samplers.map((s) => [s.name, s])),
      knobs: new Set(samplers.flatMap((s) => s.knobs)),
    };
    this.columnNames = specs.map((s) => s.name).filter((n) => !SHARED.includes(n) && !NOT_SHOWN.has(n));
    this.buildShared();
    this.loaded = true;
    say("");
    const autorun = this.restore(location.hash.slice(1));
    for (const id of ["run", "add-column"]) $(id).disabled = false;
    document.body.dataset.ready = "true";
    if (autorun) this.run();
  }

  buildShared() {
    const container = $("shared-fields");
    container.replaceChildren();
    this.shared.clear();
    for (const name of SHARED) {
      const spec = this.catalog.specs.get(name);
      if (!spec) continue;
      let choices = null;
      if (name === "model") {
        choices = [...this.models.values()].map((m) => ({ value: m.name, label: m.name, title: m.description }));
      } else if (name === "class_label") {
        choices = []; // the chosen model's classes (updateShared)
      }
      const field = new Field(spec, { choices, accept: FILE_TYPES.get(name) ?? null });
      this.shared.set(name, field);
      container.append(field.element);
    }
    const seed = this.shared.get("seed");
    seed.input.placeholder = "random";
    const dice = element("button", { type: "button", class: "dice", title: "A new random seed" }, "random");
    dice.addEventListener("click", () => {
      seed.value = String(randomSeed());
      this.changed();
    });
    seed.input.after(dice);
    container.addEventListener("input", () => this.changed());
    container.addEventListener("change", () => this.changed());
  }

  model() {
    return this.models.get(this.shared.get("model").value) ?? this.models.values().next().value;
  }

  /** The model a request that names none gets (the API writes it into the page). */
  defaultModel() {
    const name = document.querySelector('meta[name="denoise-default-model"]')?.content;
    return this.models.has(name) ? name : this.models.keys().next().value;
  }

  /** What the model allows: its classes or a prompt, its sizes, its guidance. */
  updateShared() {
    const model = this.model();
    const field = (name) => this.shared.get(name);
    const classes = field("class_label");
    if (classes) {
      const names = model.class_names ?? [...Array(model.num_classes ?? 0).keys()].map(String);
      const choices = names.map((name, index) => ({
        value: String(index),
        label: name === String(index) ? name : `${index}: ${name}`,
      }));
      if (model.supports_guidance) choices.push({ value: "", label: "none (unconditional)" });
      classes.setChoices(choices);
      classes.show(model.conditioning === "class_label");
    }
    field("prompt")?.show(model.conditioning === "prompt");
    field("prompt")?.setHelp(model.max_prompt_tokens ? `at most ${model.max_prompt_tokens} tokens` : "");
    const negative = field("negative_prompt");
    negative?.show(model.conditioning === "prompt");
    negative?.enable(model.supports_guidance, `${model.name} has no unconditional branch`);
    for (const name of ["width", "height"]) {
      const size = field(name);
      if (!size) continue;
      if (model.size_multiple === null) {
        size.value = String(model.image_size);
        size.enable(false, `${model.name} draws ${model.image_size}×${model.image_size} only`);
        continue;
      }
      const minimum = Math.max(size.spec.minimum ?? 0, model.min_size ?? model.size_multiple);
      const maximum = Math.min(size.spec.maximum ?? Infinity, model.max_size ?? model.image_size);
      const value = Number(size.value);
      if (size.input.disabled || value % model.size_multiple || value < minimum || value > maximum) size.value = "";
      size.enable(true);
      size.setBounds({ minimum, maximum, step: model.size_multiple, placeholder: String(model.image_size) });
      size.setHelp(`a multiple of ${model.size_multiple}, ${minimum}–${maximum}`);
    }
    const image = field("init_image");
    if (image) {
      const width = field("width")?.value || model.image_size;
      const height = field("height")?.value || model.image_size;
      const colour = { 1: "grey", 3: "RGB" }[model.channels] ?? `${model.channels}-channel`;
      const types = (image.input.accept || "").split(",").map((type) => type.replace(/^image\//, "").toUpperCase());
      image.setHelp(`a ${width}×${height} ${colour} ${types.join(" or ")} to start from; not kept in the link`);
    }
  }

  conditioned() {
    return ["class_label", "prompt"].some((name) => {
      const field = this.shared.get(name);
      return field?.active && field.value !== "";
    });
  }

  /** What the shared fields allow a column: guidance needs a class or a prompt, strength an image. */
  context() {
    const image = this.shared.get("init_image");
    return { conditioned: this.conditioned(), initImage: Boolean(image?.active && image.value !== "") };
  }

  updateAll() {
    this.updateShared();
    const model = this.model();
    const context = this.context();
    for (const column of this.columns) column.update(model, context);
    this.updateCaptions();
    this.updateLink();
  }

  updateCaptions() {
    const values = this.columns.map((column) => column.values());
    const names = this.columnNames.filter((name) => new Set(values.map((v) => v[name])).size > 1);
    for (const column of this.columns) column.setCaption(names);
  }

  changed() {
    if (this.loaded) this.updateAll();
  }

  addColumn(values = null) {
    const column = new Column(this.catalog, this.columnNames, () => this.changed());
    const model = this.model();
    const last = this.columns.at(-1);
    column.setValues(
      values ?? (last ? last.values() : { sampler: model.default_sampler, steps: String(model.default_steps) }),
    );
    column.remove.addEventListener("click", () => this.removeColumn(column));
    this.columns.push(column);
    $("columns").append(column.element);
    this.renumber();
    column.update(model, this.context());
    return column;
  }

  removeColumn(column) {
    if (this.columns.length === 1) return;
    column.cancel().catch(() => {}); // its job, if one runs, is of no use any more
    column.clear();
    column.element.remove();
    this.columns = this.columns.filter((c) => c !== column);
    this.renumber();
    this.updateCaptions();
    this.updateLink();
  }

  renumber() {
    this.columns.forEach((column, index) => column.setIndex(index));
    for (const column of this.columns) column.remove.hidden = this.columns.length === 1;
  }

  /** The whole comparison as link parameters: shared fields as they are, column i's as "i.name". A
   * file is left out: base64 would make a link too long to share (and browsers cut long URLs). */
  linkParams(run) {
    const params = new URLSearchParams();
    for (const [name, field] of this.shared) {
      if (field.kind !== "file" && field.active && field.value !== "") params.set(name, field.value);
    }
    this.columns.forEach((column, index) => {
      for (const [name, value] of Object.entries(column.values())) params.set(`${index + 1}.${name}`, value);
    });
    if (run) params.set("run", "1");
    return params.toString();
  }

  updateLink() {
    $("reproduce").href = `#${this.linkParams($("autorun").checked)}`;
    const files = [...this.shared.values()].filter((f) => f.kind === "file" && f.active && f.value !== "");
    const note = $("link-note");
    note.textContent = files.length
      ? `The link leaves out the ${files.map((f) => f.spec.title.toLowerCase()).join(" and the ")} (too long ` +
        "for a URL): pick it again after opening the link."
      : "";
    note.hidden = !files.length;
  }

  /** Restores a comparison from link parameters (a fresh form when there are none). Returns
   * whether the link asks to run it. */
  restore(text) {
    const params = new URLSearchParams(text);
    const shared = {};
    const columns = new Map();
    for (const [key, value] of params) {
      const match = COLUMN_KEY.exec(key);
      if (!match) shared[key] = value;
      else columns.set(Number(match[1]), { ...columns.get(Number(match[1])), [match[2]]: value });
    }
    // absent: the API's default model, as for a request that names none
    const known = !shared.model || this.models.has(shared.model);
    this.shared.get("model").value = known ? (shared.model ?? this.defaultModel()) : this.defaultModel();
    if (!known) say(`The link names model ${shared.model}, which is not served now: showing ${this.model().name}.`, "error");
    this.updateShared();
    const fresh = !params.size;
    for (const [name, field] of this.shared) {
      // a link carries no file (linkParams): the image picked here stays
      if (name === "model" || field.kind === "file" || (fresh && field.kind === "select")) continue;
      field.value = shared[name] ?? (fresh && field.spec.default !== null ? String(field.spec.default) : "");
    }
    for (const column of this.columns) column.element.remove();
    this.columns = [];
    for (const index of [...columns.keys()].sort((a, b) => a - b)) this.addColumn(columns.get(index));
    if (!this.columns.length) this.addColumn();
    this.updateAll();
    return params.get("run") === "1";
  }

  sharedBody() {
    const body = {};
    for (const [name, field] of this.shared) {
      const value = field.jsonValue;
      if (name !== "seed" && value !== undefined) body[name] = value;
    }
    return body;
  }

  /** Submits every column on the same seed (a random one when none is set) and follows them. */
  async run() {
    const seed = this.shared.get("seed");
    if (seed.value === "") seed.value = String(randomSeed());
    for (const field of this.shared.values()) field.clearError();
    this.updateAll();
    history.replaceState(null, "", `#${this.linkParams(false)}`);
    $("run").disabled = true;
    $("stop").hidden = false;
    document.body.dataset.running = "true";
    const body = this.sharedBody();
    await Promise.all(this.columns.map((column) => column.run(body, seed.value, this.shared)));
    $("run").disabled = false;
    $("stop").hidden = true;
    this.runs += 1;
    document.body.dataset.running = "false";
    document.body.dataset.runs = String(this.runs);
  }

  async stop() {
    await Promise.all(this.columns.map((column) => column.cancel().catch((e) => say(e.message, "error"))));
  }
}

const playground = new Playground();
const keyInput = $("api-key");
keyInput.value = apiKey();
keyInput.addEventListener("change", () => {
  setApiKey(keyInput.value.trim());
  if (!playground.loaded) playground.load();
});
$("run").addEventListener("click", () => playground.run());
$("stop").addEventListener("click", () => playground.stop());
$("add-column").addEventListener("click", () => {
  playground.addColumn();
  playground.updateCaptions();
  playground.updateLink();
});
$("autorun").addEventListener("change", () => playground.loaded && playground.updateLink());
window.addEventListener("hashchange", () => {
  // a link to another comparison, opened in this tab (following this page's own link changes nothing)
  const hash = location.hash.slice(1);
  if (!playground.loaded || [false, true].some((run) => playground.linkParams(run) === hash)) return;
  if (playground.restore(hash)) playground.run();
});
playground.load();
