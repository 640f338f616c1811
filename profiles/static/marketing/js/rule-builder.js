/* The rule builder of a rule segment's page: the rule (docs/rules.md) as nested groups of
   conditions an operator edits with lists and boxes.

   Everything it offers comes from the grammar segments/rules.py describes (#rule-grammar: fields,
   their types and operators, event parameters, consent channels, limits) and from the shop
   (#rule-choices: categories, segments); nothing of the grammar is written here. The builder edits
   the rule's JSON tree itself, so what it shows and the JSON are one thing. Text from the server or
   the operator goes into the page with textContent and values only (no innerHTML).

   window.RuleBuilder(container, grammar, choices, onChange) returns
     {render(rule), rule(), markErrors([{path, message}]) -> the errors it could not place, clearErrors()}.
   onChange(rule) is called after every edit the operator makes in the builder. */
(function () {
  "use strict";

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) {
      if (v === undefined || v === null || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else if (k in node && typeof v !== "string") node[k] = v;
      else node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function option(value, label, selected) {
    const o = el("option", {value: value, text: label});
    o.selected = !!selected;
    return o;
  }

  function join(path, key) { return path ? path + "." + key : key; }

  function isObject(x) { return x !== null && typeof x === "object" && !Array.isArray(x); }

  // A typed number stays a number; anything else is sent as typed, for the validator to name.
  function parseNumber(text) {
    const t = String(text).trim();
    if (t === "") return "";
    return /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t) ? Number(t) : t;
  }

  window.RuleBuilder = function (container, grammar, choices, onChange) {
    const fields = {};
    grammar.fields.forEach(function (f) { fields[f.name] = f; });
    const ops = grammar.operators;
    const categories = (choices && choices.categories) || [];
    const segments = (choices && choices.segments) || [];
    const datalistId = "rule-builder-categories";
    // The top is always drawn as a group: a rule that is a single condition shows inside "All of
    // these" and is handed back as that condition alone while the group holds only it.
    let root = null;
    let virtualRoot = false;

    function current() {
      return virtualRoot && kindOf(root) === "all" && root.all.length === 1 ? root.all[0] : root;
    }

    // A path of the rule as handed back, as drawn (under the top group when it is virtual).
    function drawnPath(path) {
      if (!virtualRoot || current() === root) return path;
      return "all[0]" + (path === "" ? "" : path.charAt(0) === "[" ? path : "." + path);
    }

    const box = el("div", {className: "rb-tree"});
    const counter = el("p", {className: "rb-count help"});
    const list = el("datalist", {id: datalistId}, categories.map(function (c) { return option(c, c); }));
    container.replaceChildren(box, counter, list);

    function changed(structural) {
      if (structural) draw();
      else count();
      onChange(current());
    }

    // --- defaults -------------------------------------------------------------------------------
    function defaultValue(field, op) {
      const shape = ops[op].value;
      if (shape === "none") return undefined;
      let one;
      if (field.kind === "choice") one = field.choices[0].value;
      else if (field.kind === "number") one = 0;
      else if (field.kind === "text") one = categories[0] || "";
      else one = shape === "startswith" ? "5" : shape === "matches" ? "5**" : "555";
      if (shape === "list") return [one];
      if (shape === "pair") return [one, one];
      return one;
    }

    function defaultOp(field) {
      return field.ops.indexOf(field.kind === "number" ? ">=" : "=") >= 0 ? (field.kind === "number" ? ">=" : "=") : field.ops[0];
    }

    function newLeaf(what) {
      if (what === "affinity") return {affinity: {category: categories[0] || "", op: ">=", value: 0.4}};
      if (what === "top") return {top: {field: grammar.top.default_field, percent: 10}};
      if (what === "event") return {event: {type: grammar.event.types.find(function (t) { return t.value === "purchase"; }) ? "purchase" : grammar.event.types[0].value}};
      if (what === "consent") return {consent: grammar.consent[0].value};
      if (what === "segment") return {segment: segments.length ? segments[0].id : null};
      const field = fields[what.slice("field:".length)];
      const op = defaultOp(field);
      const node = {field: field.name, op: op};
      const value = defaultValue(field, op);
      if (value !== undefined) node.value = value;
      return node;
    }

    // Re-shape a value for another operator: keep what the operator typed where it still fits.
    function reshape(field, node, op) {
      const shape = ops[op].value;
      const old = node.value;
      const first = Array.isArray(old) ? old[0] : old;
      delete node.value;
      node.op = op;
      if (shape === "none") return;
      if (shape === "list") node.value = Array.isArray(old) ? old : (first === undefined ? defaultValue(field, op) : [first]);
      else if (shape === "pair") node.value = Array.isArray(old) && old.length === 2 ? old : (first === undefined ? defaultValue(field, op) : [first, first]);
      else if (shape === "startswith" || shape === "matches") node.value = typeof first === "string" && field.kind === "rfm code" && shape !== "matches" ? first.slice(0, 3) : defaultValue(field, op);
      else node.value = first === undefined ? defaultValue(field, op) : first;
    }

    // --- drawing --------------------------------------------------------------------------------
    function kindOf(node) {
      if (!isObject(node)) return null;
      const keys = grammar.combinators.concat(grammar.leaves).filter(function (k) { return k in node; });
      return keys.length === 1 ? keys[0] : null;
    }

    function removeButton(label, onClick) {
      return el("button", {type: "button", className: "rb-remove", title: label, "aria-label": label, text: "✕", onclick: onClick});
    }

    // A group: all / any (a list of children) or not (one child). `replace(node)` swaps it in its parent.
    function drawGroup(node, path, replace, remove, depth) {
      const kind = kindOf(node);
      const wrap = el("div", {className: "rb-group rb-" + kind, "data-rule-path": path});
      const select = el("select", {className: "rb-combinator", "aria-label": "combine the conditions"}, [
        option("all", "All of these (AND)", kind === "all"),
        option("any", "Any of these (OR)", kind === "any"),
        option("not", "Not this (exclude)", kind === "not"),
      ].filter(function (o) { return grammar.combinators.indexOf(o.value) >= 0; }));
      select.addEventListener("change", function () {
        const to = select.value;
        const children = kind === "not" ? [node.not] : node[kind];
        let next;
        if (to === "not") next = {not: children.length === 1 ? children[0] : {[kind]: children}};
        else next = {[to]: children};
        replace(next);
        changed(true);
      });
      const head = el("div", {className: "rb-head"}, [select]);
      if (remove) head.appendChild(removeButton("remove this group", function () { remove(); changed(true); }));
      wrap.appendChild(head);
      const body = el("div", {className: "rb-children"});
      wrap.appendChild(body);
      const children = kind === "not" ? [node.not] : node[kind];
      if (!Array.isArray(children)) {
        body.appendChild(el("p", {className: "rb-unknown", text: "This group is not a list of conditions: fix it in the Advanced (JSON) view."}));
        return wrap;
      }
      children.forEach(function (child, i) {
        const childPath = kind === "not" ? join(path, "not") : join(path, kind) + "[" + i + "]";
        const setChild = kind === "not"
          ? function (n) { node.not = n; }
          : function (n) { node[kind][i] = n; };
        const removeChild = kind === "not"
          ? function () { remove ? remove() : replace({all: []}); }
          : function () { node[kind].splice(i, 1); };
        body.appendChild(drawNode(child, childPath, setChild, removeChild, depth + 1));
      });
      if (kind !== "not") {
        if (!children.length) body.appendChild(el("p", {className: "rb-empty help", text: "No condition yet: add one."}));
        const add = el("div", {className: "rb-add"}, [
          el("button", {type: "button", className: "button rb-add-condition", text: "+ Condition", onclick: function () {
            node[kind].push(newLeaf(firstWhat())); changed(true);
          }}),
          depth < grammar.limits.depth - 1 ? el("button", {type: "button", className: "button rb-add-group", text: "+ Group", onclick: function () {
            node[kind].push({[kind === "all" ? "any" : "all"]: [newLeaf(firstWhat())]}); changed(true);
          }}) : null,
        ]);
        wrap.appendChild(add);
      }
      return wrap;
    }

    function firstWhat() { return "field:" + grammar.fields[0].name; }

    function whatSelect(node, kind) {
      const current = kind === "field" ? "field:" + node.field : kind;
      const inGroup = function (group) {
        return grammar.fields.filter(function (f) { return (f.group || "Profile") === group; }).map(function (f) {
          return option("field:" + f.name, f.label, current === "field:" + f.name);
        });
      };
      const profile = el("optgroup", {label: "Profile"}, inGroup("Profile"));
      const predictions = el("optgroup", {label: "Predictions (next " + grammar.affinity.horizon_days + " days)"}, inGroup("Predictions").concat([
        grammar.leaves.indexOf("affinity") >= 0 ? option("affinity", "Affinity for a category", current === "affinity") : null,
        grammar.leaves.indexOf("top") >= 0 ? option("top", "Top % of customers by a figure", current === "top") : null,
      ].filter(Boolean)));
      const others = el("optgroup", {label: "Behaviour, consent, segments"}, [
        grammar.leaves.indexOf("event") >= 0 ? option("event", "Did something (events)", current === "event") : null,
        grammar.leaves.indexOf("consent") >= 0 ? option("consent", "Consents to a channel", current === "consent") : null,
        grammar.leaves.indexOf("segment") >= 0 ? option("segment", "Is in the segment", current === "segment") : null,
      ].filter(Boolean));
      const select = el("select", {className: "rb-what", "data-key": "field", "aria-label": "condition on"}, [profile, predictions, others]);
      if (kind === "field" && !fields[node.field]) select.insertBefore(option(current, String(node.field) + " (unknown)", true), profile);
      return select;
    }

    function drawNode(node, path, replace, remove, depth) {
      const kind = kindOf(node);
      if (grammar.combinators.indexOf(kind) >= 0) return drawGroup(node, path, replace, remove, depth);
      const row = el("div", {className: "rb-condition", "data-rule-path": path});
      if (!kind) {
        row.appendChild(el("span", {className: "rb-unknown", text: "A condition the builder does not know: fix it in the Advanced (JSON) view, or remove it."}));
        if (remove) row.appendChild(removeButton("remove this condition", function () { remove(); changed(true); }));
        return row;
      }
      const what = whatSelect(node, kind);
      what.addEventListener("change", function () {
        const next = newLeaf(what.value);
        // Another field of the same type keeps its operator and value.
        if (kind === "field" && next.field && fields[node.field] && fields[node.field].kind === fields[next.field].kind && fields[next.field].ops.indexOf(node.op) >= 0) {
          next.op = node.op;
          if ("value" in node) next.value = node.value; else delete next.value;
        }
        replace(next);
        changed(true);
      });
      row.appendChild(what);
      const parts = el("span", {className: "rb-parts"});
      if (kind === "field") drawField(node, parts);
      else if (kind === "event") drawEvent(node, parts);
      else if (kind === "consent") drawConsent(node, parts);
      else if (kind === "affinity") drawAffinity(node, parts);
      else if (kind === "top") drawTop(node, parts);
      else drawSegment(node, parts);
      row.appendChild(parts);
      if (remove) row.appendChild(removeButton("remove this condition", function () { remove(); changed(true); }));
      return row;
    }

    function textInput(value, key, onInput, attrs) {
      const input = el("input", Object.assign({type: "text", className: "rb-input", "data-key": key, value: value === undefined || value === null ? "" : String(value)}, attrs || {}));
      input.addEventListener("input", function () { onInput(input.value); changed(false); });
      return input;
    }

    function drawField(node, parts) {
      const field = fields[node.field];
      if (!field) return;
      const opSelect = el("select", {className: "rb-op", "data-key": "op", "aria-label": "operator"}, field.ops.map(function (op) {
        return option(op, ops[op].label, node.op === op);
      }));
      if (field.ops.indexOf(node.op) < 0) opSelect.insertBefore(option(String(node.op), String(node.op) + " (not for this field)", true), opSelect.firstChild);
      opSelect.addEventListener("change", function () { reshape(field, node, opSelect.value); changed(true); });
      parts.appendChild(opSelect);
      const shape = ops[node.op] ? ops[node.op].value : "one";
      if (shape === "none") return;
      const scalar = function (value, set, label) {
        if (field.kind === "choice") {
          const s = el("select", {className: "rb-value", "data-key": "value", "aria-label": label || "value"}, field.choices.map(function (c) {
            return option(c.value, c.label, c.value === value);
          }));
          if (!field.choices.some(function (c) { return c.value === value; })) s.insertBefore(option(String(value), String(value) + " (unknown)", true), s.firstChild);
          s.addEventListener("change", function () { set(s.value); changed(false); });
          return s;
        }
        const number = field.kind === "number";
        return textInput(value, "value", function (t) { set(number ? parseNumber(t) : t); }, {
          inputmode: number ? "decimal" : null, list: field.kind === "text" ? datalistId : null,
          "aria-label": label || "value", size: number ? 8 : 14,
          placeholder: field.max === 1 ? "0 to 1" : null, title: field.max === 1 ? "a probability: 0.3 for 30%" : null,
        });
      };
      if (shape === "list") {
        const values = Array.isArray(node.value) ? node.value : [node.value];
        if (field.kind === "choice") {
          const group = el("span", {className: "rb-checks", "data-key": "value"});
          field.choices.forEach(function (c) {
            const cb = el("input", {type: "checkbox", value: c.value, checked: values.indexOf(c.value) >= 0});
            cb.addEventListener("change", function () {
              node.value = Array.from(group.querySelectorAll("input:checked")).map(function (x) { return x.value; });
              changed(false);
            });
            group.appendChild(el("label", {}, [cb, document.createTextNode(" " + c.label)]));
          });
          parts.appendChild(group);
        } else {
          parts.appendChild(textInput(values.join(", "), "value", function (t) {
            const items = t.split(",").map(function (x) { return x.trim(); }).filter(function (x) { return x !== ""; });
            node.value = field.kind === "number" ? items.map(parseNumber) : items;
          }, {list: field.kind === "text" ? datalistId : null, placeholder: "values, separated by commas", size: 24}));
        }
      } else if (shape === "pair") {
        if (!Array.isArray(node.value)) node.value = [node.value, node.value];
        parts.appendChild(scalar(node.value[0], function (v) { node.value[0] = v; }, "low end"));
        parts.appendChild(el("span", {className: "rb-word", text: "and"}));
        parts.appendChild(scalar(node.value[1], function (v) { node.value[1] = v; }, "high end"));
      } else {
        parts.appendChild(scalar(node.value, function (v) { node.value = v; }));
      }
    }

    function drawEvent(node, parts) {
      const spec = isObject(node.event) ? node.event : (node.event = {});
      grammar.event.params.forEach(function (p) {
        const has = p.key in spec;
        const label = el("span", {className: "rb-word", text: p.label});
        if (p.kind === "types") {
          parts.appendChild(drawTypes(spec, p));
          return;
        }
        let input;
        if (p.kind === "choice") {
          const list = grammar.event[p.choices] || [];
          input = el("select", {className: "rb-value", "data-key": "event." + p.key, "aria-label": p.label}, [option("", "any")].concat(list.map(function (c) {
            return option(c.value, c.label.toLowerCase(), spec[p.key] === c.value);
          })));
          input.addEventListener("change", function () {
            if (input.value === "") delete spec[p.key]; else spec[p.key] = input.value;
            changed(false);
          });
        } else {
          const whole = p.kind === "whole";
          input = textInput(has ? spec[p.key] : "", "event." + p.key, function (t) {
            const v = whole ? parseNumber(t) : t;
            if (v === "") delete spec[p.key]; else spec[p.key] = v;
          }, {
            inputmode: whole ? "numeric" : null, size: whole ? 5 : 12, "aria-label": p.label + (p.unit ? " (" + p.unit + ")" : ""),
            placeholder: whole ? "" : "any", list: p.suggest === "categories" ? datalistId : null,
          });
        }
        const span = el("span", {className: "rb-param"}, [label, input, p.unit ? el("span", {className: "rb-word", text: p.unit}) : null]);
        parts.appendChild(span);
      });
      Object.keys(spec).forEach(function (k) {
        if (grammar.event.keys.indexOf(k) < 0) parts.appendChild(el("span", {className: "rb-unknown", text: "(unknown key " + k + ")"}));
      });
    }

    // The event type: one from a list, or several (any of them) as checkboxes.
    function drawTypes(spec, p) {
      const types = grammar.event.types;
      const span = el("span", {className: "rb-param"}, [el("span", {className: "rb-word", text: p.label})]);
      if (Array.isArray(spec.type)) {
        const group = el("span", {className: "rb-checks", "data-key": "event.type"});
        types.forEach(function (t) {
          const cb = el("input", {type: "checkbox", value: t.value, checked: spec.type.indexOf(t.value) >= 0});
          cb.addEventListener("change", function () {
            const picked = Array.from(group.querySelectorAll("input:checked")).map(function (x) { return x.value; });
            spec.type = picked.length === 1 ? picked[0] : picked;
            changed(picked.length === 1);
          });
          group.appendChild(el("label", {}, [cb, document.createTextNode(" " + t.label)]));
        });
        span.appendChild(group);
        return span;
      }
      const select = el("select", {className: "rb-value rb-event-type", "data-key": "event.type", "aria-label": "event type"}, types.map(function (t) {
        return option(t.value, t.label, spec.type === t.value);
      }).concat([option("*several", "one of several…", false)]));
      if (!types.some(function (t) { return t.value === spec.type; })) select.insertBefore(option(String(spec.type), String(spec.type) + " (unknown)", true), select.firstChild);
      select.addEventListener("change", function () {
        if (select.value === "*several") { spec.type = [spec.type]; changed(true); return; }
        spec.type = select.value;
        changed(false);
      });
      span.appendChild(select);
      return span;
    }

    // {"affinity": {"category", "op", "value"}}: the predicted chance (0 to 1) to buy from a category.
    function drawAffinity(node, parts) {
      const spec = isObject(node.affinity) ? node.affinity : (node.affinity = {});
      const g = grammar.affinity;
      parts.appendChild(el("span", {className: "rb-param"}, [
        el("span", {className: "rb-word", text: "for"}),
        textInput(spec.category, "affinity.category", function (t) { spec.category = t; }, {list: datalistId, size: 14, "aria-label": "category", placeholder: "category"}),
      ]));
      const opSelect = el("select", {className: "rb-op", "data-key": "affinity.op", "aria-label": "operator"}, g.ops.map(function (op) {
        return option(op, ops[op] ? ops[op].label : op, spec.op === op);
      }));
      if (g.ops.indexOf(spec.op) < 0) opSelect.insertBefore(option(String(spec.op), String(spec.op) + " (not for an affinity)", true), opSelect.firstChild);
      opSelect.addEventListener("change", function () {
        const first = Array.isArray(spec.value) ? spec.value[0] : spec.value;
        spec.op = opSelect.value;
        spec.value = spec.op === "between" ? (Array.isArray(spec.value) ? spec.value : [first, first]) : first;
        changed(true);
      });
      parts.appendChild(opSelect);
      const probability = function (value, set, label) {
        return textInput(value, "affinity.value", function (t) { set(parseNumber(t)); }, {
          inputmode: "decimal", size: 6, "aria-label": label, placeholder: g.min + " to " + g.max, title: "a probability: 0.4 for 40%",
        });
      };
      if (spec.op === "between") {
        if (!Array.isArray(spec.value)) spec.value = [spec.value, spec.value];
        parts.appendChild(probability(spec.value[0], function (v) { spec.value[0] = v; }, "low end"));
        parts.appendChild(el("span", {className: "rb-word", text: "and"}));
        parts.appendChild(probability(spec.value[1], function (v) { spec.value[1] = v; }, "high end"));
      } else {
        parts.appendChild(probability(spec.value, function (v) { spec.value = v; }, "affinity"));
      }
      parts.appendChild(el("span", {className: "rb-word", text: "chance to buy in the next " + g.horizon_days + " days"}));
      Object.keys(spec).forEach(function (k) {
        if (g.keys.indexOf(k) < 0) parts.appendChild(el("span", {className: "rb-unknown", text: "(unknown key " + k + ")"}));
      });
    }

    // {"top": {"field", "percent"}}: the customers with the highest values of a figure (ties included).
    function drawTop(node, parts) {
      const spec = isObject(node.top) ? node.top : (node.top = {});
      const g = grammar.top;
      parts.appendChild(el("span", {className: "rb-param"}, [
        el("span", {className: "rb-word", text: "the top"}),
        textInput(spec.percent, "top.percent", function (t) { spec.percent = parseNumber(t); }, {inputmode: "decimal", size: 5, "aria-label": "percent of customers"}),
        el("span", {className: "rb-word", text: "% by"}),
      ]));
      const select = el("select", {className: "rb-value", "data-key": "top.field", "aria-label": "ranked by"}, g.fields.map(function (f) {
        return option(f.value, f.label, spec.field === f.value);
      }));
      if (!g.fields.some(function (f) { return f.value === spec.field; })) select.insertBefore(option(String(spec.field), String(spec.field) + " (unknown)", true), select.firstChild);
      select.addEventListener("change", function () { spec.field = select.value; changed(false); });
      parts.appendChild(select);
      parts.appendChild(el("span", {className: "rb-word", text: "(highest first, ties included)"}));
      Object.keys(spec).forEach(function (k) {
        if (g.keys.indexOf(k) < 0) parts.appendChild(el("span", {className: "rb-unknown", text: "(unknown key " + k + ")"}));
      });
    }

    function drawConsent(node, parts) {
      const s = el("select", {className: "rb-value", "data-key": "consent", "aria-label": "channel"}, grammar.consent.map(function (c) {
        return option(c.value, c.label, node.consent === c.value);
      }));
      if (!grammar.consent.some(function (c) { return c.value === node.consent; })) s.insertBefore(option(String(node.consent), String(node.consent) + " (unknown)", true), s.firstChild);
      s.addEventListener("change", function () { node.consent = s.value; changed(false); });
      parts.appendChild(s);
    }

    function drawSegment(node, parts) {
      const s = el("select", {className: "rb-value", "data-key": "segment", "aria-label": "segment"}, segments.map(function (seg) {
        return option(String(seg.id), seg.name + (seg.kind === "cluster" ? " (cluster)" : ""), seg.id === node.segment);
      }));
      if (!segments.some(function (seg) { return seg.id === node.segment; })) s.insertBefore(option(String(node.segment), "segment #" + node.segment + " (unknown)", true), s.firstChild);
      s.addEventListener("change", function () { node.segment = Number(s.value); changed(false); });
      parts.appendChild(s);
    }

    // How much of the limits the rule uses (every node counts; event leaves apart).
    function count() {
      let nodes = 0, events = 0;
      const stack = [current()];
      while (stack.length) {
        const n = stack.pop();
        nodes++;
        if (!isObject(n)) continue;
        if ("event" in n) events++;
        ["all", "any"].forEach(function (k) { if (Array.isArray(n[k])) n[k].forEach(function (c) { stack.push(c); }); });
        if ("not" in n) stack.push(n.not);
      }
      const l = grammar.limits;
      counter.textContent = nodes + " of " + l.conditions + " conditions (groups count too), " +
        events + " of " + l.event_conditions + " behaviour conditions.";
      counter.classList.toggle("rb-over", nodes > l.conditions || events > l.event_conditions);
    }

    function draw() {
      box.replaceChildren(drawGroup(root, "", function (n) { root = n; }, null, 1));
      count();
    }

    // --- errors next to their conditions --------------------------------------------------------
    function clearErrors() {
      container.querySelectorAll(".rb-invalid").forEach(function (n) { n.classList.remove("rb-invalid"); });
      container.querySelectorAll(".rb-error").forEach(function (n) { n.remove(); });
      container.querySelectorAll("[aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
    }

    // An error's path (e.g. all[2].value[1]) belongs to the deepest condition or group whose path
    // starts it; the input named by the rest of the path (value, op, event.within_days) is marked too.
    function markErrors(errors) {
      clearErrors();
      const unplaced = [];
      const targets = Array.from(container.querySelectorAll("[data-rule-path]"));
      errors.forEach(function (e) {
        const path = drawnPath(e.path || "");
        let best = null;
        targets.forEach(function (t) {
          const p = t.getAttribute("data-rule-path");
          const fits = p === "" || path === p || path.indexOf(p + ".") === 0 || path.indexOf(p + "[") === 0;
          if (fits && (!best || p.length > best.getAttribute("data-rule-path").length)) best = t;
        });
        if (!best) { unplaced.push(e); return; }
        best.classList.add("rb-invalid");
        const p = best.getAttribute("data-rule-path");
        const rest = path.slice(p.length).replace(/^\./, "").replace(/\[\d+\]$/, "").replace(/\[\d+\]/g, "");
        const input = rest && Array.from(best.querySelectorAll("[data-key]")).find(function (i) {
          return i.closest("[data-rule-path]") === best && i.getAttribute("data-key") === rest;
        });
        if (input) input.setAttribute("aria-invalid", "true");
        const message = el("div", {className: "rb-error errornote", role: "alert", text: e.message});
        if (best.classList.contains("rb-group")) best.insertBefore(message, best.children[1] || null);
        else best.appendChild(message);
      });
      return unplaced;
    }

    return {
      render: function (rule) {
        virtualRoot = grammar.combinators.indexOf(kindOf(rule)) < 0;
        root = virtualRoot ? {all: [rule]} : rule;
        draw();
      },
      rule: current,
      markErrors: markErrors,
      clearErrors: clearErrors,
    };
  };
})();
