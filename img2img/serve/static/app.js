// img2img serve: the page's behaviour. Plain browser JavaScript, no libraries and no build
// step; it speaks only to this server's /api endpoints.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];
let chosenFile = null;
const urls = {};

function say(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (ignored) { /* not JSON: fall through to the status line */ }
  return `${response.status} ${response.statusText}`;
}

function fill(select, values, labels) {
  select.replaceChildren(...values.map((value, i) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = labels ? labels[i] : value;
    return option;
  }));
}

function current() {
  return models.find((m) => m.name === $("model").value);
}

function showDetails(model) {
  const rows = [["Family", model.family || "-"], ["Preset", model.preset || "none"],
    ["Status", model.status]];
  if (model.kind === "translate") {
    rows.push(["Directions", model.directions.join(", ")]);
    rows.push(["Styles", model.styles.length ? model.styles.join(", ") : "none"]);
  } else if (model.kind === "sample") {
    rows.push(["Classes", model.classes.length ? model.classes.join(", ") : "none"]);
  }
  if (model.training_size) rows.push(["Trained at", `${model.training_size} px, ${model.channels} channel(s)`]);
  if (model.error) rows.push(["Error", model.error]);
  $("details").replaceChildren(...rows.flatMap(([key, value]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = key;
    dd.textContent = value;
    return [dt, dd];
  }));
}

function choose(again) {
  const model = current();
  if (!model) return;
  showDetails(model);
  const translates = model.kind === "translate";
  $("translate-panel").hidden = !translates;
  $("sample-panel").hidden = model.kind !== "sample";
  if (translates) {
    fill($("direction"), model.directions);
    $("direction-label").hidden = model.directions.length < 2;
    fill($("style"), model.styles);
    $("style-label").hidden = model.styles.length === 0;
    if (chosenFile && again !== false) translate();
  } else if (model.kind === "sample") {
    const classes = model.classes.length ? model.classes : ["0"];
    fill($("label"), ["all", ...classes], ["every class", ...classes]);
  }
  if (model.status === "loading") say(`${model.name} is still loading...`);
  else if (model.status === "failed") say(`${model.name} could not be loaded: ${model.error}`, true);
  else say(`${model.name} is ready.`);
}

async function loadModels() {
  let body;
  try {
    const response = await fetch("/api/models");
    if (!response.ok) throw new Error(await errorText(response));
    body = await response.json();
  } catch (error) {
    say(`Cannot reach the server: ${error.message}`, true);
    setTimeout(loadModels, 3000);
    return;
  }
  const before = $("model").value;
  models = body.models;
  fill($("model"), models.map((m) => m.name),
    models.map((m) => (m.family ? `${m.name} (${m.family})` : `${m.name} (loading)`)));
  if (models.some((m) => m.name === before)) $("model").value = before;
  choose(false);
  if (body.loading) setTimeout(loadModels, 1000);
}

function show(img, link, blob, name) {
  if (urls[img.id]) URL.revokeObjectURL(urls[img.id]);
  urls[img.id] = URL.createObjectURL(blob);
  img.src = urls[img.id];
  img.hidden = false;
  if (link) {
    link.href = urls[img.id];
    link.download = name;
    link.hidden = false;
  }
}

function resultName(response, fallback) {
  const header = response.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(header);
  return match ? match[1] : fallback;
}

function isVideo(file) {
  return Boolean(file) && (file.type.startsWith("video/") ||
    /\.(mp4|m4v|mov|mkv|webm|avi|mpe?g|ts|ogv|3gp)$/i.test(file.name));
}

