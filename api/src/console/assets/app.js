// Glint console: one ES module, no dependencies. Everything the API returns is put on the page
// with textContent (never innerHTML), so names and properties holding markup stay text.

const $ = (selector, root = document) => root.querySelector(selector);

const state = {
  session: null,
  stores: null,
  image: null,
  metadefs: null,
  imagesMarkers: [],
  imagesNext: null,
  tasksNext: null,
  tasksMarker: null,
  poll: null,
  upload: null,
};

// ---- the API, through the console's same-origin view of it ----

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Glance's JSON error body says `message` with a trailing "<br /><br />"; keep its words only. */
function explanation(text, status) {
  try {
    const body = JSON.parse(text);
    const message = body.message ?? body.error?.message;
    if (typeof message === "string") return message.replace(/(<br \/>|\s)+$/g, "");
  } catch {
    // Not JSON: the text itself is the message.
  }
  return text.trim() || `HTTP ${status}`;
}

async function request(method, url, body, contentType = "application/json") {
  const headers = { Accept: "application/json" };
  if (state.session?.csrf) headers["X-CSRF-Token"] = state.session.csrf;
  if (body !== undefined) headers["Content-Type"] = contentType;
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
  const response = await fetch(url, init);
  const text = await response.text();
  if (response.status === 401 && state.session?.mode === "keystone" && !url.endsWith("/console/login")) {
    sessionEnded();
  }
  if (!response.ok) throw new ApiError(response.status, explanation(text, response.status));
  return text ? JSON.parse(text) : null;
}

const api = {
  get: (path) => request("GET", `/console/api${path}`),
  post: (path, body) => request("POST", `/console/api${path}`, body),
  put: (path, body) => request("PUT", `/console/api${path}`, body),
  del: (path) => request("DELETE", `/console/api${path}`),
  patch: (path, ops) => request("PATCH", `/console/api${path}`, ops, "application/openstack-images-v2.1-json-patch"),
};

const enc = encodeURIComponent;

// ---- small helpers ----

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function show(node, message, cls) {
  if (!node) return;
  node.textContent = message ?? "";
  node.hidden = !message;
  if (cls) node.className = cls;
}

/** Shows `err` (the API's words) in the error line of `where`, a form or an element. */
function fail(where, err) {
  const node = where.matches?.(".error") ? where : where.querySelector(".error");
  show(node, err instanceof ApiError ? err.message : String(err.message ?? err));
}

function clearErrors(root) {
  for (const node of root.querySelectorAll(".error, .ok")) show(node, "");
}

