// The filter chips under the header: one per filter, each with a button
// that removes it, and "Clear all" when there are several.

function renderFilters(el, state, onRemove, onClear) {
  el.hidden = !state.filters.length;
  const chips = state.filters.map((f, i) => {
    const info = dimensionInfo(f.dim);
    const text = `${info.name} is ${displayValue(f.dim, f.value)}`;
    return h(
      "li",
      { class: "chip" },
      h("span", { class: "chip-text", title: text }, h("span", { class: "chip-dim", text: `${info.name} is ` }), h("b", { text: displayValue(f.dim, f.value) })),
      h("button", { type: "button", class: "chip-x", "aria-label": `Remove filter: ${text}`, title: "Remove filter", text: "×", onclick: () => onRemove(i) }),
    );
  });
  fill(
    el,
    h("span", { class: "filters-label", text: "Filtered by" }),
    h("ul", { class: "chips" }, chips),
    state.filters.length > 1 ? h("button", { type: "button", class: "link", text: "Clear all", onclick: onClear }) : null,
  );
}