async function translateVideo(model) {
  const result = $("result-video");
  result.dataset.state = "working";
  $("download").hidden = true;
  const form = new FormData();
  form.append("video", chosenFile, chosenFile.name);
  form.append("model", model.name);
  if (model.directions.length > 1) form.append("direction", $("direction").value);
  if (model.styles.length) form.append("style", $("style").value);
  if ($("stabilize").checked) form.append("stabilize", "flow");
  say(`Translating the video ${chosenFile.name} with ${model.name} (every frame)...`);
  const started = performance.now();
  try {
    const response = await fetch("/api/translate-video", { method: "POST", body: form });
    if (!response.ok) throw new Error(await errorText(response));
    const blob = await response.blob();
    const stem = chosenFile.name.replace(/\.[^.]*$/, "");
    const name = resultName(response, `${stem}.mp4`).replace(/^([^.]*)/, `$1-${model.name}`);
    result.onloadeddata = () => { result.dataset.state = "done"; };
    show(result, $("download"), blob, name);
    say(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
  } catch (error) {
    result.dataset.state = "failed";
    say(error.message, true);
  }
}

async function translate() {
  const model = current();
  if (!chosenFile || !model || model.kind !== "translate") return;
  if (isVideo(chosenFile)) {
    await translateVideo(model);
    return;
  }
  const result = $("result");
  result.dataset.state = "working";
  $("download").hidden = true;
  const form = new FormData();
  form.append("image", chosenFile, chosenFile.name);
  form.append("model", model.name);
  if (model.directions.length > 1) form.append("direction", $("direction").value);
  if (model.styles.length) form.append("style", $("style").value);
  say(`Translating ${chosenFile.name} with ${model.name}...`);
  const started = performance.now();
  try {
    const response = await fetch("/api/translate", { method: "POST", body: form });
    if (!response.ok) throw new Error(await errorText(response));
    const blob = await response.blob();
    const stem = chosenFile.name.replace(/\.[^.]*$/, "");
    const name = resultName(response, `${stem}.png`).replace(/^([^.]*)/, `$1-${model.name}`);
    result.onload = () => { result.dataset.state = "done"; };
    show(result, $("download"), blob, name);
    say(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    startVariants(model);
  } catch (error) {
    result.dataset.state = "failed";
    say(error.message, true);
  }
}

// Runs trained with a noise input: the result is zero noise's; a row of seeds 0, 1, ..., more on
// request.
const VARIANTS_PER_ROW = 4;
let nextSeed = 0;

function startVariants(model) {
  const panel = $("variants-panel");
  for (const img of $("variants").querySelectorAll("img")) URL.revokeObjectURL(img.src);
  $("variants").replaceChildren();
  panel.hidden = !(model.noise_dim > 0);
  nextSeed = 0;
  if (!panel.hidden) moreVariants();
}

async function moreVariants() {
  const model = current();
  if (!chosenFile || !model || !(model.noise_dim > 0)) return;
  const more = $("more");
  more.disabled = true;
  try {
    for (let i = 0; i < VARIANTS_PER_ROW; i++) {
      const seed = nextSeed++;
      const form = new FormData();
      form.append("image", chosenFile, chosenFile.name);
      form.append("model", model.name);
      form.append("seed", String(seed));
      if (model.directions.length > 1) form.append("direction", $("direction").value);
      if (model.styles.length) form.append("style", $("style").value);
      const response = await fetch("/api/translate", { method: "POST", body: form });
      if (!response.ok) throw new Error(await errorText(response));
      const img = document.createElement("img");
      img.alt = `variant, seed ${seed}`;
      img.dataset.seed = String(seed);
      img.src = URL.createObjectURL(await response.blob());
      $("variants").append(img);
    }
  } catch (error) {
    say(error.message, true);
  } finally {
    more.disabled = false;
  }
}

function pick(file) {
  if (!file) return;
  chosenFile = file;
  const video = isVideo(file);
  $("input").hidden = video;
  $("input-video").hidden = !video;
  $("result").hidden = true;
  $("result-video").hidden = true;
  $("stabilize-label").hidden = !video;
  show(video ? $("input-video") : $("input"), null, file);
  translate();
}

async function sample() {
  const model = current();
  if (!model || model.kind !== "sample") return;
  const form = new FormData();
  form.append("model", model.name);
  form.append("label", $("label").value);
  form.append("n", $("count").value || "8");
  if ($("seed").value) form.append("seed", $("seed").value);
  const button = $("sample");
  const grid = $("grid");
  button.disabled = true;
  grid.dataset.state = "working";
  say(`Drawing samples with ${model.name}...`);
  try {
    const response = await fetch("/api/sample", { method: "POST", body: form });
    if (!response.ok) throw new Error(await errorText(response));
    const blob = await response.blob();
    grid.onload = () => { grid.dataset.state = "done"; };
    show(grid, $("grid-download"), blob, resultName(response, "samples.png"));
    say(`Drew with seed ${response.headers.get("X-Seed")}.`);
  } catch (error) {
    grid.dataset.state = "failed";
    say(error.message, true);
  } finally {
    button.disabled = false;
  }
}

function wireDrop() {
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((kind) => drop.addEventListener(kind, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((kind) => drop.addEventListener(kind, () => {
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    pick(event.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") $("file").click();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("model").addEventListener("change", choose);
  $("more").addEventListener("click", moreVariants);
  $("direction").addEventListener("change", translate);
  $("style").addEventListener("change", translate);
  $("stabilize").addEventListener("change", translate);
  $("file").addEventListener("change", (event) => pick(event.target.files[0]));
  $("sample").addEventListener("click", sample);
  wireDrop();
  loadModels();
});