/** Runs `action` with `button` disabled, showing a failure in `where`. */
async function busy(button, where, action) {
  clearErrors(where);
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) fail(where, err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
function bytes(n) {
  if (n === null || n === undefined) return "—";
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

function when(text) {
  if (!text) return "—";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString();
}

function badge(text) {
  return el("span", { class: `badge ${text}`, text });
}

function cell(label, content, cls) {
  const td = el("td", { "data-label": label, class: cls });
  if (content instanceof Node) td.append(content);
  else td.textContent = content === null || content === undefined || content === "" ? "—" : content;
  return td;
}

function stopPolling() {
  if (state.poll) clearTimeout(state.poll);
  state.poll = null;
}

// ---- session ----

async function loadSession() {
  state.session = await request("GET", "/console/session");
  const s = state.session;
  $("#noauth-banner").hidden = s.mode !== "noauth";
  if (s.mode === "noauth") {
    $("#noauth-identity").textContent = s.project
      ? `project ${s.project} with roles ${s.roles.join(", ")}`
      : "an unauthenticated administrator";
  }
  $("#nav").hidden = !s.signed_in;
  $("#who").hidden = !s.signed_in;
  $("#nav-tasks").hidden = !s.admin;
  $("#logout").hidden = s.mode !== "keystone";
  $("#who-user").textContent = s.mode === "keystone" ? `Signed in as ${s.user}` : "";
  if (s.mode === "keystone" && s.signed_in) loadProjects();
  else $("#project-label").hidden = true;
}

async function loadProjects() {
  const select = $("#project-switch");
  try {
    const { projects } = await request("GET", "/console/projects");
    select.replaceChildren(
      ...projects.map((p) => el("option", { value: p.id, text: p.name, selected: p.id === state.session.project_id })),
    );
    $("#project-label").hidden = projects.length === 0;
  } catch (err) {
    show($("#global-error"), err.message);
  }
}

function sessionEnded() {
  stopPolling();
  state.session = { ...state.session, signed_in: false, csrf: null };
  $("#nav").hidden = true;
  $("#who").hidden = true;
  show($("#login-reason"), "Your session has ended. Sign in again.");
  location.hash = "#login";
  route();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const data = Object.fromEntries(new FormData(form));
  await busy(form.querySelector("button"), form, async () => {
    state.session = await request("POST", "/console/login", data);
    form.reset();
    show($("#login-reason"), "");
    await loadSession();
    location.hash = "#images";
    route();
  });
});

$("#logout").addEventListener("click", async () => {
  try {
    await request("POST", "/console/logout");
  } finally {
    state.session = null;
    await loadSession();
    location.hash = "#login";
    route();
  }
});

$("#project-switch").addEventListener("change", async (event) => {
  try {
    state.session = await request("POST", "/console/project", { project_id: event.target.value });
    await loadSession();
    location.hash = "#images";
    route();
  } catch (err) {
    show($("#global-error"), err.message);
  }
});

// ---- routing ----

const VIEWS = ["login", "images", "image", "new", "tasks", "stores"];

function showView(name) {
  for (const view of VIEWS) $(`#view-${view}`).hidden = view !== name;
  $("#loading").hidden = true;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === name || (name === "image" && link.dataset.view === "images")) {
      link.setAttribute("aria-current", "page");
    } else link.removeAttribute("aria-current");
  }
}

function route() {
  stopPolling();
  show($("#global-error"), "");
  const [name, arg] = location.hash.slice(1).split("/");
  if (!state.session?.signed_in) {
    showView("login");
    $("#login-form [name=user]").focus();
    return;
  }
  switch (name) {
    case "image":
      showView("image");
      openImage(decodeURIComponent(arg ?? ""));
      break;
    case "new":
      showView("new");
      break;
    case "tasks":
      showView("tasks");
      loadTasks(null);
      break;
    case "stores":
      showView("stores");
      loadStores();
      break;
    default:
      showView("images");
      loadImages(state.imagesMarkers.at(-1) ?? null);
  }
}

window.addEventListener("hashchange", route);

// ---- images list ----

function imageQuery(marker) {
  const data = Object.fromEntries(new FormData($("#filters")));
  const params = new URLSearchParams();
  for (const key of ["name", "status", "visibility", "owner", "os_hidden", "sort_key", "sort_dir", "limit"]) {
    if (data[key]) params.set(key, data[key].trim());
  }
  if (data.tag) params.append("tag", data.tag.trim());
  if (data.property?.includes("=")) {
    const [key, ...rest] = data.property.split("=");
    params.set(key.trim(), rest.join("=").trim());
  }
  if (marker) params.set("marker", marker);
  return params;
}

async function loadImages(marker) {
  const body = $("#images-table tbody");
  const status = $("#images-status");
  show($("#images-error"), "");
  status.textContent = "Loading images…";
  $("#images-table").setAttribute("aria-busy", "true");
  try {
    const page = await api.get(`/v2/images?${imageQuery(marker)}`);
    body.replaceChildren(...page.images.map(imageRow));
    state.imagesNext = page.next ? new URLSearchParams(page.next.split("?")[1]).get("marker") : null;
    const count = page.images.length;
    status.textContent = count === 0 ? "No images match." : `${count} image${count === 1 ? "" : "s"} on this page.`;
  } catch (err) {
    body.replaceChildren();
    status.textContent = "";
    fail($("#images-error"), err);
  } finally {
    $("#images-table").removeAttribute("aria-busy");
    $("#page-next").disabled = !state.imagesNext;
    $("#page-prev").disabled = state.imagesMarkers.length === 0;
    $("#page-first").disabled = state.imagesMarkers.length === 0;
  }
}

