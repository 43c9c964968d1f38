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
 * minimum, maximum, exclusiveMinimum, maxLength, default}. A nullable field (anyOf [X, null]) is
 * described by X; absent means "the API's default".
 */
export function fieldSpecs(openapi) {
  const schema = requestSchema(openapi);
  return Object.entries(schema.properties).map(([name, property]) => {
    const branches = (property.anyOf ?? [property]).map((b) => (b.$ref ? resolveRef(openapi, b.$ref) : b));
    const value = branches.find((b) => b.type !== "null") ?? {};
    return {
      name,
      title: property.title ?? name,
      description: property.description ?? "",
      type: value.type,
      choices: value.enum ?? null,
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

/**
 * A labelled control for one request field, with a hint and a place for the API's error.
 * ``value`` is always a string ("" is absent: the API's default); ``jsonValue`` is what is sent.
 */
export class Field {
  constructor(spec, { choices = null } = {}) {
    this.spec = spec;
    const kind = choices || spec.choices ? "select" : spec.type;
    if (kind === "select") {
      this.input = element("select", { name: spec.name });
      // a choice of the schema's enum, or none: the API's default
      this.setChoices(choices ?? [{ value: "", label: "default" }, ...spec.choices.map((value) => ({ value }))]);
    } else if (kind === "boolean") {
      this.input = element("input", { name: spec.name, type: "checkbox" });
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
    this.element = element("div", { class: `field ${kind}`, "data-field": spec.name }, label, this.hint, this.error);
    this.disabledWhy = "";
    this.help = "";
  }

  get name() {
    return this.spec.name;
  }

  get value() {
    if (this.kind === "boolean") return this.input.checked ? "true" : "";
    return this.input.value.trim();
  }

  set value(text) {
    if (this.kind === "boolean") this.input.checked = text === "true";
    else this.input.value = text ?? "";
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
    if (this.spec.type === "integer" || this.spec.type === "number") return Number(text);
    return text;
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
    this.element.classList.toggle("disabled", !enabled);
    this.disabledWhy = enabled ? "" : why;
    this.renderHint();
  }

  setHelp(text) {
    this.help = text;
    this.renderHint();
  }

  renderHint() {
    this.hint.textContent = this.disabledWhy || this.help;
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
