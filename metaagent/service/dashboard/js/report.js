// The entry of the self-contained HTML report: the run is embedded as JSON, nothing is fetched.

import { RunModel } from "./model.js";
import { RunView } from "./runview.js";
import { markRendered } from "./util.js";

const data = JSON.parse(document.getElementById("report-data").textContent);
const model = new RunModel(data);
const explain = data.explain || {};
const view = new RunView(document.getElementById("app"), model, {
  live: false,
  task: async (id) => ({ task: model.byId.get(id),
    explain: { decisions: [], ...explain[id], weights: data.weights || {} } }),
});
view.render();
document.getElementById("generated").textContent = data.generated || "";
markRendered();