function imageRow(image) {
  const name = el("a", { href: `#image/${enc(image.id)}`, text: image.name || image.id });
  const formats = `${image.disk_format ?? "—"} / ${image.container_format ?? "—"}`;
  return el(
    "tr",
    {},
    cell("Name", name),
    cell("Status", badge(image.status)),
    cell("Visibility", image.visibility),
    cell("Disk / container", formats),
    cell("Size", bytes(image.size), "num"),
    cell("Virtual size", bytes(image.virtual_size), "num"),
    cell("Owner", image.owner),
    cell("Created", when(image.created_at)),
    cell("Updated", when(image.updated_at)),
  );
}

$("#filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.imagesMarkers = [];
  loadImages(null);
});
$("#filters").addEventListener("reset", () => {
  state.imagesMarkers = [];
  setTimeout(() => loadImages(null));
});
$("#page-next").addEventListener("click", () => {
  if (!state.imagesNext) return;
  state.imagesMarkers.push(state.imagesNext);
  loadImages(state.imagesNext);
});
$("#page-prev").addEventListener("click", () => {
  state.imagesMarkers.pop();
  loadImages(state.imagesMarkers.at(-1) ?? null);
});
$("#page-first").addEventListener("click", () => {
  state.imagesMarkers = [];
  loadImages(null);
});

// ---- one image ----

const CORE = new Set([
  "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo", "os_hash_value",
  "owner", "size", "virtual_size", "min_ram", "min_disk", "disk_format", "container_format", "created_at",
  "updated_at", "tags", "self", "file", "schema", "locations", "direct_url", "stores",
]);

async function openImage(id) {
  const view = $("#view-image");
  clearErrors(view);
  $("#image-title").textContent = "Loading…";
  try {
    const image = await api.get(`/v2/images/${enc(id)}`);
    renderImage(image);
    await Promise.all([loadMembers(image), loadImageTasks(image), loadStoreChoices(image)]);
    $("#image-title").focus?.();
  } catch (err) {
    $("#image-title").textContent = "Image";
    fail($("#image-action-error"), err);
  }
}

async function refreshImage() {
  const image = await api.get(`/v2/images/${enc(state.image.id)}`);
  renderImage(image);
  return image;
}

function renderImage(image) {
  state.image = image;
  $("#image-title").textContent = image.name || image.id;
  const status = $("#image-status");
  status.textContent = image.status;
  status.className = `badge ${image.status}`;
  const fields = $("#image-fields");
  const rows = [];
  for (const key of Object.keys(image).sort()) {
    if (key === "self" || key === "file" || key === "schema") continue;
    let value = image[key];
    if (key === "size" || key === "virtual_size") value = value === null ? "—" : `${bytes(value)} (${value} bytes)`;
    else if (Array.isArray(value) || (value && typeof value === "object")) value = JSON.stringify(value);
    else if (value === null || value === "") value = "—";
    rows.push(el("dt", { text: key }), el("dd", { text: String(value) }));
  }
  fields.replaceChildren(...rows);
  const download = $("#image-download");
  download.href = `/console/api/v2/images/${enc(image.id)}/file`;
  download.setAttribute("download", image.name || image.id);
  download.hidden = image.status !== "active";
  $("#image-deactivate").hidden = image.status !== "active";
  $("#image-reactivate").hidden = image.status !== "deactivated";
  $("#image-delete").disabled = image.protected;
  $("#image-delete").title = image.protected ? "Protected images cannot be deleted; clear Protected first." : "";

  const form = $("#edit-form");
  form.name.value = image.name ?? "";
  form.visibility.value = image.visibility;
  form.protected.checked = image.protected;
  form.os_hidden.checked = image.os_hidden;
  form.min_disk.value = image.min_disk ?? 0;
  form.min_ram.value = image.min_ram ?? 0;

  // os_glance_* are the service's own (import bookkeeping): shown in the fields, not editable.
  const custom = Object.keys(image)
    .filter((k) => !CORE.has(k) && !k.startsWith("os_glance_"))
    .sort();
  $("#props-table tbody").replaceChildren(
    ...custom.map((key) =>
      el(
        "tr",
        {},
        el("td", { text: key }),
        el("td", { text: String(image[key]) }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "secondary",
            text: "Remove",
            "aria-label": `Remove property ${key}`,
            onclick: (event) => removeProperty(event.currentTarget, key),
          }),
        ),
      ),
    ),
  );
  $("#props-table").hidden = custom.length === 0;
  $("#props-empty").hidden = custom.length !== 0;

  $("#tags-list").replaceChildren(
    ...image.tags.map((tag) =>
      el(
        "li",
        {},
        el("span", { text: tag }),
        el("button", {
          type: "button",
          class: "secondary",
          text: "×",
          "aria-label": `Remove tag ${tag}`,
          onclick: (event) => removeTag(event.currentTarget, tag),
        }),
      ),
    ),
  );
  $("#tags-empty").hidden = image.tags.length !== 0;
  $("#image-stores").textContent = image.stores || "—";
  loadMetadefs();
}

