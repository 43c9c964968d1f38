// Form controls made from the request's JSON Schema (POST /v1/generations in /openapi.json): each
// field's type picks its control, and its bounds, choices, title and description come along. The
// page adds nothing of its own but the layout; GET /v1/models and /v1/samplers narrow the choices.

function resolveRef(openapi, ref) {
  return ref
    .replace(/^#\//, "")
    .split("/")
    .reduce((node, key) => node[key], openapi);
}

/** The JSON Schema of POST /v1/generations' body. */
export function requestSchema(openapi) {
  const body = openapi.paths["/v1/generations"].post.requestBody.content["application/json"].schema;
  return body.$ref ? resolveRef(openapi, body.$ref) : body;
}

/**
 * One spec per request field, in the schema's order: {name, title, description, type, choices,
 * words, minimum, maximum, exclusiveMinimum, maxLength, default}. A nullable field (anyOf [X, null])
 * is described by X; absent means "the API's default". ``words`` are the strings another branch
 * admits beside X (strength: a number, or "auto").
 */
export function fieldSpecs(openapi) {
  const schema = requestSchema(openapi);
  return Object.entries(schema.properties).map(([name, property]) => {
    const branches = (property.anyOf ?? [property]).map((b) => (b.$ref ? resolveRef(openapi, b.$ref) : b));
    const value = branches.find((b) => b.type !== "null") ?? {};
    const words = branches
      .filter((b) => b !== value && b.type === "string")
      .flatMap((b) => (b.const !== undefined ? [b.const] : (b.enum ?? [])));
    return {
      name,
      title: property.title ?? name,
      description: property.description ?? "",
      type: value.type,
      choices: value.enum ?? null,
      words,
      minimum: value.minimum ?? value.exclusiveMinimum ?? null,
      exclusiveMinimum: value.exclusiveMinimum !== undefined,
      maximum: value.maximum ?? value.exclusiveMaximum ?? null,
      maxLength: value.maxLength ?? null,
      default: property.default ?? null,
    };
  });
}

const LONG_TEXT = 200; // characters: a longer string field gets a text area

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

export { element };

/** "812 bytes", "1.4 kB": a file's size in words. */
function byteSize(count) {
  return count < 1000 ? `${count} bytes` : `${(count / 1000).toFixed(1)} kB`;
}

/** The image type a base64 payload opens with (JPEG's FF D8 FF is "/9j/"), for its preview. */
function imageType(base64) {
  return base64.startsWith("/9j/") ? "image/jpeg" : "image/png";
}

/**
 * A labelled control for one request field, with a hint and a place for the API's error.
 * ``value`` is always a string ("" is absent: the API's default); ``jsonValue`` is what is sent.
 * With ``accept`` (a file input's accept list) a string field takes a file instead of typed text:
 * its value is the file's bytes as base64, as the API takes an image.
 */
export class Field {
  constructor(spec, { choices = null, accept = null } = {}) {
    this.spec = spec;
    const kind = choices || spec.choices ? "select" : accept ? "file" : spec.type;
    if (kind === "select") {
      this.input = element("select", { name: spec.name });
      // a choice of the schema's enum, or none: the API's default
      this.setChoices(choices ?? [{ value: "", label: "default" }, ...spec.choices.map((value) => ({ value }))]);
    } else if (kind === "boolean") {
      this.input = element("input", { name: spec.name, type: "checkbox" });
    } else if (kind === "file") {
      this.input = element("input", { name: spec.name, type: "file", accept });
    } else if (kind === "integer" || kind === "number") {
      this.input = element("input", {
        name: spec.name,
        type: "number",
        inputmode: kind === "integer" ? "numeric" : "decimal",
        min: spec.exclusiveMinimum ? null : spec.minimum,
        max: spec.maximum,
        step: kind === "integer" ? 1 : "any",
        placeholder: spec.default ?? "default",
      });
    } else if (spec.maxLength && spec.maxLength > LONG_TEXT) {
      this.input = element("textarea", { name: spec.name, rows: 2, maxlength: spec.maxLength });
    } else {
      this.input = element("input", { name: spec.name, type: "text", maxlength: spec.maxLength });
    }
    this.kind = kind;
    this.hint = element("small", { class: "hint" });
    this.error = element("p", { class: "error", role: "alert", hidden: true });
    const label = element(
      "label",
      { title: spec.description },
      element("span", { class: "label" }, spec.title),
      this.input,
    );
    const extras = [];
    // a number input cannot hold a word: each word the schema admits beside the number is a box
    this.words = [];
    if ((kind === "integer" || kind === "number") && spec.words?.length) {
      this.words = spec.words.map((word) => element("input", { type: "checkbox", "data-word": word }));
      const labels = this.words.map((box) => element("label", { class: "word" }, box, ` ${box.dataset.word}`));
      extras.push(element("div", { class: "words" }, ...labels));
      for (const box of this.words) box.addEventListener("change", () => this.pickWord(box.checked ? box : null));
      this.input.addEventListener("input", () => this.input.value !== "" && this.pickWord(null));
    }
    if (kind === "file") {
      this.data = "";
      this.thumb = element("img", { class: "thumb", alt: `${spec.title}: the picked image`, hidden: true });
      this.clearButton = element(
        "button",
        { type: "button", class: "clear", title: "Remove the image: the request goes without it", hidden: true },
        "remove",
      );
      this.thumb.addEventListener("load", () => {
        const size = `${this.thumb.naturalWidth}×${this.thumb.naturalHeight}`;
        this.picked = this.about ? `${this.about}, ${size}` : size;
        this.renderHint();
      });
      this.input.addEventListener("change", () => this.readFile(this.input.files[0]));
      this.clearButton.addEventListener("click", () => {
        this.value = "";
        this.changed();
      });
      extras.push(element("div", { class: "picked" }, this.thumb, this.clearButton));
    }
    this.element = element(
      "div",
      { class: `field ${kind}`, "data-field": spec.name },
      label,
      ...extras,
      this.hint,
      this.error,
    );
    this.disabledWhy = "";
    this.help = "";
    this.picked = ""; // a file field's file in words: its name, size and pixels
  }

  get name() {
    return this.spec.name;
  }

  get value() {
    if (this.kind === "boolean") return this.input.checked ? "true" : "";
    if (this.kind === "file") return this.data;
    const word = this.words.find((box) => box.checked);
    return word ? word.dataset.word : this.input.value.trim();
  }

  set value(text) {
    if (this.kind === "boolean") this.input.checked = text === "true";
    else if (this.kind === "file") this.setImage(text ?? "");
    else if (this.words.length) {
      const word = this.words.find((box) => box.dataset.word === text);
      this.input.value = word ? "" : (text ?? "");
      this.pickWord(word ?? null);
    } else this.input.value = text ?? "";
  }

  /** Shown and enabled: it goes into the request and the link. */
  get active() {
    return !this.element.hidden && !this.input.disabled;
  }

  /** The value as the API takes it (numbers and booleans typed), or undefined when absent. */
  get jsonValue() {
    const text = this.value;
    if (!this.active || text === "") return undefined;
    if (this.kind === "boolean") return true;
    if (this.spec.words?.includes(text)) return text;
    if (this.spec.type === "integer" || this.spec.type === "number") return Number(text);
    return text;
  }

  /** Checks one word's box (none: the number counts); the number box shows the word meanwhile. */
  pickWord(box) {
    for (const other of this.words) other.checked = other === box;
    if (box) this.input.value = "";
    this.input.placeholder = box ? box.dataset.word : (this.spec.default ?? "default");
  }

  /** Reads a picked file as base64 (a data: URL's part after its comma), as the API takes it. */
  readFile(file) {
    const reader = new FileReader();
    this.reading = reader; // a file picked while another is read wins
    if (!file) {
      this.value = "";
      this.changed();
      return;
    }
    reader.addEventListener("load", () => {
      if (this.reading !== reader) return;
      this.clearError(); // the API's word was about the image this one replaces
      this.about = `${file.name}, ${byteSize(file.size)}`;
      this.setImage(String(reader.result).replace(/^data:[^,]*,/, ""));
      this.changed();
    });
    reader.addEventListener("error", () => {
      if (this.reading !== reader) return;
      this.value = "";
      this.showError(`${file.name} could not be read: ${reader.error?.message ?? "no reason given"}`);
      this.changed();
    });
    reader.readAsDataURL(file);
  }

  /** A file field's image as base64 ("" clears it), with its thumbnail and remove button. */
  setImage(base64) {
    this.data = base64;
    this.thumb.hidden = this.clearButton.hidden = !base64;
    if (base64) {
      this.thumb.src = `data:${imageType(base64)};base64,${base64}`;
      this.picked = this.about ?? "";
    } else {
      this.input.value = ""; // the picker forgets the file too
      this.thumb.removeAttribute("src");
      this.about = null;
      this.picked = "";
    }
    this.renderHint();
  }

  /** Tells the page a value changed after the input's own events (a file is read after them). */
  changed() {
    this.element.dispatchEvent(new Event("change", { bubbles: true }));
  }

  /** [{value, label, disabled}]; keeps the current value when it is still a choice. The options
   * are rebuilt only when the choices change: an option being picked must not be replaced. */
  setChoices(choices) {
    const key = JSON.stringify(choices);
    if (key === this.choicesKey) return;
    this.choicesKey = key;
    const current = this.input.options.length ? this.input.value : null; // null: a new list
    this.input.replaceChildren(
      ...choices.map((c) =>
        element("option", { value: c.value, disabled: c.disabled ?? false, title: c.title }, c.label ?? c.value),
      ),
    );
    if (choices.some((c) => String(c.value) === current)) this.input.value = current;
    else this.input.selectedIndex = choices.findIndex((c) => !c.disabled);
  }

  hasChoice(value) {
    return [...(this.input.options ?? [])].some((o) => o.value === value && !o.disabled);
  }

  show(visible) {
    this.element.hidden = !visible;
  }

  /** Enables the control, or disables it saying why. */
  enable(enabled, why = "") {
    this.input.disabled = !enabled;
    for (const box of this.words) box.disabled = !enabled;
    if (this.clearButton) this.clearButton.disabled = !enabled;
    this.element.classList.toggle("disabled", !enabled);
    this.disabledWhy = enabled ? "" : why;
    this.renderHint();
  }

  setHelp(text) {
    this.help = text;
    this.renderHint();
  }

  renderHint() {
    this.hint.textContent = this.disabledWhy || this.picked || this.help;
  }

  setBounds({ minimum = this.spec.minimum, maximum = this.spec.maximum, step = null, placeholder = null }) {
    if (minimum !== null) this.input.min = minimum;
    if (maximum !== null) this.input.max = maximum;
    if (step !== null) this.input.step = step;
    if (placeholder !== null) this.input.placeholder = placeholder;
  }

  /** Shows the API's message under the control (a shared field may hear it from several columns:
   * each different message once). */
  showError(message) {
    const shown = this.error.hidden ? [] : this.error.textContent.split("\n");
    if (!shown.includes(message)) this.error.textContent = [...shown, message].join("\n");
    this.error.hidden = false;
    this.element.classList.add("invalid");
  }

  clearError() {
    this.error.textContent = "";
    this.error.hidden = true;
    this.element.classList.remove("invalid");
  }
}
