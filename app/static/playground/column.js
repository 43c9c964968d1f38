// One column of the comparison: its knobs (a Field per per-column request field), which of them
// the chosen sampler and model honour, and its job: submitted, followed live, then shown large.

import { ApiError, cancelJob, followJob, submitGeneration } from "./api.js";
import { element, Field } from "./fields.js";

const DISPLAY_PX = 224; // the long side an image is shown at, in whole multiples of its pixels

function scaleFor(width, height) {
  return Math.max(1, Math.floor(DISPLAY_PX / Math.max(width, height)));
}

function words(name) {
  return name.replace(/_ms(_|$)/, "$1").replaceAll("_", " ");
}

/** JSON with one top-level key a line and each value on its line (the timesteps stay one line). */
function configText(config) {
  const lines = Object.entries(config).map(([key, value]) => ` ${JSON.stringify(key)}: ${JSON.stringify(value)}`);
  return `{\n${lines.join(",\n")}\n}`;
}

/**
 * What a job made of its init image, as [key, label, value in words, title] rows: σ̂ and the start
 * timestep from its resolved config, and whether the init image came back instead of the result
 * (each image's init_returned). Empty for a job without an init image.
 */
function initRows(job) {
  const config = job.config ?? {};
  const rows = [];
  if (config.init_noise_estimate != null) {
    const sigma = `${config.init_noise_estimate.toFixed(2)} gray levels`;
    rows.push(["init_noise_estimate", "init σ̂", sigma, "the noise measured in the init image"]);
  }
  if (config.start_timestep != null) {
    rows.push(["start_timestep", "start timestep", String(config.start_timestep), "where the reverse process began"]);
  }
  const judged = (job.images ?? []).filter((image) => image.init_returned != null);
  if (judged.length) {
    const returned = judged.filter((image) => image.init_returned).map((image) => image.index);
    const text = !returned.length ? "no" : returned.length === judged.length ? "yes" : `images ${returned.join(", ")}`;
    const title = "yes: the result scored noisier than the init image, which came back instead";
    rows.push(["init_returned", "init returned", text, title]);
  }
  return rows;
}

export class Column {
  /**
   * @param {object} catalog {specs, samplers (Map name → SamplerInfo), knobs (Set of every
   *   sampler's knob names)}
   * @param {string[]} names the per-column request fields, in the schema's order
   * @param {function} onChange called after any edit
   */
  constructor(catalog, names, onChange) {
    this.catalog = catalog;
    this.fields = new Map();
    for (const name of names) {
      const spec = catalog.specs.get(name);
      const options = name === "sampler" ? { choices: this.samplerChoices() } : {};
      this.fields.set(name, new Field(spec, options));
    }
    this.heading = element("h3", {});
    this.caption = element("p", { class: "caption" });
    this.remove = element("button", { type: "button", class: "remove", title: "Remove this setting" }, "×");
    this.summary = element("p", { class: "sampler-summary" });
    this.result = element("div", { class: "result" });
    this.message = element("p", { class: "column-error", role: "alert", hidden: true });
    const form = element("div", { class: "fields" }, ...[...this.fields.values()].map((f) => f.element));
    this.element = element(
      "article",
      { class: "column" },
      element("header", {}, this.heading, this.remove),
      this.caption,
      this.message,
      this.result,
      this.summary,
      form,
    );
    this.element.addEventListener("input", () => onChange(this));
    this.element.addEventListener("change", () => onChange(this));
    this.abort = null;
    this.jobId = null;
  }

  samplerChoices(model = null) {
    return [...this.catalog.samplers.values()].map((s) => {
      const usable = !model || s.prediction_types.includes(model.prediction_type);
      return {
        value: s.name,
        label: s.name,
        title: s.summary,
        disabled: !usable,
      };
    });
  }

  setIndex(index) {
    this.index = index;
    this.label = String.fromCharCode(65 + (index % 26)) + (index >= 26 ? Math.floor(index / 26) : "");
    this.heading.textContent = `Setting ${this.label}`;
    this.element.dataset.column = String(index + 1);
  }

  /** What sets this column apart: its values of the fields that differ between columns. */
  setCaption(names) {
    const values = this.values();
    const text = (name) => {
      if (this.fields.get(name).kind === "boolean") return values[name] ? name : `no ${name}`;
      return `${name} ${values[name] ?? "default"}`;
    };
    this.caption.textContent = names.map(text).join(" · ");
  }

  field(name) {
    return this.fields.get(name);
  }