$("#image-refresh").addEventListener("click", (event) =>
  busy(event.currentTarget, $("#image-action-error"), () => openImage(state.image.id)),
);

for (const [button, action] of [
  ["#image-deactivate", "deactivate"],
  ["#image-reactivate", "reactivate"],
]) {
  $(button).addEventListener("click", (event) =>
    busy(event.currentTarget, $("#image-action-error"), async () => {
      await api.post(`/v2/images/${enc(state.image.id)}/actions/${action}`);
      await refreshImage();
    }),
  );
}

$("#image-delete").addEventListener("click", () => {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = `“${state.image.name || state.image.id}” and its data will be deleted. This cannot be undone.`;
  dialog.returnValue = "";
  dialog.showModal();
});

$("#confirm").addEventListener("close", async () => {
  if ($("#confirm").returnValue !== "ok") return;
  await busy($("#image-delete"), $("#image-action-error"), async () => {
    await api.del(`/v2/images/${enc(state.image.id)}`);
    state.imagesMarkers = [];
    location.hash = "#images";
  });
});

$("#edit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const image = state.image;
  const ops = [];
  const set = (path, value) => ops.push({ op: image[path] === undefined ? "add" : "replace", path: `/${path}`, value });
  if (form.name.value !== (image.name ?? "")) set("name", form.name.value);
  if (form.visibility.value !== image.visibility) set("visibility", form.visibility.value);
  if (form.protected.checked !== image.protected) set("protected", form.protected.checked);
  if (form.os_hidden.checked !== image.os_hidden) set("os_hidden", form.os_hidden.checked);
  for (const key of ["min_disk", "min_ram"]) {
    const value = Number(form[key].value || 0);
    if (value !== image[key]) set(key, value);
  }
  await busy(form.querySelector("button"), form, async () => {
    if (ops.length) {
      renderImage(await api.patch(`/v2/images/${enc(image.id)}`, ops));
      await loadMembers(state.image);
    }
    show(form.querySelector(".ok"), ops.length ? "Saved." : "Nothing changed.");
  });
});

$("#prop-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const key = form.key.value.trim();
  const op = state.image[key] === undefined ? "add" : "replace";
  await busy(form.querySelector("button"), form, async () => {
    renderImage(await api.patch(`/v2/images/${enc(state.image.id)}`, [{ op, path: `/${key}`, value: form.value.value }]));
    form.reset();
  });
});

async function removeProperty(button, key) {
  await busy(button, $("#prop-form"), async () => {
    renderImage(await api.patch(`/v2/images/${enc(state.image.id)}`, [{ op: "remove", path: `/${key}` }]));
  });
}

// The metadefs catalog: keys known for images, with their allowed values or type.
async function loadMetadefs() {
  if (state.metadefs) return;
  state.metadefs = new Map();
  try {
    const { namespaces } = await api.get("/v2/metadefs/namespaces?resource_types=OS::Glance::Image&limit=100");
    const details = await Promise.all(
      namespaces.map((ns) => api.get(`/v2/metadefs/namespaces/${enc(ns.namespace)}`).catch(() => null)),
    );
    for (const ns of details) {
      if (!ns) continue;
      const prefix = ns.resource_type_associations?.find((r) => r.name === "OS::Glance::Image")?.prefix ?? "";
      const add = (name, prop) => state.metadefs.set(`${prefix}${name}`, { ...prop, namespace: ns.display_name || ns.namespace });
      for (const [name, prop] of Object.entries(ns.properties ?? {})) add(name, prop);
      for (const object of Object.values(ns.objects ?? [])) {
        for (const [name, prop] of Object.entries(object.properties ?? {})) add(name, prop);
      }
    }
  } catch {
    // No catalog to suggest from (or no right to read it): keys are typed freely.
  }
  $("#metadef-keys").replaceChildren(
    ...[...state.metadefs.keys()].sort().map((key) => el("option", { value: key, text: state.metadefs.get(key).title ?? "" })),
  );
}

$("#prop-form [name=key]").addEventListener("input", (event) => {
  const known = state.metadefs?.get(event.target.value.trim());
  const values = known?.enum ?? (known?.type === "boolean" ? ["true", "false"] : []);
  $("#metadef-values").replaceChildren(...values.map((v) => el("option", { value: String(v) })));
  const hint = known
    ? `${known.title ?? ""} (${known.namespace}) ${known.description ?? ""} ${values.length ? `Allowed: ${values.join(", ")}` : known.type ? `Type: ${known.type}` : ""}`
    : "";
  $("#prop-hint").textContent = hint.trim();
});

$("#tag-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  await busy(form.querySelector("button"), form, async () => {
    await api.put(`/v2/images/${enc(state.image.id)}/tags/${enc(form.tag.value.trim())}`);
    form.reset();
    await refreshImage();
  });
});

async function removeTag(button, tag) {
  await busy(button, $("#tag-form"), async () => {
    await api.del(`/v2/images/${enc(state.image.id)}/tags/${enc(tag)}`);
    await refreshImage();
  });
}

// ---- members ----

async function loadMembers(image) {
  const mine = image.owner && image.owner === state.session.project_id;
  const owner = mine || state.session.admin;
  $("#members-owner").hidden = !owner;
  $("#member-answer").hidden = true;
  if (!owner) {
    // Only members of a shared image have a membership to answer (asking otherwise is a 404).
    if (!state.session.project_id || image.visibility !== "shared") return;
    try {
      const member = await api.get(`/v2/images/${enc(image.id)}/members/${enc(state.session.project_id)}`);
      $("#member-answer").hidden = false;
      const status = $("#member-own-status");
      status.textContent = member.status;
      status.className = `badge ${member.status}`;
      $("#member-accept").hidden = member.status === "accepted";
      $("#member-reject").hidden = member.status === "rejected";
    } catch {
      // Not a member: nothing to answer.
    }
    return;
  }
  // Only shared images have members (the API refuses the list of any other with 403).
  const shared = image.visibility === "shared";
  $("#members-note").textContent = shared ? "" : "Set the visibility to “shared” (Edit) to share this image.";
  $("#member-form").hidden = !shared;
  $("#members-table").hidden = true;
  $("#members-empty").hidden = true;
  if (!shared) return;
  try {
    const { members } = await api.get(`/v2/images/${enc(image.id)}/members`);
    $("#members-table tbody").replaceChildren(
      ...members.map((m) =>
        el(
          "tr",
          {},
          el("td", { text: m.member_id }),
          el("td", {}, badge(m.status)),
          el(
            "td",
            {},
            el("button", {
              type: "button",
              class: "secondary",
              text: "Remove",
              "aria-label": `Stop sharing with ${m.member_id}`,
              onclick: (event) =>
                busy(event.currentTarget, $("#member-form"), async () => {
                  await api.del(`/v2/images/${enc(image.id)}/members/${enc(m.member_id)}`);
                  await loadMembers(state.image);
                }),
            }),
          ),
        ),
      ),
    );
    $("#members-table").hidden = members.length === 0;
    $("#members-empty").hidden = members.length !== 0;
  } catch (err) {
    $("#members-table").hidden = true;
    fail($("#member-form"), err);
  }
}