  /** The values of the active, non-empty fields, as strings (what the link keeps). */
  values() {
    const values = {};
    for (const [name, field] of this.fields) if (field.active && field.value !== "") values[name] = field.value;
    return values;
  }

  setValues(values) {
    for (const [name, field] of this.fields) field.value = values[name] ?? "";
  }

  /**
   * Applies the model's and the sampler's rules: which schedules, which knobs (the sampler's
   * ``knobs`` and ``noise``), whether guidance applies, and the model's defaults as placeholders.
   * @param {object} model ModelInfo
   * @param {object} context what the shared fields hold: {conditioned (a class or a prompt is
   *   chosen), initImage (an image to start from is picked)}
   */
  update(model, { conditioned, initImage }) {
    const samplerField = this.field("sampler");
    samplerField.setChoices(this.samplerChoices(model));
    if (!samplerField.hasChoice(samplerField.value)) samplerField.value = model.default_sampler;
    const sampler = this.catalog.samplers.get(samplerField.value);
    this.summary.textContent = `${sampler.name}, ${sampler.noise}: ${sampler.summary}`;

    const schedule = this.field("schedule");
    schedule.setChoices(sampler.schedules.map((name) => ({ value: name, label: name })));
    if (!sampler.schedules.includes(schedule.value)) schedule.value = sampler.default_schedule;
    this.field("steps")?.setBounds({ placeholder: String(model.default_steps) });

    for (const [name, field] of this.fields) {
      if (this.catalog.knobs.has(name)) field.enable(sampler.knobs.includes(name), `not honoured by ${sampler.name}`);
    }
    const deterministic = this.field("deterministic");
    if (deterministic) {
      const always = sampler.noise === "deterministic" ? "injects no noise" : "always injects noise";
      deterministic.enable(sampler.noise === "either", `${sampler.name} ${always}`);
    }
    const eta = Number(this.field("eta")?.jsonValue ?? 0);
    const injectsNoise =
      sampler.noise === "stochastic" || (sampler.noise === "either" && !deterministic?.value && eta > 0);
    for (const name of ["variance_bound", "variance_scale"]) {
      const field = this.field(name);
      if (field && !field.input.disabled && !injectsNoise) {
        field.enable(false, "no noise is injected: set eta above 0");
      }
    }
    const ratio = this.field("dynamic_thresholding_ratio");
    const thresholding = this.field("dynamic_thresholding");
    if (ratio && thresholding) {
      ratio.enable(thresholding.active && thresholding.value === "true", "needs dynamic thresholding");
    }

    const guidanceWhy = !model.supports_guidance
      ? `${model.name} has no unconditional branch`
      : "needs a class or a prompt";
    for (const name of ["guidance_scale", "guidance_rescale"]) {
      this.field(name)?.enable(model.supports_guidance && conditioned, guidanceWhy);
    }
    this.field("guidance_scale")?.setBounds({ placeholder: String(model.default_guidance_scale) });
    // strength says how far back the init image is noised: without one the API refuses it
    this.field("strength")?.enable(initImage, "needs an init image (under Every column)");
  }

  /** The request body of this column: the shared fields', then its own. */
  body(shared) {
    const body = { ...shared };
    for (const [name, field] of this.fields) {
      const value = field.jsonValue;
      if (value !== undefined) body[name] = value;
    }
    return body;
  }

  clear() {
    this.abort?.abort();
    this.jobId = null;
    delete this.element.dataset.jobId;
    delete this.element.dataset.status;
    this.message.hidden = true;
    this.result.replaceChildren();
    for (const field of this.fields.values()) field.clearError();
  }

  /** The API's refusal in words, next to the fields it names (``sharedFields`` for the shared). */
  showError(error, sharedFields) {
    this.element.dataset.status = "refused";
    const general = [];
    const fieldErrors = error instanceof ApiError ? error.fieldErrors : [];
    for (const { field, message } of fieldErrors) {
      const own = this.fields.get(field);
      const shared = sharedFields.get(field);
      if (own?.active) own.showError(message);
      else if (shared) shared.showError(message);
      else general.push(message);
    }
    if (!fieldErrors.length) general.push(error.message);
    if (general.length) {
      this.message.textContent = general.join("; ");
      this.message.hidden = false;
    }
  }