$("#member-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  await busy(form.querySelector("button"), form, async () => {
    await api.post(`/v2/images/${enc(state.image.id)}/members`, { member: form.member.value.trim() });
    form.reset();
    await loadMembers(state.image);
  });
});

for (const [button, status] of [
  ["#member-accept", "accepted"],
  ["#member-reject", "rejected"],
]) {
  $(button).addEventListener("click", (event) =>
    busy(event.currentTarget, $("#member-answer"), async () => {
      const project = state.session.project_id;
      await api.put(`/v2/images/${enc(state.image.id)}/members/${enc(project)}`, { status });
      await loadMembers(state.image);
    }),
  );
}

// ---- stores and copies ----

async function stores() {
  if (!state.session.multistore) return [];
  if (!state.stores) {
    try {
      state.stores = (await api.get("/v2/info/stores")).stores;
    } catch {
      state.stores = [];
    }
  }
  return state.stores;
}

async function loadStoreChoices(image) {
  $("#stores-card").hidden = !state.session.multistore;
  const present = new Set((image.stores ?? "").split(",").filter(Boolean));
  const choices = (await stores()).filter((s) => !present.has(s.id) && !s["read-only"]);
  $("#copy-stores").replaceChildren(
    ...choices.map((s) =>
      el("label", { class: "check" }, el("input", { type: "checkbox", name: "store", value: s.id }), s.id),
    ),
  );
  $("#copy-form").hidden = choices.length === 0 || image.status !== "active";
}

$("#copy-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const chosen = [...form.querySelectorAll("input[name=store]:checked")].map((i) => i.value);
  await busy(form.querySelector("button"), form, async () => {
    if (chosen.length === 0) throw new Error("Choose at least one store.");
    await api.post(`/v2/images/${enc(state.image.id)}/import`, { method: { name: "copy-image" }, stores: chosen });
    followImport(state.image.id, $("#image-task"), () => openImage(state.image.id));
  });
});

// ---- tasks of an image, followed live ----

async function loadImageTasks(image) {
  try {
    const { tasks } = await api.get(`/v2/images/${enc(image.id)}/tasks`);
    renderImageTasks(tasks);
    const running = tasks.find((t) => t.status === "pending" || t.status === "processing");
    if (running) followImport(image.id, $("#image-task"), () => openImage(image.id));
    return tasks;
  } catch {
    renderImageTasks([]);
    return [];
  }
}

function renderImageTasks(tasks) {
  $("#image-tasks tbody").replaceChildren(
    ...tasks.map((t) =>
      el(
        "tr",
        {},
        el("td", { text: t.type }),
        el("td", {}, badge(t.status)),
        el("td", { text: t.message || "—" }),
        el("td", { text: when(t.updated_at) }),
      ),
    ),
  );
  $("#image-tasks").hidden = tasks.length === 0;
  $("#image-tasks-empty").hidden = tasks.length !== 0;
}

/** Polls image `id` and its newest task, writing progress into `box`, until neither runs. */
function followImport(id, box, done) {
  stopPolling();
  box.hidden = false;
  const tick = async () => {
    try {
      const [image, { tasks }] = await Promise.all([
        api.get(`/v2/images/${enc(id)}`),
        api.get(`/v2/images/${enc(id)}/tasks`),
      ]);
      const task = [...tasks].sort((a, b) => (a.created_at < b.created_at ? 1 : -1))[0];
      const running = task && (task.status === "pending" || task.status === "processing");
      const words = [`Image ${image.status}.`];
      if (image.status === "active") {
        words.push(`Found ${image.disk_format ?? "?"}, ${bytes(image.size)}, virtual size ${bytes(image.virtual_size)}.`);
      }
      if (task) words.push(`Task ${task.type} ${task.status}${task.message ? `: ${task.message}` : "."}`);
      box.replaceChildren(el("p", { text: words.join(" ") }));
      if (state.image?.id === id) renderImageTasks(tasks);
      if (running || (image.status === "importing" && task?.status !== "failure")) {
        state.poll = setTimeout(tick, 1000);
      } else {
        const failed = task?.status === "failure" || image.status === "killed";
        box.replaceChildren(el("p", { class: failed ? "error" : "ok", text: words.join(" ") }));
        done?.(image, task);
      }
    } catch (err) {
      box.replaceChildren(el("p", { class: "error", text: err.message }));
    }
  };
  tick();
}

// ---- new image: upload or web-download ----

const newForm = $("#new-form");
for (const radio of newForm.querySelectorAll("input[name=source]")) {
  radio.addEventListener("change", () => {
    const url = newForm.source.value === "url";
    $("#file-field").hidden = url;
    $("#url-field").hidden = !url;
  });
}

newForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const fromUrl = form.source.value === "url";
  const file = form.file.files[0];
  clearErrors(form);
  // The previous image's outcome goes at once, so it is never read as this one's.
  stopPolling();
  $("#new-progress").hidden = true;
  $("#new-result").replaceChildren();
  $("#new-result").className = "";
  $("#upload-text").textContent = "";
  if (!form.name.value.trim()) return fail(form, new Error("Give the image a name."));
  if (!fromUrl && !file) return fail(form, new Error("Choose a file to upload."));
  if (fromUrl && !form.url.value.trim()) return fail(form, new Error("Give the URL to import from."));
  const submit = $("#new-submit");
  await busy(submit, form, async () => {
    const image = await api.post("/v2/images", {
      name: form.name.value.trim(),
      disk_format: form.disk_format.value,
      container_format: form.container_format.value,
      visibility: form.visibility.value,
    });
    $("#new-progress").hidden = false;
    if (fromUrl) {
      $("#upload-label").hidden = true;
      $("#upload-bar").hidden = true;
      $("#upload-text").textContent = "Importing from the URL…";
      await api.post(`/v2/images/${enc(image.id)}/import`, {
        method: { name: "web-download", uri: form.url.value.trim() },
      });
      followImport(image.id, $("#new-result"), (done) => finished(done));
    } else {
      $("#upload-label").hidden = false;
      $("#upload-bar").hidden = false;
      await upload(image, file);
    }
  });
});

function finished(image) {
  const result = $("#new-result");
  result.append(" ", el("a", { href: `#image/${enc(image.id)}`, text: "Open the image" }));
}

/** PUTs `file` as the data of `image` with XMLHttpRequest, whose upload events give progress. */
function upload(image, file) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    state.upload = xhr;
    const bar = $("#upload-bar");
    const text = $("#upload-text");
    const cancel = $("#upload-cancel");
    const started = performance.now();
    bar.value = 0;
    bar.max = 100;
    cancel.hidden = false;
    const progress = (loaded, total) => {
      const seconds = (performance.now() - started) / 1000;
      const rate = seconds > 0 ? loaded / seconds : 0;
      const percent = total ? Math.floor((loaded / total) * 100) : 0;
      bar.value = percent;
      bar.setAttribute("aria-valuetext", `${percent}%`);
      text.textContent = `${percent}% — ${bytes(loaded)} of ${bytes(total)} at ${bytes(rate)}/s`;
    };
    xhr.upload.addEventListener("progress", (e) => progress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.upload.addEventListener("load", () => progress(file.size, file.size));
    const end = () => {
      cancel.hidden = true;
      state.upload = null;
      resolve();
    };
    xhr.addEventListener("load", async () => {
      end();
      if (xhr.status === 401) return sessionEnded();
      if (xhr.status >= 400) {
        show($("#new-result"), `Upload failed: ${explanation(xhr.responseText, xhr.status)}`, "error");
        return;
      }
      followImport(image.id, $("#new-result"), (done) => finished(done));
    });
    xhr.addEventListener("error", () => {
      end();
      show($("#new-result"), "The upload broke off (network error).", "error");
    });
    xhr.addEventListener("abort", () => {
      end();
      text.textContent = "Upload cancelled.";
      show($("#new-result"), "The upload was cancelled; the image stays queued without data.", "error");
    });
    xhr.open("PUT", `/console/api/v2/images/${enc(image.id)}/file`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", state.session.csrf);
    xhr.send(file);
  });
}