  /** Submits this column's request and follows its job to the end. */
  async run(shared, seed, sharedFields) {
    this.clear();
    const abort = new AbortController();
    this.abort = abort;
    this.previews = 0;
    this.element.dataset.previews = "0";
    this.element.dataset.status = "submitting";
    const status = element("p", { class: "progress-text" }, "submitting…");
    this.result.replaceChildren(status);
    let job;
    try {
      job = await submitGeneration(this.body(shared), seed);
    } catch (error) {
      this.result.replaceChildren();
      this.showError(error, sharedFields);
      return;
    }
    this.jobId = job.id;
    this.element.dataset.jobId = job.id;
    const live = this.liveView(job.config);
    try {
      const final = await followJob(job.id, (type, data) => live.update(type, data), abort.signal);
      if (abort.signal.aborted) return;
      this.showJob(final);
    } catch (error) {
      if (abort.signal.aborted) return;
      this.element.dataset.status = "error";
      this.message.textContent = error.message;
      this.message.hidden = false;
    }
  }

  async cancel() {
    const unfinished = ["queued", "running"].includes(this.element.dataset.status);
    if (this.jobId && unfinished) await cancelJob(this.jobId);
  }

  /** Step k of n and the x̂₀ previews, in the place the image will take. */
  liveView(config) {
    const scale = scaleFor(config.width, config.height);
    const progress = element("progress", { max: config.steps, value: 0 });
    const text = element("span", { class: "step" }, "queued");
    const preview = element("img", {
      class: "preview",
      alt: "x̂₀ preview",
      width: config.width * scale,
      height: config.height * scale,
      hidden: true,
    });
    const frame = element("div", { class: "frame" }, preview);
    frame.style.minHeight = `${config.height * scale}px`;
    this.result.replaceChildren(element("div", { class: "live" }, frame, element("p", { class: "progress" }, progress, text)));
    this.element.dataset.status = "queued";
    return {
      update: (type, data) => {
        if (type === "queued") {
          text.textContent = data.queue_position ? `queued, position ${data.queue_position}` : "queued";
        } else if (type === "running") {
          this.element.dataset.status = "running";
          if (data.total) {
            progress.max = data.total;
            progress.value = data.step ?? 0;
            text.textContent = `step ${data.step ?? 0} of ${data.total}`;
          }
          if (data.preview_png_base64) {
            preview.src = `data:image/png;base64,${data.preview_png_base64}`;
            preview.hidden = false;
            this.previews += 1;
            this.element.dataset.previews = String(this.previews);
          }
        }
      },
    };
  }

  /** The finished job: each image large, its σ̂, what became of an init image, the timings and the
   * resolved config. */
  showJob(job) {
    this.element.dataset.status = job.status;
    const parts = [];
    if (job.status !== "succeeded") {
      const why = job.error ? `: ${job.error.type}: ${job.error.message}` : "";
      this.message.textContent = job.status === "cancelled" ? "The job was cancelled" : `The job ${job.status}${why}`;
      this.message.hidden = false;
    }
    for (const image of job.images ?? []) {
      const scale = scaleFor(image.width, image.height);
      const img = element("img", {
        class: "final",
        src: `data:image/png;base64,${image.png_base64}`,
        width: image.width * scale,
        height: image.height * scale,
        alt: `image ${image.index}, seed ${image.seed}`,
      });
      const noise = element(
        "span",
        { class: "noise", "data-noise-estimate": image.noise_estimate, title: "noise left in the image" },
        `σ̂ = ${image.noise_estimate.toFixed(2)} gray levels`,
      );
      const caption = element("figcaption", {}, noise, ` · seed ${image.seed} · ${image.width}×${image.height}`);
      parts.push(element("figure", { class: "image" }, img, caption));
    }
    const init = initRows(job);
    if (init.length) {
      const rows = init.map(([key, label, text, title]) =>
        element("div", { "data-name": key, title }, element("dt", {}, label), element("dd", {}, text)),
      );
      parts.push(element("dl", { class: "init" }, ...rows));
    }
    if (job.timings) {
      const rows = Object.entries(job.timings).map(([name, ms]) =>
        element("div", {}, element("dt", {}, words(name)), element("dd", {}, `${ms.toFixed(0)} ms`)),
      );
      parts.push(element("dl", { class: "timings" }, ...rows));
    }
    const config = element("pre", {}, configText(job.config));
    parts.push(element("details", { class: "config" }, element("summary", {}, "resolved config"), config));
    parts.push(element("a", { class: "job-link", href: `v1/jobs/${job.id}`, target: "_blank" }, `job ${job.id}`));
    this.result.replaceChildren(...parts);
  }
}