$("#upload-cancel").addEventListener("click", () => state.upload?.abort());

// ---- tasks (admins) ----

async function loadTasks(marker) {
  state.tasksMarker = marker;
  const status = $("#tasks-status");
  show($("#tasks-error"), "");
  status.textContent = "Loading tasks…";
  try {
    const params = new URLSearchParams({ limit: "50", sort_key: "created_at", sort_dir: "desc" });
    if (marker) params.set("marker", marker);
    const page = await api.get(`/v2/tasks?${params}`);
    $("#tasks-table tbody").replaceChildren(
      ...page.tasks.map((t) =>
        el(
          "tr",
          {},
          cell("Id", t.id),
          cell("Type", t.type),
          cell("Status", badge(t.status)),
          cell("Owner", t.owner),
          cell("Created", when(t.created_at)),
          cell("Updated", when(t.updated_at)),
          cell("Message", t.message || "—"),
        ),
      ),
    );
    state.tasksNext = page.next ? new URLSearchParams(page.next.split("?")[1]).get("marker") : null;
    const count = page.tasks.length;
    status.textContent = count ? `${count} task${count === 1 ? "" : "s"} on this page.` : "No tasks.";
  } catch (err) {
    $("#tasks-table tbody").replaceChildren();
    status.textContent = "";
    fail($("#tasks-error"), err);
  }
  $("#tasks-next").disabled = !state.tasksNext;
  $("#tasks-first").disabled = !marker;
}

$("#tasks-next").addEventListener("click", () => loadTasks(state.tasksNext));
$("#tasks-first").addEventListener("click", () => loadTasks(null));

// ---- stores ----

async function loadStores() {
  const status = $("#stores-status");
  show($("#stores-error"), "");
  status.textContent = "Loading stores…";
  if (!state.session.multistore) {
    $("#stores-table tbody").replaceChildren();
    status.textContent = "This service has a single store (multiple stores are not configured), so it lists none.";
    return;
  }
  try {
    const list = (await api.get("/v2/info/stores")).stores;
    const usage = new Map(list.map((s) => [s.id, 0]));
    let marker = null;
    let seen = 0;
    do {
      const params = new URLSearchParams({ limit: "200" });
      if (marker) params.set("marker", marker);
      const page = await api.get(`/v2/images?${params}`);
      for (const image of page.images) {
        for (const store of (image.stores ?? "").split(",").filter(Boolean)) usage.set(store, (usage.get(store) ?? 0) + 1);
      }
      seen += page.images.length;
      marker = page.next ? new URLSearchParams(page.next.split("?")[1]).get("marker") : null;
    } while (marker && seen < 1000);
    $("#stores-table tbody").replaceChildren(
      ...list.map((s) =>
        el(
          "tr",
          {},
          cell("Id", s.id),
          cell("Description", s.description || "—"),
          cell("Default", s.default ? "yes" : "no"),
          cell("Read-only", s["read-only"] ? "yes" : "no"),
          cell("Images", String(usage.get(s.id) ?? 0)),
        ),
      ),
    );
    status.textContent = "";
  } catch (err) {
    status.textContent = "";
    fail($("#stores-error"), err);
  }
}

// ---- start ----

async function start() {
  try {
    await loadSession();
  } catch (err) {
    $("#loading").hidden = true;
    show($("#global-error"), `The console cannot reach the service: ${err.message}`);
    return;
  }
  if (!location.hash || location.hash === "#login") location.hash = state.session.signed_in ? "#images" : "#login";
  route();
}

start();
